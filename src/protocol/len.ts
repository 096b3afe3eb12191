/**
 * Bare length-prefixed framing `len`: `[u32be length][payload]`, binary only, no header, no
 * control frames (what websocat's `lengthprefixed:` mode and common length-field decoders speak).
 */
import { LengthPrefixSplitter, type FrameSink } from './length-prefix.js';

export class LenDecoder {
  private readonly splitter: LengthPrefixSplitter;

  /** @param maxFrameBytes largest payload accepted, bytes; empty payloads are allowed. */
  constructor(maxFrameBytes: number) {
    this.splitter = new LengthPrefixSplitter(maxFrameBytes, 0);
  }

  get bufferedBytes(): number {
    return this.splitter.bufferedBytes;
  }

  stop(): void {
    this.splitter.stop();
  }

  push(chunk: Buffer, sink: FrameSink): void {
    this.splitter.push(chunk, sink);
  }
}

export function encodeLen(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}
