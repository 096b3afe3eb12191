/**
 * `[u32be length][body]` splitting, shared by framing v1 and the bare `len` framing.
 * Incremental and allocation-free for frames that arrive whole: the sink sees offsets into
 * the read buffer, so an echo can write back the validated span as it is.
 */
import { malformed, tooBig } from '../errors.js';

export interface FrameSink {
  /** One complete frame: `buf[frameStart, frameStart + 4)` is the length, `buf[bodyStart, bodyEnd)` the body. */
  onFrame(buf: Buffer, frameStart: number, bodyStart: number, bodyEnd: number): void;
}

export class LengthPrefixSplitter {
  private rest: Buffer | undefined = undefined;
  private target: Buffer | undefined = undefined;
  private targetAt = 0;
  private stopped = false;

  /**
   * @param maxBody largest body accepted (checked before anything is allocated)
   * @param minBody smallest body accepted (v1 needs its kind byte: 1; `len` allows 0)
   */
  constructor(
    private readonly maxBody: number,
    private readonly minBody: number,
  ) {}

  /** Bytes held for an incomplete frame: at most 4 + maxBody. */
  get bufferedBytes(): number {
    return (this.rest?.length ?? 0) + (this.target?.length ?? 0);
  }

  stop(): void {
    this.stopped = true;
    this.rest = this.target = undefined;
  }

  get stopped_(): boolean {
    return this.stopped;
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
    const target = this.target;
    if (target !== undefined) {
      const n = Math.min(chunk.length, target.length - this.targetAt);
      chunk.copy(target, this.targetAt, 0, n);
      this.targetAt += n;
      pos = n;
      if (this.targetAt < target.length) return;
      this.target = undefined;
      sink.onFrame(target, 0, 4, target.length);
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
      if (end > len) {
        // Allocate the frame once, now that its length is known to be within limits.
        const t = Buffer.allocUnsafe(4 + body);
        buf.copy(t, 0, pos, len);
        this.target = t;
        this.targetAt = len - pos;
        return;
      }
      sink.onFrame(buf, pos, pos + 4, end);
      if (this.stopped) return;
      pos = end;
    }
    if (pos < len) this.rest = buf.subarray(pos);
  }
}
