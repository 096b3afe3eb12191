/**
 * One connection, whatever its transport: minimal metadata, counters, the bounded send queue
 * (the socket's writable buffer), one flow-control state (a set of reasons to stop reading,
 * and one place that decides), and its close state. The wire protocol is a `ProtocolAdapter`;
 * the socket is any Duplex, so TCP, TLS, Unix, upgraded WebSocket sockets and in-process pairs
 * all take this one path. The connection talks to the core only through `ConnectionHost`.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { MetadataHeader } from '../protocol/header.js';
import type { CloseReason, ConnectionInfo, MessageKind, TransportName, TransportStats } from './types.js';
import type { ClientLease, RateLimiter } from '../security/rate-limit.js';
import type { Clock } from './clock.js';
import { BatchWriter } from './batch-writer.js';
import type { ConnectionDebug } from './injection.js';
import { directIo, inReadBuffer, writeNow } from './direct-io.js';

/** The wire side of a connection (WebSocket, v1, len, raw): one per connection. */
export interface ProtocolAdapter {
  /** Feeds one read. Throws ProtocolError for the connection to fail with its close code. */
  onData(chunk: Buffer): void;
  /** Sends a server-initiated message (handler replies, pushes). */
  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void;
  /**
   * False for framings with no ping (`len`, raw): their silence is governed only by the idle
   * timeout, and TCP keepalive on the socket finds dead peers.
   */
  readonly canPing: boolean;
  /** Sends a keepalive ping (only called when `canPing`). */
  ping(): void;
  /**
   * Starts the closing handshake: queue a close frame (after everything already queued) and
   * keep reading until the peer answers; protocols without one just end the socket.
   */
  close(code: number, reason: string): void;
  /** Bytes held for incomplete frames (counted against the server-wide budget). */
  readonly bufferedBytes: number;
  /**
   * True when the protocol keeps nothing of a chunk past `onData` without copying it: then a
   * plaintext socket may read into the shared read buffer (core/direct-io.ts).
   */
  readonly copiesChunks?: boolean;
}

/** What a connection needs from the core (a narrow port: no import of the core itself). */
export interface ConnectionHost {
  readonly settings: {
    readonly maxQueueBytes: number;
    readonly instance: string;
    readonly workerId: string | null;
    readonly socketIo?: 'direct' | 'stream';
  };
  readonly clock: Clock;
  /** Coarse clock (the clock's reading at the last sweep), for the hot path. */
  readonly now: number;
  nextId(): string;
  /** One read arrived (the core's per-read path: decode, rate, budget, latency). */
  onRead(conn: Connection, chunk: Buffer): void;
  /** The send queue drained below the kernel: latency bookkeeping. */
  onDrain(conn: Connection): void;
  /** The socket has closed. */
  remove(conn: Connection): void;
  onConnectionError(conn: Connection, err: unknown): void;
}

export const ConnState = { OPEN: 0, CLOSING: 1, CLOSED: 2 } as const;
type ConnState = (typeof ConnState)[keyof typeof ConnState];

/**
 * Reasons to stop reading a peer. Reading resumes only when none is left, so a drain cannot
 * resume a connection the rate limiter paused, nor either one a pending `hello`.
 */
