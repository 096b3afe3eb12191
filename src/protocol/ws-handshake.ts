/**
 * The server side of the WebSocket opening handshake (RFC 6455 §4.2), as pure functions:
 * request headers in, a verdict or a 101 response out. No socket in sight.
 */
import { createHash } from 'node:crypto';
import { ErrorCode, HttpError } from '../errors.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Our one subprotocol: every message is a v1 body (docs/PROTOCOL.md). */
export const SUBPROTOCOL_V1 = 'echo.v1';

export interface UpgradeRequest {
  readonly method?: string | undefined;
  readonly httpVersion: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface UpgradeVerdict {
  readonly key: string;
  /** Chosen subprotocol (`echo.v1` when offered), else undefined. */
  readonly protocol: string | undefined;
}

const bad = (status: number, message: string): HttpError => new HttpError(ErrorCode.HANDSHAKE, status, message);

const header = (h: UpgradeRequest['headers'], name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
};

/** Comma-separated tokens, trimmed and lower-cased. */
const tokens = (v: string | undefined): string[] =>
  v === undefined
    ? []
    : v
        .split(',')
        .map((t) => t.trim().toLowerCase())
        .filter((t) => t.length > 0);

const KEY_RE = /^[+/0-9A-Za-z]{22}==$/;

/**
 * Validates an upgrade request. Throws HttpError 400 (malformed), 405 (not GET) or 426
 * (wrong version: the caller must add `Sec-WebSocket-Version: 13`).
 */
export function validateUpgrade(req: UpgradeRequest): UpgradeVerdict {
  if (req.method !== 'GET') throw bad(405, 'WebSocket upgrade requires GET');
  const [major, minor] = req.httpVersion.split('.').map(Number);
  if (major === undefined || minor === undefined || major < 1 || (major === 1 && minor < 1)) {
    throw bad(400, 'WebSocket upgrade requires HTTP/1.1');
  }
  if (!tokens(header(req.headers, 'upgrade')).includes('websocket')) throw bad(400, 'Upgrade header must be websocket');
  if (!tokens(header(req.headers, 'connection')).includes('upgrade')) throw bad(400, 'Connection header must include Upgrade');
  const version = header(req.headers, 'sec-websocket-version');
  if (version === undefined || version.trim() !== '13') throw bad(426, 'Sec-WebSocket-Version must be 13');
  const key = header(req.headers, 'sec-websocket-key')?.trim();
  // A valid key is 16 random bytes, base64-encoded (§4.1 item 7): exactly 24 characters.
  if (key === undefined || !KEY_RE.test(key)) throw bad(400, 'invalid Sec-WebSocket-Key');
  const offered = header(req.headers, 'sec-websocket-protocol');
  let protocol: string | undefined;
  if (offered !== undefined) {
    for (const p of offered.split(',')) {
      if (p.trim() === SUBPROTOCOL_V1) protocol = SUBPROTOCOL_V1;
    }
  }
  return { key, protocol };
}

export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/** The 101 response. Extensions offered by the client are not accepted (none negotiated). */
export function upgradeResponse(verdict: UpgradeVerdict, extraHeaders: readonly string[] = []): string {
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(verdict.key)}`,
  ];
  if (verdict.protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${verdict.protocol}`);
  lines.push(...extraHeaders);
  return lines.join('\r\n') + '\r\n\r\n';
}

/** A complete HTTP error response for a refused upgrade (the socket is then ended). */
export function httpErrorResponse(status: number, message: string, extraHeaders: readonly string[] = []): string {
  const body = JSON.stringify({ error: message }) + '\n';
  const reason = STATUS_TEXT[status] ?? 'Error';
  return [
    `HTTP/1.1 ${status} ${reason}`,
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...extraHeaders,
    '',
    body,
  ].join('\r\n');
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  503: 'Service Unavailable',
};
