/**
 * The echo core owns the message path for every transport:
 * - one admission step (draining → connection limit, counting upgrades still being
 *   authenticated → per-client lease → register), used by every listener;
 * - one per-read path (decode → per-message pipeline → one batched write → rate → budget);
 * - one per-message pipeline (replay check → embedder hook → echo with the `srv` stamp);
 * - one flow-control state per connection (`Connection.pause/resume` with a set of reasons);
 * - one sweep timer for idle, keepalive, stall, hello and closing deadlines (one timer for all
 *   connections rather than one per connection: memory per idle connection is a target);
 * - one server-wide budget for bytes held in partly received frames;
 * - one clock (`Clock`), which tests replace.
 * Transports only decode and encode (`ProtocolAdapter`).
 */
import type { Duplex } from 'node:stream';
import { CloseCode, EchoError, ErrorCode, ProtocolError } from '../errors.js';
import type { MetadataHeader } from '../protocol/header.js';
import { stampHeader } from '../protocol/header.js';
import { isValidCloseCode } from '../protocol/ws-frame.js';
import { channels, sampleMessage } from './events.js';
import { systemClock, type Clock } from './clock.js';
import { Connection, ConnState, Pause, type ConnectionHost, type ProtocolAdapter } from './connection.js';
import { publishMessage, serverStamp } from './message-events.js';
import {
  DelayQueue,
  FaultPlan,
  faultChannel,
  hasInjectionFields,
  injectionProtocolError,
  newConnectionDebug,
  parseHeaderInjection,
  parseUrlInjection,
  pickDelay,
  type ConnectionInjection,
  type FaultEvent,
  type InjectedKind,
  type InjectionLimits,
  type MessageInjection,
  type WhoamiContext,
} from './injection.js';
import type { Authenticator } from '../security/auth.js';
import { ClientLimits, clientKey, RateLimiter, rateCeilingError, type ClientLease, type RateLimitOptions } from '../security/rate-limit.js';
import { replayError, replayFields, type ReplayGuards } from '../security/replay.js';
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
  /** Worker id under `--workers` (null otherwise): in `srv` and the hello reply. */
  readonly workerId: string | null;
  readonly maxConnections: number;
  readonly maxFrameBytes: number;
  readonly maxHeaderBytes: number;
  readonly maxQueueBytes: number;
  readonly maxBufferedBytes: number;
  readonly stallTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly handshakeTimeoutMs: number;
  /** Longest delay a client may ask for, ms (latency injection). @default 30000 */
  readonly maxDelayMs?: number;
  /** Whether clients may ask for faults. @default false */
  readonly faultInjection?: boolean;
  /** Plaintext TCP/Unix sockets read and written directly (core/direct-io.ts) or through streams. @default 'direct' */
  readonly socketIo?: 'direct' | 'stream';
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
  /**
   * Sends a message to this peer (a push, outside of any reply). Returns false once the
   * connection is closing (nothing was sent) or when its send queue is above `maxQueueBytes`
   * (the message is queued; wait for `drained()` before sending more).
   */
  send(data: string | Uint8Array, options?: { kind?: MessageKind; header?: MetadataHeader }): boolean;
  /** Resolves when the send queue is below `maxQueueBytes` again (at once if it is), or the connection closed. */
  drained(): Promise<void>;
  /**
   * Closes with a close code (default 1000) and reason. The code must be one a peer may
   * receive (1000–1003, 1007–1014, 3000–4999) and the reason at most 123 UTF-8 bytes:
   * anything else throws an `EchoError` (`ECHO_ERR_ARGUMENT`) and nothing is sent.
   */
  close(code?: number, reason?: string): void;
}

/**
 * The message hook. Return `undefined` to echo (the default behaviour), `null` to send
 * nothing, or a reply. Runs synchronously in receive order; use `connection.send()` for
 * replies computed later. Throwing closes the connection with 1011.
 */
export type MessageHandler = (message: EchoMessage, connection: EchoConnection) => EchoReply | null | undefined;

/** A refused admission: what the listener answers (HTTP 503 or close 1013 / 1001). */
export interface Refusal {
  readonly reason: CloseReason;
  readonly code: number;
  readonly message: string;
}