export const Pause = {
  /** The send queue is above `maxQueueBytes` (the peer does not read its echoes). */
  QUEUE: 1,
  /** Over the rate limit until the limiter's timer fires. */
  RATE: 2,
  /** Credentials of a `hello` are being checked. */
  AUTH: 4,
  /** The server-wide budget for partly received frames is spent. */
  BUDGET: 8,
  /** Delayed echoes are over `maxQueueBytes` (latency injection). */
  DELAY: 16,
  /** The client asked the server to stop reading for a while (`?stall=`, fault injection). */
  STALL: 32,
} as const;
export type Pause = (typeof Pause)[keyof typeof Pause];

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
  protocol!: ProtocolAdapter;
  /** Echoes and replies of the current read, written in as few writes as possible. */
  readonly out: BatchWriter;
  state: ConnState = ConnState.OPEN;
  /** Coarse clock readings: last read, last data message either way, last ping. */
  lastRead: number;
  lastMessage: number;
  lastPing = 0;
  closingSince = 0;
  /** Reading paused because the send queue is over its limit; since when (0: not). */
  stalledSince = 0;
  /** Reasons reading is paused now (a set of `Pause` bits; 0 = reading). */
  paused = 0;
  /** `performance.now()` of the oldest read whose echo is not flushed yet (0: none). */
  unflushedSince = 0;
  /** Per-connection rate limiter and per-client lease (undefined when those limits are off). */
  limiter: RateLimiter | undefined = undefined;
  lease: ClientLease | undefined = undefined;
  /** Key for per-client limits: identity, else IP (unix and in-process: the connection). */
  clientKey = '';
  /** Clock deadline for the hello (authentication on framing v1); 0 = none. */
  helloDeadline = 0;
  /** Bytes of partly received frames counted against the server-wide budget. */
  heldBytes = 0;
  /** Latency/fault injection and whoami state; undefined unless the client asked for any. */
  debug: ConnectionDebug | undefined = undefined;
  /** Epoch ms when the credential of this connection stops verifying (JWT exp + tolerance); 0 = never. */
  authDeadline = 0;
  closeCode = 1006;
  closeReason: CloseReason = 'normal';
  closeDetail = '';
  /** Descriptor for direct writes (plaintext TCP/Unix, core/direct-io.ts); -1: the stream path. */
  private fd = -1;

  constructor(
    readonly host: ConnectionHost,
    readonly socket: Duplex,
    transport: TransportName,
    peer: string,
    readonly stats: TransportStats,
  ) {
    this.id = host.nextId();
    this.transport = transport;
    this.peer = peer;
    // The clock itself, not the coarse reading: that stands still while the core has no
    // connections (its sweep is stopped), and a stale start would count the quiet time before
    // this connection as its own silence (keepalive drop or idle close at the first sweep).
    this.connectedAt = host.clock.now();
    this.lastRead = this.lastMessage = this.connectedAt;
    this.out = new BatchWriter(this);
  }

  /** The socket's queue, plus echoes held back by latency injection. */
  get queuedBytes(): number {
    return this.socket.writableLength + (this.debug?.queue?.bytes ?? 0);
  }

  get open(): boolean {
    return this.state === ConnState.OPEN;
  }

  /** Starts listening to the socket with its protocol (built before the connection is registered). */
  start(protocol: ProtocolAdapter): void {
    this.protocol = protocol;
    const s = this.socket as LinkedSocket;
    s[kConn] = this;
    if (protocol.copiesChunks === true && this.host.settings.socketIo !== 'stream' && s instanceof net.Socket)
      this.fd = directIo(s, onDirectRead.bind(this));
    if (this.fd < 0) s.on('data', onSocketData);
    s.on('drain', onSocketDrain);
    s.on('end', onSocketEnd);
    s.on('error', onSocketError);
    s.on('close', onSocketClose);
    // A reason to pause may have been set while the protocol was built (a pending hello).
    if (this.paused !== 0) s.pause();
  }

  /** Adds a reason to stop reading. */
  pause(reason: Pause): void {
    if (this.paused === 0 && this.state !== ConnState.CLOSED) this.socket.pause();
    this.paused |= reason;
  }

  /** Removes a reason; reading resumes when none is left. */
  resume(reason: Pause): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (this.paused === 0 && this.state !== ConnState.CLOSED) this.socket.resume();
  }

  /**
   * Hands bytes to the socket and accounts for them. Above the queue limit, reading from this
   * peer stops until the queue drains (STYLE.md §6): the queue grows by at most one read's
   * echoes past the limit. Returns false when the queue is above the limit. `onFlushed` runs
   * once the kernel has the bytes: at once (synchronously) when a direct write took them all.
   */
  write(buf: Buffer, onFlushed?: (err?: Error | null) => void): boolean {
    this.bytesOut += buf.length;
    this.stats.bytesOut += buf.length;
    const s = this.socket;
    if (this.fd >= 0) {
      // Direct: straight to the kernel while the stream holds nothing (order). What the kernel
      // does not take is queued on the stream, copied if it lies in the shared read buffer.
      if (s.writableLength === 0 && s.writable) {
        let n: number;
        try {
          n = writeNow(this.fd, buf);
        } catch (err) {
          s.destroy(err as Error);
          return true;
        }
        if (n === buf.length) {
          onFlushed?.();
          return true;
        }
        buf = buf.subarray(n);
      }
      if (inReadBuffer(buf)) buf = Buffer.from(buf);
    }
    const max = this.host.settings.maxQueueBytes;
    if (s.writableLength + buf.length <= max) {
      s.write(buf, onFlushed);
      if (s.writableLength <= max) return true;
    } else {
      // Over the limit: this write's flush is when the queue may be back under it. The socket's
      // own 'drain' comes only above its highWaterMark (16 KiB), which a smaller limit never reaches.
      const check = (this.queueCheck ??= queueCheck.bind(this));
      s.write(buf, onFlushed === undefined ? check : chain(onFlushed, check));
    }
    if (this.stalledSince === 0) {
      this.stalledSince = this.host.now;
      this.pause(Pause.QUEUE);
    }
    return false;
  }

  /** Made on the first write over the queue limit (idle connections pay nothing for it). */
  private queueCheck: (() => void) | undefined = undefined;

  /** Counts echoes/replies sent (per batch, not per message). */
  sent(messages: number): void {
    this.messagesOut += messages;
    this.stats.messagesOut += messages;
    this.lastMessage = this.host.now;
  }

  /** Counts messages received (per batch). */
  received(messages: number): void {
    this.messagesIn += messages;
    this.stats.messagesIn += messages;
    this.lastMessage = this.host.now;
  }

  /** Closes with a close frame (protocols that have one) and a reason for logs and metrics. */
  close(code: number, detail: string, reason: CloseReason): void {
    if (this.state !== ConnState.OPEN) return;
    // Delayed echoes go out now, ahead of the close frame (drain: nothing received is lost). A
    // close the client asked for may be among them, and then it is the one sent.
    const queue = this.debug?.queue;
    if (queue !== undefined && queue.size > 0) {
      queue.flush();
      if (this.state !== ConnState.OPEN) return;
    }
    this.state = ConnState.CLOSING;
    this.closingSince = this.host.now;
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
    if (this.state !== ConnState.CLOSED) this.state = ConnState.CLOSING;
    this.closingSince ||= this.host.now;
    this.socket.end();
  }

  /** Drops the connection at once (dead peer, stalled queue, deadline passed). */
  destroy(reason: CloseReason, detail: string, code = 1006): void {
    if (this.state === ConnState.OPEN) {
      this.closeCode = code;
      this.closeReason = reason;
      this.closeDetail = detail;
    }
    if (this.state !== ConnState.CLOSED) this.state = ConnState.CLOSING;
    this.socket.destroy();
  }

  /** Error from the protocol (ProtocolError → its close code) or the handler hook. */
  fail(err: unknown): void {
    this.host.onConnectionError(this, err);
  }
}

