/**
 * `[u32be length][body]` splitting, shared by framing v1 and the bare `len` framing.
 * Incremental and allocation-free for frames that arrive whole: the sink sees offsets into
 * the read buffer, so an echo can write back the validated span as it is. A frame spanning
 * reads is collected in a buffer that grows with what has arrived (never reserved at its
 * declared size: a peer declaring 16 MiB and sending 4 holds 4).
 */
import { malformed, tooBig } from '../errors.js';

export interface FrameSink {
  /** One complete frame: `buf[frameStart, frameStart + 4)` is the length, `buf[bodyStart, bodyEnd)` the body. */
  onFrame(buf: Buffer, frameStart: number, bodyStart: number, bodyEnd: number): void;
}

/**
 * Called with the first body byte and the body length of a frame that spans reads, as soon as
 * both are known and before any of it is buffered; throws to refuse the frame. (A frame that
 * arrived whole is the sink's to check.)
 */
export type FirstByteCheck = (firstByte: number, bodyLength: number) => void;

/** Smallest buffer for a frame spanning reads; it doubles as bytes arrive. */
const MIN_COLLECT = 16 * 1024;

export class LengthPrefixSplitter {
  private rest: Buffer | undefined = undefined;
  /** The frame being collected: `target[0, targetAt)` arrived of `targetLen` bytes. */
  private target: Buffer | undefined = undefined;
  private targetAt = 0;
  private targetLen = 0;
  private stopped = false;
  /** Largest body accepted now (checked before anything is buffered); may be lowered and raised. */
  maxBody: number;
  /** Optional check of the first body byte (v1: the kind). */
  firstByteCheck: FirstByteCheck | undefined = undefined;

  /**
   * @param maxBody largest body accepted (checked before anything is allocated)
   * @param minBody smallest body accepted (v1 needs its kind byte: 1; `len` allows 0)
   */
  constructor(
    maxBody: number,
    private readonly minBody: number,
  ) {
    this.maxBody = maxBody;
  }

  /** Bytes held for an incomplete frame: what has arrived of it (its buffer doubles as it fills: < 2x). */
  get bufferedBytes(): number {
    return (this.rest?.length ?? 0) + (this.target?.length ?? 0);
  }

  stop(): void {
    this.stopped = true;
    this.rest = this.target = undefined;
  }

  /** Feeds one read; throws ProtocolError (1002 / 1009) and stops on a bad length. */
  push(chunk: Buffer, sink: FrameSink): void {
    if (this.stopped) return;
    try {
      this.split(chunk, sink);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  private split(chunk: Buffer, sink: FrameSink): void {
    let buf = chunk;
    let pos = 0;
    if (this.target !== undefined) {
      pos = this.collect(chunk);
      if (this.targetAt < this.targetLen) return;
      const frame = this.target;
      this.target = undefined;
      sink.onFrame(frame, 0, 4, this.targetLen);
      if (this.stopped) return;
    } else if (this.rest !== undefined) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    const len = buf.length;
    while (len - pos >= 4) {
      const body = buf.readUInt32BE(pos);
      if (body > this.maxBody) throw tooBig(`frame of ${body} bytes exceeds the limit of ${this.maxBody}`);
      if (body < this.minBody) throw malformed('empty frame');
      const end = pos + 4 + body;
      const check = this.firstByteCheck;
      if (check !== undefined && body > 0) {
        // A whole frame is checked by its sink; one spanning reads is checked here, before
        // any of it is buffered (the first body byte decides: wait for it).
        if (end > len) {
          if (len - pos < 5) break;
          check(buf[pos + 4] as number, body);
        }
      }
      if (end > len) {
        // Collect what has arrived; the buffer grows with the frame, up to its length.
        const have = len - pos;
        this.targetLen = 4 + body;
        this.target = Buffer.allocUnsafe(Math.min(this.targetLen, Math.max(MIN_COLLECT, have)));
        buf.copy(this.target, 0, pos, len);
        this.targetAt = have;
        return;
      }
      sink.onFrame(buf, pos, pos + 4, end);
      if (this.stopped) return;
      pos = end;
    }
    // A copy: the read buffer may be reused after this read (core/direct-io.ts); at most 4 bytes.
    if (pos < len) this.rest = Buffer.from(buf.subarray(pos));
  }

  /** Appends from `chunk` to the frame being collected; returns how much of `chunk` was used. */
  private collect(chunk: Buffer): number {
    const n = Math.min(chunk.length, this.targetLen - this.targetAt);
    let target = this.target as Buffer;
    const need = this.targetAt + n;
    if (need > target.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.targetLen, Math.max(need, 2 * target.length)));
      target.copy(grown, 0, 0, this.targetAt);
      this.target = target = grown;
    }
    chunk.copy(target, this.targetAt, 0, n);
    this.targetAt = need;
    return n;
  }
}
