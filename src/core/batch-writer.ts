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

  constructor(private readonly conn: Connection) {}

  /** Starts a read. */
  begin(): void {
    this.buf = undefined;
    this.start = this.end = 0;
    this.batchIn = this.batchOut = this.controls = 0;
    this.rxAt = 0;
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
    this.flush();
    this.conn.write(bytes, onFlushed);
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
