/**
 * One connection, whatever its transport: minimal metadata, counters, the bounded send
 * queue (the socket's writable buffer, with reading paused above `maxQueueBytes`), and its
 * close state. The wire protocol is a `ProtocolAdapter`; the socket is any Duplex, so TCP,
 * TLS, Unix, upgraded WebSocket sockets and in-process pairs all take this one path.
 */
import type { Duplex } from 'node:stream';
import type { MetadataHeader } from '../protocol/header.js';
import type { CloseReason, ConnectionInfo, MessageKind, TransportName, TransportStats } from './types.js';
import type { EchoCore } from './core.js';
import type { ClientLease, RateLimiter } from '../security/rate-limit.js';

/** The wire side of a connection (WebSocket, v1, len, raw): one per connection. */
export interface ProtocolAdapter {
  /** Feeds one read. Throws ProtocolError for the connection to fail with its close code. */
  onData(chunk: Buffer): void;
  /** Sends a server-initiated message (handler replies, pushes). */
  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void;
  /** Sends a keepalive ping, where the protocol has one. */
  ping(): void;
  /**
   * Starts the closing handshake: queue a close frame (after everything already queued) and
   * keep reading until the peer answers; protocols without one just end the socket.
   */
  close(code: number, reason: string): void;
  /** Bytes held for incomplete frames. */
  readonly bufferedBytes: number;
}

export const ConnState = { OPEN: 0, CLOSING: 1, CLOSED: 2 } as const;
type ConnState = (typeof ConnState)[keyof typeof ConnState];

/** Socket → connection link; listeners are shared named functions, not per-connection closures. */
export const kConn = Symbol('echoserver.connection');
type LinkedSocket = Duplex & { [kConn]?: Connection };

export class Connection implements ConnectionInfo {
  readonly id: string;
  readonly transport: TransportName;
  readonly peer: string;
  identity: string | undefined = undefined;
  readonly connectedAt: number;
  messagesIn = 0;
  messagesOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Per-connection message sequence (for `srv.seq`). */
  seq = 0;
  protocol!: ProtocolAdapter;
  state: ConnState = ConnState.OPEN;
  /** Coarse clock readings (EchoCore.now): last read, last data message either way, last ping. */
  lastRead: number;
  lastMessage: number;
  lastPing = 0;
  closingSince = 0;
  /** Reading paused because the send queue is over its limit; since when. */
  stalledSince = 0;
  /** `performance.now()` of the oldest read whose echo is not flushed yet (0: none). */
  unflushedSince = 0;
  /** Per-connection rate limiter and per-client lease (undefined when those limits are off). */
  limiter: RateLimiter | undefined = undefined;
  lease: ClientLease | undefined = undefined;
  /** Key for per-client limits and replay protection: identity, else IP. */
  clientKey = '';
  /** Reading paused by the rate limiter until its timer fires. */
  throttled = false;
  /** Coarse-clock deadline for the hello (authentication on framing v1); 0 = none. */
  helloDeadline = 0;
  closeCode = 1006;
  closeReason: CloseReason = 'normal';
  closeDetail = '';

  constructor(
    readonly core: EchoCore,
    readonly socket: Duplex,
    transport: TransportName,
    peer: string,
    readonly stats: TransportStats,
  ) {
    this.id = core.nextId();
    this.transport = transport;
    this.peer = peer;
    this.connectedAt = Date.now();
    // Not core.now: that coarse clock stands still while the core has no connections (its sweep
    // timer is stopped), and a stale start would count the quiet time before this connection
    // as its own silence (keepalive drop or idle close at the first sweep).
    this.lastRead = this.lastMessage = this.connectedAt;
  }

  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  get open(): boolean {
    return this.state === ConnState.OPEN;
  }

  /** Starts listening to the socket. */
  start(protocol: ProtocolAdapter): void {
    this.protocol = protocol;
    const s = this.socket as LinkedSocket;
    s[kConn] = this;
    s.on('data', onSocketData);
    s.on('drain', onSocketDrain);
    s.on('end', onSocketEnd);
    s.on('error', onSocketError);
    s.on('close', onSocketClose);
  }