/** An admission: the per-client lease (undefined when there are no per-client limits). */
export interface Admitted {
  readonly lease: ClientLease | undefined;
  readonly key: string;
}

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
  injected: {},
});

/** `--max-delay` when the settings give none (a library core), ms. */
const DEFAULT_MAX_DELAY_MS = 30_000;
/** Verdicts of the injection step. */
const ECHO = 0;
const DELAYED = 1;
const DISCARD = 2;

/** The delay queue's hold on reading: one pause reason of its own. */
function delaySink(conn: Connection): { pauseReading(): void; resumeReading(): void } {
  return {
    pauseReading: () => conn.pause(Pause.DELAY),
    resumeReading: () => conn.resume(Pause.DELAY),
  };
}

/** How long a closing handshake may take before the socket is dropped, ms. */
export const CLOSE_TIMEOUT_MS = 5000;

/** A partly received frame at least this large is paused when the server-wide budget is spent. */
export const BUDGET_PAUSE_MIN_BYTES = 64 * 1024;

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

export class EchoCore implements ConnectionHost {
  readonly connections = new Set<Connection>();
  readonly stats: Record<TransportName, TransportStats> = {
    ws: emptyStats(),
    tcp: emptyStats(),
    unix: emptyStats(),
    raw: emptyStats(),
    inproc: emptyStats(),
  };
  /** Coarse clock (the clock's reading at the last sweep tick), read on the hot path instead of a syscall. */
  now: number;
  draining = false;
  handler: MessageHandler | undefined;
  /** Security pieces (set by the server at listen; undefined = feature off). */
  auth: Authenticator | undefined;
  replay: ReplayGuards | undefined;
  connectionRate: RateLimitOptions | undefined;
  clients: ClientLimits | undefined;
  /**
   * The whoami view of a connection for `hello` replies (installed by the server; undefined:
   * replies carry none). `whoamiContext` keeps what the socket cannot tell (upgrade request, claims).
   */
  describe: ((conn: Connection) => unknown) | undefined = undefined;
  readonly whoamiContext = new WeakMap<Connection, WhoamiContext>();
  /** Upgrades admitted to authentication and not yet connected: they hold a place under the limit. */
  pendingAdmissions = 0;
  /** Bytes held in partly received frames, all connections (the budget's figure). */
  heldBytes = 0;
  /** Connections paused because the budget is spent. */
  readonly budgetPaused = new Set<Connection>();
  /** The one budget-paused connection allowed to read on (rotated every sweep), so frames complete. */
  private budgetRunner: Connection | undefined = undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly tickMs: number;
  private drainWaiters: (() => void)[] = [];

  constructor(
    readonly settings: CoreSettings,
    handler?: MessageHandler,
    readonly clock: Clock = systemClock,
  ) {
    this.handler = handler;
    this.now = clock.now();
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
    return this.connections.size + this.pendingAdmissions >= this.settings.maxConnections;
  }

  /** Counts a refused connection or upgrade and publishes it. */
  reject(transport: TransportName, reason: CloseReason, peer: string, detail: string): void {
    const r = this.stats[transport].rejects;
    r[reason] = (r[reason] ?? 0) + 1;
    if (channels.reject.hasSubscribers) channels.reject.publish({ transport, reason, peer, detail });
  }

  private refuse(transport: TransportName, peer: string, reason: CloseReason, code: number, message: string): Refusal {
    this.reject(transport, reason, peer, message);
    return { reason, code, message };
  }

  /** Draining → connection limit; undefined when there is room. Counts the refusal. */
  private roomFor(transport: TransportName, peer: string): Refusal | undefined {
    if (this.draining) return this.refuse(transport, peer, 'shutdown', CloseCode.GOING_AWAY, 'server is shutting down');
    if (this.full) return this.refuse(transport, peer, 'limit', CloseCode.TRY_AGAIN_LATER, 'connection limit reached');
    return undefined;
  }

