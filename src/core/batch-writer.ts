/**
 * One batch writer for every transport. The echoes of one read are collected as a pending
 * region `buf[start, end)` of a buffer (the read buffer itself, where a transport echoes in
 * place) and handed to the socket in one write; a write that does not extend the region
 * (a stamped header, a pong, a hook's reply) flushes it first, so bytes always leave in order.
 *
 * A flush never rewinds: bytes already handed to the socket may still be queued in `buf` (a full
 * kernel buffer), so the next region of the same buffer starts at `end`, never before it.
 */
import { channels } from './events.js';
import type { Connection } from './connection.js';
import type { ConnectionDebug } from './injection.js';

/** Sends a delayed write when it is due (unless the connection is gone); an echo counts as sent then. */
function sendLater(conn: Connection, data: Buffer, onFlushed: ((err?: Error | null) => void) | undefined, echo: boolean): void {
  if (conn.socket.destroyed) return;
  conn.write(data, onFlushed);
  if (echo) conn.sent(1);
}

export class BatchWriter {
  /** Buffer of the pending region, and the region. */
  buf: Buffer | undefined = undefined;
  start = 0;
  end = 0;
  /** Messages received and echoes or replies sent in the current read. */
  batchIn = 0;
  batchOut = 0;
  /** Control frames (pings) received in the current read: they count against the rate. */
  controls = 0;
  /** `performance.now()` of the current read, taken once when first needed (0: not yet). */
  rxAt = 0;
  /**
   * Latency injection: when the current message's echo is due (clock ms; -1: not delayed) and
   * the delay it gets. Set by the core's pipeline; the next echo write takes it.
   */
  dueAt = -1;
  delayMs = 0;

  constructor(private readonly conn: Connection) {}

  /** Starts a read. */
  begin(): void {
    this.buf = undefined;
    this.start = this.end = 0;
    this.batchIn = this.batchOut = this.controls = 0;
    this.rxAt = 0;
    this.dueAt = -1;
  }

  /** `performance.now()` of this read. */
  receivedAt(): number {
    if (this.rxAt === 0) this.rxAt = performance.now();
    return this.rxAt;
  }

  /** Where the next in-place write into `buf` may start (after anything already written there). */
  nextOffset(buf: Buffer): number {
    return this.buf === buf ? this.end : 0;
  }

  /** Adds `buf[start, end)` to the pending region (extending it when contiguous). */
  region(buf: Buffer, start: number, end: number): void {
    if (this.conn.debug !== undefined && this.divert(buf.subarray(start, end), true)) return;
    if (this.buf !== buf || this.end !== start) {
      this.flush();
      this.buf = buf;
      this.start = start;
    }
    this.end = end;
  }

  /** Hands the pending region to the socket. */
  flush(): void {
    const buf = this.buf;
    if (buf === undefined || this.end === this.start) return;
    this.conn.write(this.start === 0 && this.end === buf.length ? buf : buf.subarray(this.start, this.end));
    this.start = this.end;
  }

  /** Writes bytes after the pending region. */
  write(bytes: Buffer, onFlushed?: (err?: Error | null) => void): void {
    if (this.conn.debug !== undefined && this.divert(bytes, false, onFlushed)) return;
    this.flush();
    this.conn.write(bytes, onFlushed);
  }

  /**
   * Latency injection: a delayed echo, and everything written after it while it waits (order
   * holds), goes to the connection's delay queue instead of the socket. False: nothing is
   * delayed, write on. Bytes in the read buffer are copied (it is reused for in-place echoes).
   */
  private divert(bytes: Buffer, copy: boolean, onFlushed?: (err?: Error | null) => void): boolean {
    const debug = this.conn.debug as ConnectionDebug;
    const queue = debug.queue;
    const due = this.dueAt;
    if (queue === undefined || (due < 0 && queue.size === 0)) return false;
    this.flush();
    const conn = this.conn;
    const data = copy ? Buffer.from(bytes) : bytes;
    const queued = conn.socket.writableLength;
    if (due < 0) {
      queue.pushBehind(data.length, () => sendLater(conn, data, onFlushed, false), queued);
      return true;
    }
    this.dueAt = -1;
    queue.pushAt(due, data.length, () => sendLater(conn, data, onFlushed, true), queued);
    const close = debug.pendingClose;
    if (close !== undefined) {
      debug.pendingClose = undefined;
      debug.closing = true;
      queue.pushBehind(0, close);
    }
    return true;
  }

  /** Ends the read: flushes and counts the batch. */
  finish(): void {
    this.flush();
    // Between reads nothing is pending: do not keep the read buffer alive.
    this.buf = undefined;
    const conn = this.conn;
    if (this.batchIn > 0) conn.received(this.batchIn);
    if (this.batchOut > 0) {
      conn.sent(this.batchOut);
      if (channels.flush.hasSubscribers)
        channels.flush.publish({ connection: conn, messages: this.batchOut, flushedAt: performance.now() });
      this.batchOut = 0;
    }
    this.batchIn = 0;
  }
}
