/**
 * The echo core: the registry of connections, the connection limit, one sweep timer for idle,
 * keepalive, stall and closing deadlines (one timer for all connections rather than one per
 * connection: memory per idle connection is a target), per-transport totals, the message hook
 * and the drain on shutdown.
 */
import type { Duplex } from 'node:stream';
import { CloseCode, EchoError, ProtocolError } from '../errors.js';
import type { MetadataHeader } from '../protocol/header.js';
import { channels } from './events.js';
import { Connection, ConnState, type ProtocolAdapter } from './connection.js';
import type { Authenticator } from '../security/auth.js';
import { ClientLimits, clientKey, RateLimiter, rateCeilingError, type ClientLease, type RateLimitOptions } from '../security/rate-limit.js';
import { replayError, type ReplayGuards } from '../security/replay.js';
import {
  LATENCY_BUCKETS_SECONDS,
  type CloseReason,
  type ConnectionInfo,
  type MessageKind,
  type TransportName,
  type TransportStats,
} from './types.js';

/** The settings the core reads (a subset of the full settings). */
export interface CoreSettings {
  readonly instance: string;
  readonly maxConnections: number;
  readonly maxFrameBytes: number;
  readonly maxHeaderBytes: number;
  readonly maxQueueBytes: number;
  readonly stallTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly handshakeTimeoutMs: number;
}

/** A received message as the handler hook sees it. `data` is the handler's to keep. */
export interface EchoMessage {
  readonly kind: MessageKind;
  readonly data: Buffer;
  /** Parsed metadata header (framing v1 / `echo.v1`), if the client sent one. */
  readonly header: Readonly<MetadataHeader> | undefined;
}

/** A reply from the hook: `data` as `kind` (default: the message's kind), with an optional header. */
export interface EchoReply {
  readonly data: string | Uint8Array;
  readonly kind?: MessageKind;
  readonly header?: MetadataHeader;
}

/** The connection as the handler hook sees it: metadata plus send and close. */
export interface EchoConnection extends ConnectionInfo {
  /** Sends a message to this peer (a push, outside of any reply). False once closing. */
  send(data: string | Uint8Array, options?: { kind?: MessageKind; header?: MetadataHeader }): boolean;
  /** Closes with a close code (default 1000) and reason. */
  close(code?: number, reason?: string): void;
}

/**
 * The message hook. Return `undefined` to echo (the default behaviour), `null` to send
 * nothing, or a reply. Runs synchronously in receive order; use `connection.send()` for
 * replies computed later. Throwing closes the connection with 1011.
 */
export type MessageHandler = (message: EchoMessage, connection: EchoConnection) => EchoReply | null | undefined;

/** Zeroed totals for one transport. */
export const emptyStats = (): TransportStats => ({
  connectionsOpen: 0,
  connectionsOpened: 0,
  connectionsClosed: 0,
  messagesIn: 0,
  messagesOut: 0,
  bytesIn: 0,
  bytesOut: 0,
  queuedBytes: 0,
  latencySumSeconds: 0,
  latencyCount: 0,
  latencyBuckets: new Array<number>(LATENCY_BUCKETS_SECONDS.length + 1).fill(0),
  rejects: {},
  closes: {},
});

/** How long a closing handshake may take before the socket is dropped, ms. */
export const CLOSE_TIMEOUT_MS = 5000;

/** Close reasons of 1008 refusals, by error code (the wire code is the same). */
const POLICY_REASONS: Partial<Record<string, CloseReason>> = { ECHO_ERR_AUTH: 'auth', ECHO_ERR_REPLAY: 'replay', ECHO_ERR_RATE: 'rate' };

const REASON_BY_CODE: Record<number, CloseReason> = {
  1001: 'shutdown',
  1002: 'malformed',
  1007: 'invalid-utf8',
  1008: 'policy',
  1009: 'too-big',
  1011: 'internal',
  1013: 'limit',
};

let idCounter = 0;
const processTag =
  (process.pid % 1296).toString(36).padStart(2, '0') +
  Math.floor(Math.random() * 1679616)
    .toString(36)
    .padStart(4, '0');