/** A write made over the queue limit was flushed: resume reading when the queue is under it. */
function queueCheck(this: Connection): void {
  if (this.stalledSince !== 0 && this.socket.writableLength <= this.host.settings.maxQueueBytes) {
    this.stalledSince = 0;
    this.resume(Pause.QUEUE);
  }
}

function chain(a: (err?: Error | null) => void, b: () => void): (err?: Error | null) => void {
  return (err) => {
    a(err);
    b();
  };
}

function onSocketData(this: LinkedSocket, chunk: Buffer): void {
  const conn = this[kConn] as Connection;
  conn.host.onRead(conn, chunk);
}

/** A direct read (core/direct-io.ts): `chunk` is valid only during this call. */
function onDirectRead(this: Connection, chunk: Buffer): void {
  this.host.onRead(this, chunk);
}

function onSocketDrain(this: LinkedSocket): void {
  const conn = this[kConn] as Connection;
  conn.host.onDrain(conn);
  if (conn.stalledSince !== 0) {
    conn.stalledSince = 0;
    conn.resume(Pause.QUEUE);
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

function onSocketError(this: LinkedSocket, err: Error & { code?: string }): void {
  const conn = this[kConn] as Connection;
  if (conn.state === ConnState.OPEN) {
    conn.closeReason = 'error';
    conn.closeDetail = err.message;
  }
}

function onSocketClose(this: LinkedSocket): void {
  const conn = this[kConn] as Connection;
  conn.state = ConnState.CLOSED;
  conn.host.remove(conn);
}
