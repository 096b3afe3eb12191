/**
 * One error catalog (after undici): every error has a stable `code`; protocol errors also
 * carry the close code to put on the wire, HTTP-side errors the status to answer with.
 * Transports map errors to the wire by reading these fields, never by matching messages.
 */

/** WebSocket / v1 close codes (RFC 6455 §7.4.1; the same numbers on every transport). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  MANDATORY_EXTENSION: 1010,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export const ErrorCode = {
  CONFIG: 'ECHO_ERR_CONFIG',
  PROTOCOL: 'ECHO_ERR_PROTOCOL',
  INVALID_UTF8: 'ECHO_ERR_INVALID_UTF8',
  TOO_BIG: 'ECHO_ERR_TOO_BIG',
  HEADER: 'ECHO_ERR_HEADER',
  HANDSHAKE: 'ECHO_ERR_HANDSHAKE',
  LIMIT: 'ECHO_ERR_CONNECTION_LIMIT',
  AUTH: 'ECHO_ERR_AUTH',
  POLICY: 'ECHO_ERR_POLICY',
  RATE: 'ECHO_ERR_RATE',
  REPLAY: 'ECHO_ERR_REPLAY',
  CLOSED: 'ECHO_ERR_CLOSED',
  STATE: 'ECHO_ERR_STATE',
  TIMEOUT: 'ECHO_ERR_TIMEOUT',
  ARGUMENT: 'ECHO_ERR_ARGUMENT',
  // Client side (src/client).
  CONNECT: 'ECHO_ERR_CONNECT',
  CONNECTION_LOST: 'ECHO_ERR_CONNECTION_LOST',
  QUEUE_FULL: 'ECHO_ERR_QUEUE_FULL',
  ABORTED: 'ECHO_ERR_ABORTED',
  TLS_PIN: 'ECHO_ERR_TLS_PIN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class EchoError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EchoError';
    this.code = code;
  }
}

/** An invalid setting: `setting` names it (e.g. `maxFrameBytes`, shown as the flag on the CLI). */
export class ConfigError extends EchoError {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(ErrorCode.CONFIG, `${setting}: ${message}`);
    this.name = 'ConfigError';
    this.setting = setting;
  }
}

/** A wire-level error: the connection is closed with `closeCode` and a short `message` as reason. */
export class ProtocolError extends EchoError {
  readonly closeCode: CloseCode;
  constructor(code: ErrorCode, closeCode: CloseCode, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
    this.closeCode = closeCode;
  }
}

/** An HTTP-side refusal (before a WebSocket upgrade): answered with `status`. */
export class HttpError extends EchoError {
  readonly status: number;
  constructor(code: ErrorCode, status: number, message: string) {
    super(code, message);
    this.name = 'HttpError';
    this.status = status;
  }
}

export const malformed = (reason: string): ProtocolError => new ProtocolError(ErrorCode.PROTOCOL, CloseCode.PROTOCOL_ERROR, reason);
export const invalidUtf8 = (reason = 'invalid UTF-8'): ProtocolError =>
  new ProtocolError(ErrorCode.INVALID_UTF8, CloseCode.INVALID_PAYLOAD, reason);
export const tooBig = (reason = 'message too big'): ProtocolError =>
  new ProtocolError(ErrorCode.TOO_BIG, CloseCode.MESSAGE_TOO_BIG, reason);

/**
 * The client's connection closed (or could not open): `closeCode` and `reason` are what the
 * server sent (1006 when the connection just dropped).
 */
export class ConnectionClosedError extends EchoError {
  readonly closeCode: number;
  readonly reason: string;
  constructor(code: ErrorCode, closeCode: number, reason: string, message: string) {
    super(code, message);
    this.name = 'ConnectionClosedError';
    this.closeCode = closeCode;
    this.reason = reason;
  }
}