  /**
   * Holds a place under the connection limit while an upgrade is authenticated (JWT, JWKS):
   * a flood of slow handshakes cannot go past the limit. Release with `unreserve()`.
   */
  reserve(transport: TransportName, peer: string): Refusal | undefined {
    const refusal = this.roomFor(transport, peer);
    if (refusal === undefined) this.pendingAdmissions++;
    return refusal;
  }

  unreserve(): void {
    if (this.pendingAdmissions > 0) this.pendingAdmissions--;
  }

  /**
   * The one admission step: draining → connection limit → per-client lease. `key` is the
   * client's key for per-client limits (see `clientKeyOf`).
   */
  admit(transport: TransportName, peer: string, key: string): Admitted | Refusal {
    const refusal = this.roomFor(transport, peer);
    if (refusal !== undefined) return refusal;
    if (this.clients === undefined) return { lease: undefined, key };
    const lease = this.clients.open(key, this.clock.now());
    if ('refused' in lease)
      return this.refuse(transport, peer, 'limit', CloseCode.TRY_AGAIN_LATER, 'too many connections from this client');
    return { lease, key };
  }

  /** Swaps a connection's per-client lease for its identity's, once a hello identified it. */
  moveLease(conn: Connection, identity: string): boolean {
    if (this.clients === undefined) return true;
    const key = clientKey(identity, undefined);
    if (conn.clientKey === key) return true;
    const lease = this.clients.open(key, this.clock.now());
    if ('refused' in lease) return false;
    conn.lease?.release(this.clock.now());
    conn.lease = lease;
    conn.clientKey = key;
    return true;
  }

  /**
   * Registers an admitted socket. The protocol is built first: a factory that throws refuses
   * the socket (1011) and registers nothing, so a drain never waits for it.
   */
  accept(
    socket: Duplex,
    transport: TransportName,
    peer: string,
    makeProtocol: (conn: Connection) => ProtocolAdapter,
    admitted: Admitted,
    identity?: string,
  ): Connection | undefined {
    const stats = this.stats[transport];
    const conn = new Connection(this, socket, transport, peer, stats);
    conn.identity = identity;
    conn.clientKey = admitted.key;
    conn.lease = admitted.lease;
    let protocol: ProtocolAdapter;
    try {
      protocol = makeProtocol(conn);
    } catch (err) {
      admitted.lease?.release(this.clock.now());
      this.reject(transport, 'internal', peer, err instanceof Error ? err.message : String(err));
      if (channels.error.hasSubscribers)
        channels.error.publish({ connection: undefined, error: err instanceof Error ? err : new Error(String(err)) });
      destroySoon(socket);
      return undefined;
    }
    if (this.connectionRate !== undefined) conn.limiter = new RateLimiter(this.connectionRate, this.clock.now());
    this.connections.add(conn);
    stats.connectionsOpen++;
    stats.connectionsOpened++;
    conn.start(protocol);
    this.ensureTimer();
    if (channels.open.hasSubscribers) channels.open.publish({ connection: conn, instance: this.settings.instance });
    return conn;
  }