export class EchoCore {
  readonly connections = new Set<Connection>();
  readonly stats: Record<TransportName, TransportStats> = {
    ws: emptyStats(),
    tcp: emptyStats(),
    unix: emptyStats(),
    raw: emptyStats(),
    inproc: emptyStats(),
  };
  /** Coarse clock (Date.now() at the last sweep tick), read on the hot path instead of a syscall. */
  now = Date.now();
  draining = false;
  handler: MessageHandler | undefined;
  /** Security pieces (set by the server at listen; undefined = feature off). */
  auth: Authenticator | undefined;
  replay: ReplayGuards | undefined;
  connectionRate: RateLimitOptions | undefined;
  clients: ClientLimits | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly tickMs: number;
  private drainWaiters: (() => void)[] = [];

  constructor(
    readonly settings: CoreSettings,
    handler?: MessageHandler,
  ) {
    this.handler = handler;
    const periods = [
      settings.idleTimeoutMs,
      settings.keepaliveIntervalMs,
      settings.stallTimeoutMs,
      settings.handshakeTimeoutMs,
      CLOSE_TIMEOUT_MS,
    ].filter((t) => t > 0);
    this.tickMs = Math.max(10, Math.min(1000, Math.floor(Math.min(...periods) / 4)));
  }

  /** Process-unique (one counter for every server and `attach()` in the process). */
  nextId(): string {
    return `${processTag}-${(++idCounter).toString(36)}`;
  }

  /** True when a new connection would exceed `maxConnections` (the transport answers 503 / 1013). */
  get full(): boolean {
    return this.connections.size >= this.settings.maxConnections;
  }

  /** Counts a refused connection or upgrade and publishes it. */
  reject(transport: TransportName, reason: CloseReason, peer: string, detail: string): void {
    const r = this.stats[transport].rejects;
    r[reason] = (r[reason] ?? 0) + 1;
    if (channels.reject.hasSubscribers) channels.reject.publish({ transport, reason, peer, detail });
  }

  /**
   * Per-client admission: a lease on the client's shared limits, `undefined` when there are no
   * per-client limits, `null` when this client is over its connection limit (503 / 1013).
   */
  openLease(key: string): ClientLease | undefined | null {
    if (this.clients === undefined) return undefined;
    const lease = this.clients.open(key, Date.now());
    return 'refused' in lease ? null : lease;
  }

  /** Registers an accepted socket; the caller has already checked `full`, `draining` and the lease. */
  add(
    socket: Duplex,
    transport: TransportName,
    peer: string,
    makeProtocol: (conn: Connection) => ProtocolAdapter,
    identity?: string,
    key?: string,
    lease?: ClientLease,
  ): Connection {
    const stats = this.stats[transport];
    const conn = new Connection(this, socket, transport, peer, stats);
    conn.identity = identity;
    conn.clientKey = key ?? identity ?? peer;
    conn.lease = lease;
    if (this.connectionRate !== undefined) conn.limiter = new RateLimiter(this.connectionRate, Date.now());
    this.connections.add(conn);
    stats.connectionsOpen++;
    stats.connectionsOpened++;
    conn.start(makeProtocol(conn));
    this.ensureTimer();
    if (channels.open.hasSubscribers) channels.open.publish({ connection: conn, instance: this.settings.instance });
    return conn;
  }

