/**
 * In-process transport: a pair of cross-wired Duplex streams, so an embedding application
 * talks framing v1 to the server with no socket at all, through the same core path as TCP.
 * Backpressure holds: a write completes only when the other side's readable buffer takes it.
 */
import { Duplex } from 'node:stream';

const kWaiting = Symbol('waiting');

class PairSide extends Duplex {
  other!: PairSide;
  [kWaiting]: (() => void) | undefined = undefined;

  constructor(highWaterMark: number) {
    super({ highWaterMark, allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.other.destroyed) return cb(new Error('in-process peer closed'));
    if (this.other.push(chunk)) cb();
    else this.other[kWaiting] = cb;
  }

  override _read(): void {
    const cb = this[kWaiting];
    if (cb !== undefined) {
      this[kWaiting] = undefined;
      cb();
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.other.destroyed) this.other.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const waiting = this[kWaiting];
    this[kWaiting] = undefined;
    waiting?.();
    if (!this.other.destroyed) this.other.destroy();
    cb(err);
  }
}

/** Two connected Duplex ends; bytes written to one are read from the other. */
export function duplexPair(highWaterMark = 64 * 1024): [Duplex, Duplex] {
  const a = new PairSide(highWaterMark);
  const b = new PairSide(highWaterMark);
  a.other = b;
  b.other = a;
  return [a, b];
}