  /** Called once per connection when its socket has closed (or was dropped at the drain deadline). */
  remove(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    conn.state = ConnState.CLOSED;
    const now = this.clock.now();
    conn.lease?.release(now);
    if (conn.identity === undefined) this.replay?.forget(replayKey(conn));
    this.releaseHeld(conn);
    conn.debug?.queue?.clear();
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
        durationMs: now - conn.connectedAt,
      });
    }
    if (this.connections.size === 0) {
      this.stopTimer();
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * The per-read path, for every transport: counters, decode (the protocol calls `message()`
   * for each data message and writes its echoes through `conn.out`), one flush, then the rate
   * limits, the partial-frame budget and the latency histogram.
   */
  onRead(conn: Connection, chunk: Buffer): void {
    const n = chunk.length;
    conn.bytesIn += n;
    conn.stats.bytesIn += n;
    conn.lastRead = this.now;
    const t0 = performance.now();
    const m0 = conn.messagesIn;
    const out = conn.out;
    out.begin();
    try {
      conn.protocol.onData(chunk);
    } catch (err) {
      // Echoes of the frames before a protocol error still go out, ahead of the close frame.
      out.finish();
      conn.fail(err);
      this.accountHeld(conn);
      return;
    }
    const controls = out.controls;
    out.finish();
    const messages = conn.messagesIn - m0;
    // Rate limits are charged per read, after the echo: over the rate, reading pauses (TCP flow
    // control pushes back on the client) and nothing already read is dropped. Pings count too.
    if (conn.limiter !== undefined || conn.lease?.limiter !== undefined) this.charge(conn, messages + controls, n);
    this.accountHeld(conn);
    // Receive → echo handed to the kernel, per read batch that carried messages (cheap: one
    // clock read per read; reads of only control frames are not echo batches).
    if (messages === 0) return;
    if (conn.socket.writableLength === 0) this.observeLatency(conn, performance.now() - t0);
    else if (conn.unflushedSince === 0) conn.unflushedSince = t0;
  }

  onDrain(conn: Connection): void {
    if (conn.unflushedSince !== 0) {
      this.observeLatency(conn, performance.now() - conn.unflushedSince);
      conn.unflushedSince = 0;
    }
  }

  /**
   * One data message, before its echo: replay check → published event → embedder hook.
   * Returns true when the transport should echo it (false: discarded after our close, or the
   * hook replied or chose not to). Throws ProtocolError to close the connection.
   */
  message(conn: Connection, kind: MessageKind, buf: Buffer, start: number, end: number, header: MetadataHeader | undefined): boolean {
    if (conn.state !== ConnState.OPEN) return false; // after our close frame, data is discarded
    const out = conn.out;
    out.batchIn++;
    out.dueAt = -1;
    if (header !== undefined && this.replay !== undefined) this.checkReplay(conn, header);
    if (channels.message.hasSubscribers && (header !== undefined || sampleMessage()))
      publishMessage(conn, conn.messagesIn + out.batchIn, out.receivedAt(), kind, end - start, header);
    // Latency and fault injection: one field check unless the client asked for any.
    let delayed = false;
    if (conn.debug !== undefined || (header !== undefined && hasInjectionFields(header))) {
      const verdict = this.inject(conn, header);
      if (verdict === DISCARD) return false;
      delayed = verdict === DELAYED;
    }
    if (this.handler !== undefined && this.dispatch(conn, kind, Buffer.from(buf.subarray(start, end)), header)) return false;
    // A delayed echo counts as sent when it is (batch-writer.ts).
    if (!delayed) out.batchOut++;
    return true;
  }

  /** The server's `hello` payload (framing v1 and `echo.v1`): verdict, connection, instance, worker, identity, and what the server saw (`whoami`). */
  helloReply(conn: Connection): Buffer {
    const { instance, workerId } = this.settings;
    return Buffer.from(
      JSON.stringify({
        v: 1,
        ok: true,
        conn: conn.id,
        instance,
        worker: workerId ?? undefined,
        identity: conn.identity,
        whoami: this.describe?.(conn),
      }),
    );
  }

  /** The echoed header of the current message: the client's fields plus the `srv` stamp. */
  stamp(conn: Connection, header: MetadataHeader): Buffer {
    const out = conn.out;
    const stamp = serverStamp(conn, conn.messagesIn + out.batchIn, out.receivedAt());
    // A delayed echo: `tx` is when it is due to leave on the core's clock (never before the echo
    // ahead of it), `delay` the milliseconds it is held back.
    if (out.dueAt >= 0) return stampHeader(header, { ...stamp, tx: out.dueAt, delay: out.delayMs });
    return stampHeader(header, stamp);
  }

  /**
   * Latency and fault injection for one message (docs/PROTOCOL.md §1.10): the header's fields
   * (refused with 1008 when invalid, over --max-delay, or faults without --fault-injection),
   * then drop, close and delay, from the header or else the connection's URL.
   */
  private inject(conn: Connection, header: MetadataHeader | undefined): number {
    const debug = (conn.debug ??= newConnectionDebug());
    if (debug.closing) return DISCARD; // a close was asked for: nothing after it is echoed
    if (debug.pendingClose !== undefined) {
      // The message that asked for it was not echoed (the hook sent nothing): close now.
      const close = debug.pendingClose;
      debug.pendingClose = undefined;
      debug.closing = true;
      close();
      return DISCARD;
    }
    let asked: MessageInjection | undefined;
    if (header !== undefined && hasInjectionFields(header)) {
      const parsed = parseHeaderInjection(header, this.injectionLimits());
      if (!parsed.ok) throw injectionProtocolError(parsed);
      asked = parsed.value;
    }
    const plan = (debug.plan ??= new FaultPlan(debug.injection, Math.random));
    const source = asked?.drop !== undefined ? 'header' : 'url';
    if (plan.drop(asked)) {
      this.countInjected(conn, 'drop');
      if (faultChannel.hasSubscribers) faultChannel.publish({ connection: conn, fault: 'drop', source } satisfies FaultEvent);
      return DISCARD;
    }
    const closeCode = plan.afterEcho(asked);
    if (closeCode !== undefined) {
      const from = asked?.close !== undefined ? 'header' : 'url';
      debug.pendingClose = () => this.injectedClose(conn, closeCode, from);
    }
    const spec = asked?.delay ?? debug.injection.delay;
    const queue = debug.queue;
    if (spec === undefined && closeCode === undefined && (queue === undefined || queue.size === 0)) return ECHO;
    // Delayed (or behind a delayed echo, or followed by a close): the echo goes through the queue.
    const q = (debug.queue ??= new DelayQueue(delaySink(conn), this.settings.maxQueueBytes, this.clock));
    const { dueAt, appliedMs } = q.line.schedule(spec === undefined ? 0 : pickDelay(spec, Math.random));
    const out = conn.out;
    out.dueAt = dueAt;
    out.delayMs = appliedMs;
    if (spec !== undefined) this.countInjected(conn, 'delay');
    return DELAYED;
  }

  private injectionLimits(): InjectionLimits {
    return { maxDelayMs: this.settings.maxDelayMs ?? DEFAULT_MAX_DELAY_MS, faultInjection: this.settings.faultInjection === true };
  }

  /** Validates what a WebSocket URL asks for (before the upgrade is answered). */
  parseUrlInjection(url: string): ReturnType<typeof parseUrlInjection> {
    return parseUrlInjection(url, this.injectionLimits());
  }

  /** Applies what a connection's URL asked for, once it is open: an immediate close, a stall. */
  applyUrlInjection(conn: Connection, injection: ConnectionInjection): void {
    const debug = (conn.debug ??= newConnectionDebug(injection));
    const plan = (debug.plan ??= new FaultPlan(injection, Math.random));
    const now = plan.closeAtOpen();
    if (now !== undefined) {
      debug.closing = true;
      this.injectedClose(conn, now, 'url');
      return;
    }
    const stall = injection.stall;
    if (stall !== undefined && stall > 0) {
      this.countInjected(conn, 'stall');
      if (faultChannel.hasSubscribers)
        faultChannel.publish({ connection: conn, fault: 'stall', ms: stall, source: 'url' } satisfies FaultEvent);
      conn.pause(Pause.STALL);
      this.clock.schedule(() => conn.resume(Pause.STALL), stall);
    }
  }

  private injectedClose(conn: Connection, code: number, source: 'url' | 'header'): void {
    if (!conn.open) return;
    this.countInjected(conn, 'close');
    if (faultChannel.hasSubscribers) faultChannel.publish({ connection: conn, fault: 'close', code, source } satisfies FaultEvent);
    conn.close(code, 'fault injected', 'fault');
  }

  private countInjected(conn: Connection, kind: InjectedKind): void {
    const counts = (conn.stats.injected ??= {});
    counts[kind] = (counts[kind] ?? 0) + 1;
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
    const now = this.clock.now();
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
    if (wait > 0 && (conn.paused & Pause.RATE) === 0 && conn.open) {
      conn.pause(Pause.RATE);
      this.clock.schedule(() => conn.resume(Pause.RATE), wait);
    }
  }

  /** Replay protection for a metadata header (throws ProtocolError 1008 when refused). */
  checkReplay(conn: Connection, header: MetadataHeader): void {
    const guards = this.replay;
    if (guards === undefined) return;
    // id: a string only; ts: epoch ms or RFC 3339 (src/security/replay.ts).
    const fields = replayFields(header);
    if (typeof fields === 'string') throw replayError(fields);
    if (fields.id === undefined && fields.ts === undefined) return;
    const verdict = guards.for(replayKey(conn)).check(fields.id, fields.ts, this.clock.now());
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
      conn.protocol.send(reply.kind ?? (typeof reply.data === 'string' ? 'text' : kind), toBuffer(reply.data), reply.header);
      conn.sent(1);
    }
    return true;
  }

  /** Counts a connection's partly received bytes against the server-wide budget. */
  private accountHeld(conn: Connection): void {
    const held = conn.state === ConnState.CLOSED ? 0 : conn.protocol.bufferedBytes;
    if (held !== conn.heldBytes) {
      this.heldBytes += held - conn.heldBytes;
      conn.heldBytes = held;
    }
    if (this.heldBytes <= this.settings.maxBufferedBytes) {
      if (this.budgetPaused.size > 0) this.resumeBudget();
      if (this.budgetRunner === conn && held === 0) this.budgetRunner = undefined;
      return;
    }
    // Over budget: stop reading the peers holding large partial frames (small messages keep
    // flowing); one of them (the runner) reads on so that frames complete and free the budget.
    if (held >= BUDGET_PAUSE_MIN_BYTES && (conn.paused & Pause.BUDGET) === 0 && conn.open) {
      if (this.budgetRunner === undefined || !this.connections.has(this.budgetRunner)) this.budgetRunner = conn;
      else if (this.budgetRunner !== conn) {
        this.budgetPaused.add(conn);
        conn.pause(Pause.BUDGET);
      }
    }
    if (this.budgetRunner === conn && held === 0) {
      this.budgetRunner = undefined;
      this.rotateBudget();
    }
  }

  private releaseHeld(conn: Connection): void {
    this.heldBytes -= conn.heldBytes;
    conn.heldBytes = 0;
    this.budgetPaused.delete(conn);
    if (this.budgetRunner === conn) this.budgetRunner = undefined;
    if (this.heldBytes <= this.settings.maxBufferedBytes && this.budgetPaused.size > 0) this.resumeBudget();
    else if (this.budgetRunner === undefined) this.rotateBudget();
  }

  private resumeBudget(): void {
    const paused = [...this.budgetPaused];
    this.budgetPaused.clear();
    this.budgetRunner = undefined;
    for (const c of paused) c.resume(Pause.BUDGET);
  }

  /** Lets the next paused peer read on (the runner that was, if still holding, waits its turn). */
  private rotateBudget(): void {
    const next = this.budgetPaused.values().next().value;
    if (next === undefined) return;
    const current = this.budgetRunner;
    if (current !== undefined && current.heldBytes >= BUDGET_PAUSE_MIN_BYTES && current.open) {
      this.budgetPaused.add(current);
      current.pause(Pause.BUDGET);
    }
    this.budgetPaused.delete(next);
    this.budgetRunner = next;
    next.resume(Pause.BUDGET);
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
   * false when the deadline passed and the rest were dropped (and forgotten at once: a
   * stream that never emits `close` cannot hold the drain).
   */
  async drain(drainMs: number): Promise<boolean> {
    this.draining = true;
    for (const c of this.connections) c.close(CloseCode.GOING_AWAY, 'server shutting down', 'shutdown');
    if (this.connections.size === 0) return true;
    let cancel: (() => void) | undefined;
    const closed = new Promise<boolean>((resolve) => this.drainWaiters.push(() => resolve(true)));
    const deadline = new Promise<boolean>((resolve) => {
      cancel = this.clock.schedule(() => resolve(false), drainMs);
    });
    const clean = await Promise.race([closed, deadline]);
    cancel?.();
    if (!clean) {
      for (const c of [...this.connections]) {
        c.destroy('shutdown', 'drain deadline passed');
        this.remove(c);
      }
    }
    return clean;
  }

  /** Stops the sweep timer (after the drain). */
  stop(): void {
    this.stopTimer();
  }

  private ensureTimer(): void {
    if (this.timer !== undefined) return;
    this.now = this.clock.now();
    this.timer = setInterval(sweep, this.tickMs, this);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass over every connection: deadlines for closing, stall, hello, idle and keepalive. */
  sweep(): void {
    const now = (this.now = this.clock.now());
    const { idleTimeoutMs, keepaliveIntervalMs, stallTimeoutMs } = this.settings;
    if (this.budgetPaused.size > 0) this.rotateBudget();
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
      if (c.authDeadline !== 0 && now > c.authDeadline) {
        c.close(CloseCode.POLICY_VIOLATION, 'token expired', 'auth');
        continue;
      }
      if (idleTimeoutMs > 0 && now - c.lastMessage > idleTimeoutMs) {
        c.close(CloseCode.GOING_AWAY, 'idle timeout', 'idle');
        continue;
      }
      // Keepalive only where the framing can ping, and only while we read the peer (a paused
      // peer's pongs are not read, so its silence is ours).
      if (keepaliveIntervalMs > 0 && c.paused === 0 && c.protocol.canPing) {
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

/** Replay tables: per identity, else per connection (anonymous clients never share ids). */
function replayKey(conn: Connection): string {
  return conn.identity !== undefined ? `id:${conn.identity}` : `conn:${conn.id}`;
}

let anonymousCounter = 0;

/**
 * The per-client key of a new connection: its identity, else its IP (clients behind one NAT
 * share limits, as with any IP-keyed limit). Unix and in-process peers have no address: each
 * connection is its own client, so one noisy local client never throttles the others.
 */
export function clientKeyOf(transport: TransportName, identity: string | undefined, remoteAddress: string | undefined): string {
  if (identity === undefined && (transport === 'unix' || transport === 'inproc' || remoteAddress === undefined))
    return `local:${(++anonymousCounter).toString(36)}`;
  return clientKey(identity, remoteAddress);
}

/** A string as UTF-8, bytes as a Buffer view (no copy). */
function toBuffer(data: string | Uint8Array): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Ends a refused socket: it is destroyed once its last bytes are out, or after a second at most. */
export function destroySoon(socket: Duplex, lastBytes?: Buffer | string): void {
  socket.on('error', noop);
  if (socket.destroyed) return;
  socket.once('finish', destroySocket);
  setTimeout(destroySocket.bind(socket), 1000).unref();
  if (socket.writable) socket.end(lastBytes);
  else socket.destroy();
  // Read (and drop) what the peer still sends: a paused socket never sees the peer's end.
  socket.resume();
}

function destroySocket(this: Duplex): void {
  this.destroy();
}

function noop(): void {}

/** Validates a close code and reason given by an embedder. */
export function checkClose(code: number, reason: string): void {
  if (!Number.isInteger(code) || !isValidCloseCode(code))
    throw new EchoError(ErrorCode.ARGUMENT, `close code ${String(code)} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999`);
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > 123)
    throw new EchoError(ErrorCode.ARGUMENT, 'close reason must be a string of at most 123 UTF-8 bytes');
}

const kPublic = Symbol('echoserver.public');
type WithPublic = Connection & { [kPublic]?: EchoConnection };

/** A thin view for the hook (created on first use, so connections without a hook pay nothing). */
function publicConnection(conn: WithPublic): EchoConnection {
  let pub = conn[kPublic];
  if (pub !== undefined) return pub;
  const maxQueue = (conn.host.settings as CoreSettings).maxQueueBytes;
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
      conn.protocol.send(options.kind ?? (typeof data === 'string' ? 'text' : 'binary'), toBuffer(data), options.header);
      conn.sent(1);
      return conn.socket.writableLength <= maxQueue;
    },
    drained(): Promise<void> {
      const s = conn.socket;
      if (s.writableLength <= maxQueue || conn.state === ConnState.CLOSED) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = (): void => {
          s.removeListener('drain', done);
          s.removeListener('close', done);
          resolve();
        };
        s.on('drain', done);
        s.on('close', done);
      });
    },
    close(code = 1000, reason = ''): void {
      checkClose(code, reason);
      conn.close(code, reason, code === 1000 ? 'normal' : (REASON_BY_CODE[code] ?? 'policy'));
    },
  });
  conn[kPublic] = pub;
  return pub;
}