  /**
   * Hands bytes to the socket and accounts for them. Above the queue limit, reading from this
   * peer stops until the queue drains (STYLE.md §6): the queue grows by at most one read's
   * echoes past the limit.
   */
  write(buf: Buffer, onFlushed?: (err?: Error | null) => void): void {
    this.bytesOut += buf.length;
    this.stats.bytesOut += buf.length;
    const s = this.socket;
    s.write(buf, onFlushed);
    if (s.writableLength > this.core.settings.maxQueueBytes && this.stalledSince === 0) {
      this.stalledSince = this.core.now;
      s.pause();
    }
  }

  /** Counts echoes/replies sent (per batch, not per message). */
  sent(messages: number): void {
    this.messagesOut += messages;
    this.stats.messagesOut += messages;
    this.lastMessage = this.core.now;
  }

  /** Counts messages received (per batch). */
  received(messages: number): void {
    this.messagesIn += messages;
    this.stats.messagesIn += messages;
    this.lastMessage = this.core.now;
  }

  /** Closes with a close frame (protocols that have one) and a reason for logs and metrics. */
  close(code: number, detail: string, reason: CloseReason): void {
    if (this.state !== ConnState.OPEN) return;
    this.state = ConnState.CLOSING;
    this.closingSince = this.core.now;
    this.closeCode = code;
    this.closeReason = reason;
    this.closeDetail = detail;
    this.protocol.close(code, detail);
  }

  /** The peer answered our close (or closed first and we answered): end the socket. */
  finish(code: number, detail: string): void {
    if (this.state === ConnState.OPEN) {
      this.closeCode = code;
      this.closeDetail = detail;
      this.closeReason = 'normal';
    }
    this.state = ConnState.CLOSING;
    this.socket.end();
  }

  /** Drops the connection at once (dead peer, stalled queue, deadline passed). */
  destroy(reason: CloseReason, detail: string, code = 1006): void {
    if (this.state === ConnState.OPEN) {
      this.closeCode = code;
      this.closeReason = reason;
      this.closeDetail = detail;
    }
    this.state = ConnState.CLOSING;
    this.socket.destroy();
  }

  /** Error from the protocol (ProtocolError → its close code) or the handler hook. */
  fail(err: unknown): void {
    this.core.onConnectionError(this, err);
  }
}

function onSocketData(this: LinkedSocket, chunk: Buffer): void {
  const conn = this[kConn] as Connection;
  const n = chunk.length;
  conn.bytesIn += n;
  conn.stats.bytesIn += n;
  conn.lastRead = conn.core.now;
  const t0 = performance.now();
  const m0 = conn.messagesIn;
  try {
    conn.protocol.onData(chunk);
  } catch (err) {
    conn.fail(err);
    return;
  }
  // Rate limits are charged per read, after the echo: over the rate, reading pauses (TCP flow
  // control pushes back on the client) and nothing already read is dropped.
  if (conn.limiter !== undefined || conn.lease?.limiter !== undefined) conn.core.charge(conn, conn.messagesIn - m0, n);
  // Receive → echo handed to the kernel, per read batch that carried messages (cheap: one
  // clock read per read; reads of only control frames are not echo batches).
  if (conn.messagesIn === m0) return;
  if (this.writableLength === 0) conn.core.observeLatency(conn, performance.now() - t0);
  else if (conn.unflushedSince === 0) conn.unflushedSince = t0;
}

function onSocketDrain(this: LinkedSocket): void {
  const conn = this[kConn] as Connection;
  if (conn.unflushedSince !== 0) {
    conn.core.observeLatency(conn, performance.now() - conn.unflushedSince);
    conn.unflushedSince = 0;
  }
  if (conn.stalledSince !== 0) {
    conn.stalledSince = 0;
    if (conn.state !== ConnState.CLOSED && !conn.throttled) this.resume();
  }
}

function onSocketEnd(this: LinkedSocket): void {
  // The peer finished sending. Without allowHalfOpen Node ends our side after pending writes.
  const conn = this[kConn] as Connection;
  if (conn.state === ConnState.OPEN) {
    conn.closeReason = 'normal';
    conn.closeDetail = 'peer ended the connection';
  }
  if (!this.writableEnded) this.end();
}

function onSocketError(this: LinkedSocket, err: Error): void {
  const conn = this[kConn] as Connection;
  if (conn.state === ConnState.OPEN) {
    conn.closeReason = 'error';
    conn.closeDetail = err.message;
  }
}

function onSocketClose(this: LinkedSocket): void {
  const conn = this[kConn] as Connection;
  conn.state = ConnState.CLOSED;
  conn.core.remove(conn);
}
