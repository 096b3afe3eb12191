/**
 * Structured logs with pino, fed by the core's diagnostics channels (STYLE.md §9). The core
 * never imports this module; `attachLogging()` subscribes and returns the way back out.
 *
 * Secrets are removed by pino's own `redact` (fast path, applied to every line, no matter
 * which code logs the object), never by hoping callers leave them out.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { hostname } from 'node:os';
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';
import pinoPretty from 'pino-pretty';
import {
  channels,
  demandMessages,
  type ConnectionCloseEvent,
  type ConnectionOpenEvent,
  type ErrorEvent,
  type MessageEvent,
  type RejectEvent,
} from '../core/events.js';
import { FAULT_CHANNEL, type FaultEvent } from '../core/injection.js';

export type { Logger } from 'pino';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  /** Lowest level written. @default 'info' */
  level?: LogLevel;
  /**
   * `json`: one JSON object per line. `pretty`: human-readable (pino-pretty, formatted on the
   * main thread, meant for terminals). `auto`: pretty when the destination is a TTY.
   * @default 'auto'
   */
  format?: LogFormat;
  /**
   * Where lines go. Libraries embedding the server pass their own; only the CLI should rely
   * on the default (STYLE.md §8). @default standard output (fd 1)
   */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Fields on every line (e.g. `{ instance }`). @default {} */
  base?: Record<string, unknown>;
}

/**
 * Keys whose values never reach a log line, at the top level, one level down (`*.token`:
 * `{ auth: { token } }`) and two levels down (`header.auth.token`). pino's redact paths are
 * exact, so each depth is listed; deeper secrets must not be logged at all.
 */
const SECRET_KEYS = ['token', 'authorization', 'secret', 'password', 'key', 'cookie', 'apiKey'] as const;
export const REDACT_PATHS: readonly string[] = Object.freeze([
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'headers.authorization',
  'headers.cookie',
  'headers["sec-websocket-protocol"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["sec-websocket-protocol"]',
]);
export const REDACTED = '[Redacted]';

const LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty'];

function isTTY(stream: DestinationStream | NodeJS.WritableStream | undefined): boolean {
  const target: unknown = stream ?? process.stdout;
  return typeof target === 'object' && target !== null && (target as { isTTY?: unknown }).isTTY === true;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const format = opts.format ?? 'auto';
  // Validate each option on its own, naming it (STYLE.md §5).
  if (!LEVELS.includes(level)) throw new TypeError(`log level must be one of ${LEVELS.join(', ')}, got ${String(level)}`);
  if (!FORMATS.includes(format)) throw new TypeError(`log format must be one of ${FORMATS.join(', ')}, got ${String(format)}`);

  const options: pino.LoggerOptions = {
    level,
    // pino's default base is { pid, hostname }; giving `base` replaces it, so both are restated
    // (docs/OBSERVABILITY.md promises them on every line).
    base: { pid: process.pid, hostname: hostname(), ...opts.base },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    // errWithCause keeps `cause` as a nested, serialized error instead of folding it into
    // the stack text, so log processors can index it.
    serializers: { err: pino.stdSerializers.errWithCause },
  };
  const pretty = format === 'pretty' || (format === 'auto' && isTTY(opts.destination));
  if (pretty) {
    // In-process stream rather than a `transport` worker: pretty output is for humans at a
    // terminal, where a worker thread buys nothing and complicates shutdown.
    const stream = pinoPretty({
      destination: opts.destination ?? 1,
      sync: true,
      colorize: isTTY(opts.destination),
    });
    return pino(options, stream);
  }
  return pino(options, opts.destination ?? stdoutDestination());
}

/** Bytes of log lines held while stdout cannot take them; past it, lines are dropped. */
const MAX_PENDING_LOG_BYTES = 4 * 1024 * 1024;

/**
 * Standard output as pino's synchronous destination, made safe for a server: a write error
 * (a full disk, a closed pipe) must never stop it from serving. pino's default stdout stream
 * turns any error but EPIPE into an uncaught exception; here errors are swallowed (the lines
 * are lost), and at most MAX_PENDING_LOG_BYTES wait for a retry.
 */
function stdoutDestination(): pino.DestinationStream {
  const dest = pino.destination({ dest: 1, sync: true, maxLength: MAX_PENDING_LOG_BYTES });
  dest.on('error', onLogWriteError);
  return dest;
}