  /** Called once per connection when its socket has closed. */
  remove(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    conn.lease?.release(Date.now());
    const stats = conn.stats;
    stats.connectionsOpen--;
    stats.connectionsClosed++;
    stats.closes[conn.closeReason] = (stats.closes[conn.closeReason] ?? 0) + 1;
    if (channels.close.hasSubscribers) {
      channels.close.publish({
        connection: conn,
        instance: this.settings.instance,
        code: conn.closeCode,
        reason: conn.closeReason,
        detail: conn.closeDetail,
        durationMs: Date.now() - conn.connectedAt,
      });
    }
    if (this.connections.size === 0) {
      this.stopTimer();
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  observeLatency(conn: Connection, ms: number): void {
    const s = conn.stats;
    const sec = ms / 1000;
    s.latencySumSeconds += sec;
    s.latencyCount++;
    let i = 0;
    while (i < LATENCY_BUCKETS_SECONDS.length && sec > (LATENCY_BUCKETS_SECONDS[i] as number)) i++;
    s.latencyBuckets[i] = (s.latencyBuckets[i] as number) + 1;
  }

  /** Charges one read batch to the connection's and client's limiters; pauses reading when over. */
  charge(conn: Connection, messages: number, bytes: number): void {
    const now = Date.now();
    let wait = 0;
    for (const l of [conn.limiter, conn.lease?.limiter]) {
      if (l === undefined) continue;
      if (l.noteArrivals(messages, bytes, now)) {
        const e = rateCeilingError();
        conn.close(e.closeCode, e.message, 'rate');
        return;
      }
      l.consumeBatch(messages, bytes, now);
      wait = Math.max(wait, l.wait(1, now));
    }
    if (wait > 0 && !conn.throttled && conn.open) {
      conn.throttled = true;
      conn.socket.pause();
      setTimeout(unthrottle, wait, conn).unref();
    }
  }

  /** Replay protection for a metadata header (throws ProtocolError 1008 when refused). */
  checkReplay(conn: Connection, header: MetadataHeader): void {
    const guards = this.replay;
    if (guards === undefined) return;
    const id = header['id'];
    const ts = header['ts'];
    if (id === undefined && ts === undefined) return;
    // Per client: the authenticated identity (a hello may have set it after accept), else the key.
    const verdict = guards
      .for(conn.identity !== undefined ? `id:${conn.identity}` : conn.clientKey)
      .check(
        typeof id === 'string' || typeof id === 'number' ? String(id) : undefined,
        typeof ts === 'number' ? ts : ts === undefined ? undefined : NaN,
        Date.now(),
      );
    if (verdict !== 'ok') throw replayError(verdict);
  }

  /** Maps an error thrown while handling a connection's input to a close. */
  onConnectionError(conn: Connection, err: unknown): void {
    if (err instanceof ProtocolError) {
      conn.close(err.closeCode, err.message, POLICY_REASONS[err.code] ?? REASON_BY_CODE[err.closeCode] ?? 'policy');
      return;
    }
    const error = err instanceof Error ? err : new Error(String(err));
    if (channels.error.hasSubscribers) channels.error.publish({ connection: conn, error });
    const policy =
      err instanceof EchoError &&
      (err.code === 'ECHO_ERR_POLICY' || err.code === 'ECHO_ERR_AUTH' || err.code === 'ECHO_ERR_RATE' || err.code === 'ECHO_ERR_REPLAY');
    conn.close(
      policy ? CloseCode.POLICY_VIOLATION : CloseCode.INTERNAL_ERROR,
      policy ? error.message : 'internal error',
      policy ? 'policy' : 'internal',
    );
  }

  /**
   * Runs the hook for one message, if there is one. Returns true when the hook handled it
   * (replied, or chose not to); false means "echo as usual".
   */
  dispatch(conn: Connection, kind: MessageKind, data: Buffer, header: MetadataHeader | undefined): boolean {
    const handler = this.handler;
    if (handler === undefined) return false;
    const reply = handler({ kind, data, header }, publicConnection(conn));
    if (reply === undefined) return false;
    if (reply !== null) {
      const payload =
        typeof reply.data === 'string'
          ? Buffer.from(reply.data, 'utf8')
          : Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength);
      conn.protocol.send(reply.kind ?? (typeof reply.data === 'string' ? 'text' : kind), payload, reply.header);
      conn.sent(1);
    }
    return true;
  }

  /** Current totals (queue bytes sampled now). */
  snapshot(): Readonly<Record<TransportName, TransportStats>> {
    for (const s of Object.values(this.stats)) s.queuedBytes = 0;
    for (const c of this.connections) c.stats.queuedBytes += c.socket.writableLength;
    return this.stats;
  }

  /**
   * Graceful drain: every connection gets close 1001 after the echoes of everything already
   * received (they are queued ahead of it); resolves true when all closed before `drainMs`,
   * false when the deadline passed and the rest were dropped.
   */
  async drain(drainMs: number): Promise<boolean> {
    this.draining = true;
    for (const c of this.connections) c.close(CloseCode.GOING_AWAY, 'server shutting down', 'shutdown');
    if (this.connections.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<boolean>((resolve) => this.drainWaiters.push(() => resolve(true)));
    const deadline = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), drainMs);
    });
    const clean = await Promise.race([closed, deadline]);
    clearTimeout(timer);
    if (!clean) {
      const left = [...this.connections];
      for (const c of left) c.destroy('shutdown', 'drain deadline passed');
      if (this.connections.size > 0) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    return clean;
  }

  /** Stops the sweep timer (after the drain). */
  stop(): void {
    this.stopTimer();
  }

  private ensureTimer(): void {
    if (this.timer !== undefined) return;
    this.now = Date.now();
    this.timer = setInterval(sweep, this.tickMs, this);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass over every connection: deadlines for closing, stall, idle and keepalive. */
  sweep(): void {
    const now = (this.now = Date.now());
    const { idleTimeoutMs, keepaliveIntervalMs, stallTimeoutMs } = this.settings;
    for (const c of this.connections) {
      if (c.state !== ConnState.OPEN) {
        if (c.state === ConnState.CLOSING && now - c.closingSince > CLOSE_TIMEOUT_MS)
          c.destroy(c.closeReason, c.closeDetail || 'closing handshake timed out');
        continue;
      }
      if (c.stalledSince !== 0 && stallTimeoutMs > 0 && now - c.stalledSince > stallTimeoutMs) {
        // The peer does not read: a close frame would never reach it either.
        c.destroy(
          'backpressure',
          `send queue above ${this.settings.maxQueueBytes} bytes for ${stallTimeoutMs} ms`,
          CloseCode.POLICY_VIOLATION,
        );
        continue;
      }
      if (c.helloDeadline !== 0 && now > c.helloDeadline) {
        c.close(CloseCode.POLICY_VIOLATION, 'hello timeout', 'handshake');
        continue;
      }
      if (idleTimeoutMs > 0 && now - c.lastMessage > idleTimeoutMs) {
        c.close(CloseCode.GOING_AWAY, 'idle timeout', 'idle');
        continue;
      }
      if (keepaliveIntervalMs > 0 && c.stalledSince === 0) {
        const silent = now - c.lastRead;
        if (silent > 2 * keepaliveIntervalMs) c.destroy('keepalive', `no answer to keepalive pings for ${silent} ms`);
        else if (silent > keepaliveIntervalMs && now - c.lastPing > keepaliveIntervalMs) {
          c.lastPing = now;
          c.protocol.ping();
        }
      }
    }
  }
}

