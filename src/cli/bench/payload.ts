/**
 * The bytes a bench connection sends, and the check of each echo against them. Each connection
 * has its own random pattern (so an echo delivered to the wrong connection differs); the first
 * bytes of every message carry its sequence number (so a lost, repeated or reordered echo
 * differs). Any flipped byte anywhere is therefore detected. Payloads under 4 bytes carry only
 * the low bytes of the sequence number.
 */
import { randomFillSync } from 'node:crypto';

/** Bytes of the sequence number at the start of each payload (u32be). */
const SEQ_BYTES = 4;

export class PayloadPattern {
  private readonly template: Buffer;
  private readonly seqBytes: number;
  private readonly scratch = Buffer.allocUnsafe(SEQ_BYTES);

  constructor(readonly size: number) {
    this.template = randomFillSync(Buffer.allocUnsafe(size));
    this.seqBytes = Math.min(SEQ_BYTES, size);
  }

  /** Writes message `seq`'s payload at `dst[at]` (`size` bytes). */
  write(seq: number, dst: Buffer, at: number): void {
    this.template.copy(dst, at);
    this.scratch.writeUInt32BE(seq >>> 0, 0);
    this.scratch.copy(dst, at, SEQ_BYTES - this.seqBytes, SEQ_BYTES);
  }

  /**
   * Compares `buf[start, end)` with message `seq`'s payload. Returns -1 when identical, else the
   * offset of the first differing byte in the payload (`size` when only the length differs).
   */
  check(seq: number, buf: Buffer, start: number, end: number): number {
    const n = end - start;
    this.scratch.writeUInt32BE(seq >>> 0, 0);
    const s = this.seqBytes;
    for (let i = 0; i < s && i < n; i++) {
      if (buf[start + i] !== this.scratch[SEQ_BYTES - s + i]) return i;
    }
    const common = Math.min(n, this.size);
    // Buffer#compare is native; find the exact byte only when it says they differ.
    if (common > s && buf.compare(this.template, s, common, start + s, start + common) !== 0) {
      for (let i = s; i < common; i++) if (buf[start + i] !== this.template[i]) return i;
    }
    return n === this.size ? -1 : common;
  }
}