function onLogWriteError(): void {
  // The line is lost; serving goes on (stderr may be just as full: nothing to report it to).
}

export interface AttachLoggingOptions {
  /**
   * Debug line per message. `'auto'` subscribes to the message channel only while the logger
   * level is debug or lower (following `logger.level` changes), so at info the core does not
   * even publish per-message events.
   * @default 'auto'
   */
  messages?: 'auto' | 'off';
}

/**
 * Subscribes `logger` to the core's channels; returns an idempotent function that
 * unsubscribes everything.
 */
export function attachLogging(logger: Logger, opts: AttachLoggingOptions = {}): () => void {
  const wantMessages = (opts.messages ?? 'auto') === 'auto';

  function onOpen(raw: unknown): void {
    const { connection: c } = raw as ConnectionOpenEvent;
    logger.info({ event: 'connection.open', conn: c.id, transport: c.transport, peer: c.peer, identity: c.identity }, 'connection open');
  }
  function onClose(raw: unknown): void {
    const e = raw as ConnectionCloseEvent;
    const c = e.connection;
    logger.info(
      {
        event: 'connection.close',
        conn: c.id,
        transport: c.transport,
        peer: c.peer,
        identity: c.identity,
        durationMs: e.durationMs,
        messagesIn: c.messagesIn,
        messagesOut: c.messagesOut,
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        code: e.code,
        reason: e.reason,
        detail: e.detail,
      },
      'connection closed',
    );
  }
  function onReject(raw: unknown): void {
    const e = raw as RejectEvent;
    logger.warn(
      { event: 'connection.reject', transport: e.transport, peer: e.peer, reason: e.reason, detail: e.detail },
      'connection rejected',
    );
  }
  function onMessage(raw: unknown): void {
    const e = raw as MessageEvent;
    // The header is deliberately not logged: it may carry credentials.
    logger.debug(
      { event: 'message', conn: e.connection.id, transport: e.connection.transport, msgId: e.id, kind: e.kind, size: e.size },
      'message',
    );
  }
  function onError(raw: unknown): void {
    const e = raw as ErrorEvent;
    const c = e.connection;
    logger.error({ event: 'error', err: e.error, conn: c?.id, transport: c?.transport, peer: c?.peer }, e.error.message);
  }

  function onFault(raw: unknown): void {
    const e = raw as FaultEvent;
    const c = e.connection;
    logger.info(
      { event: 'fault', fault: e.fault, code: e.code, ms: e.ms, source: e.source, conn: c.id, transport: c.transport, peer: c.peer },
      `fault injected: ${e.fault}`,
    );
  }

  diagnosticsChannel.subscribe(FAULT_CHANNEL, onFault);
  diagnosticsChannel.subscribe(channels.open.name, onOpen);
  diagnosticsChannel.subscribe(channels.close.name, onClose);
  diagnosticsChannel.subscribe(channels.reject.name, onReject);
  diagnosticsChannel.subscribe(channels.error.name, onError);

  let messagesOn = false;
  let detached = false;
  let releaseDemand: (() => void) | undefined;
  function syncMessageSubscription(): void {
    const want = wantMessages && !detached && logger.isLevelEnabled('debug');
    if (want === messagesOn) return;
    messagesOn = want;
    if (want) {
      releaseDemand = demandMessages(1); // a debug line for every message
      diagnosticsChannel.subscribe(channels.message.name, onMessage);
    } else {
      releaseDemand?.();
      releaseDemand = undefined;
      diagnosticsChannel.unsubscribe(channels.message.name, onMessage);
    }
  }
  syncMessageSubscription();
  logger.on('level-change', syncMessageSubscription);

  return function detachLogging(): void {
    if (detached) return;
    detached = true;
    logger.removeListener('level-change', syncMessageSubscription);
    syncMessageSubscription();
    diagnosticsChannel.unsubscribe(FAULT_CHANNEL, onFault);
    diagnosticsChannel.unsubscribe(channels.open.name, onOpen);
    diagnosticsChannel.unsubscribe(channels.close.name, onClose);
    diagnosticsChannel.unsubscribe(channels.reject.name, onReject);
    diagnosticsChannel.unsubscribe(channels.error.name, onError);
  };
}