function sweep(core: EchoCore): void {
  core.sweep();
}

/** A string as UTF-8, bytes as a Buffer view (no copy). */
function toBuffer(data: string | Uint8Array): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function unthrottle(conn: Connection): void {
  conn.throttled = false;
  if (conn.stalledSince === 0 && conn.state !== ConnState.CLOSED) conn.socket.resume();
}

/** The per-client key of a connection: its identity, else its IP (see `clientKey`). */
export function keyFor(identity: string | undefined, remoteAddress: string | undefined): string {
  return clientKey(identity, remoteAddress);
}

const kPublic = Symbol('echoserver.public');
type WithPublic = Connection & { [kPublic]?: EchoConnection };

/** A thin view for the hook (created on first use, so connections without a hook pay nothing). */
function publicConnection(conn: WithPublic): EchoConnection {
  let pub = conn[kPublic];
  if (pub !== undefined) return pub;
  pub = Object.freeze({
    get id() {
      return conn.id;
    },
    get transport() {
      return conn.transport;
    },
    get peer() {
      return conn.peer;
    },
    get identity() {
      return conn.identity;
    },
    get connectedAt() {
      return conn.connectedAt;
    },
    get messagesIn() {
      return conn.messagesIn;
    },
    get messagesOut() {
      return conn.messagesOut;
    },
    get bytesIn() {
      return conn.bytesIn;
    },
    get bytesOut() {
      return conn.bytesOut;
    },
    get queuedBytes() {
      return conn.queuedBytes;
    },
    send(data: string | Uint8Array, options: { kind?: MessageKind; header?: MetadataHeader } = {}): boolean {
      if (!conn.open) return false;
      const payload = toBuffer(data);
      conn.protocol.send(options.kind ?? (typeof data === 'string' ? 'text' : 'binary'), payload, options.header);
      conn.sent(1);
      return true;
    },
    close(code = 1000, reason = ''): void {
      conn.close(code, reason, code === 1000 ? 'normal' : (REASON_BY_CODE[code] ?? 'policy'));
    },
  });
  conn[kPublic] = pub;
  return pub;
}
