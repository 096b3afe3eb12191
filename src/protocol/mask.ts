/**
 * WebSocket (un)masking (RFC 6455 §5.3). Short payloads use a JS loop (a native call and two
 * views would cost more than the XOR); long ones use `bufferutil`'s native, word-wise loop
 * when the optional dependency is installed.
 */
import { createRequire } from 'node:module';

interface BufferUtil {
  mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void;
  unmask(buffer: Buffer, mask: Buffer): void;
}

const loadNative = (): BufferUtil | undefined => {
  if (process.env['ECHO_NO_NATIVE_MASK'] === '1') return undefined;
  try {
    return createRequire(import.meta.url)('bufferutil') as BufferUtil;
  } catch {
    return undefined; // optional: the JS loop is correct, only slower on large frames
  }
};
const native = loadNative();
/** Below this many bytes the JS loop wins over a native call. */
const NATIVE_MIN = 128;

/** True when the native implementation is in use (reported by `/info` and the benchmark). */
export const nativeMasking = native !== undefined;

/**
 * XORs `buf[start, end)` in place with the 4-byte key at `buf[keyAt]`, starting at key
 * phase `phase` (bytes of this frame already unmasked, mod 4).
 */
export function unmaskInPlace(buf: Buffer, start: number, end: number, key: Buffer, keyAt: number, phase = 0): void {
  const len = end - start;
  if (native !== undefined && len >= NATIVE_MIN) {
    native.unmask(buf.subarray(start, end), rotatedKey(key, keyAt, phase));
    return;
  }
  const k0 = key[keyAt + ((phase + 0) & 3)] as number;
  const k1 = key[keyAt + ((phase + 1) & 3)] as number;
  const k2 = key[keyAt + ((phase + 2) & 3)] as number;
  const k3 = key[keyAt + ((phase + 3) & 3)] as number;
  let i = start;
  const end4 = start + (len & ~3);
  for (; i < end4; i += 4) {
    buf[i] = (buf[i] as number) ^ k0;
    buf[i + 1] = (buf[i + 1] as number) ^ k1;
    buf[i + 2] = (buf[i + 2] as number) ^ k2;
    buf[i + 3] = (buf[i + 3] as number) ^ k3;
  }
  const tail = [k0, k1, k2];
  for (let j = 0; i < end; i++, j++) buf[i] = (buf[i] as number) ^ (tail[j] as number);
}

/**
 * Copies `src[start, end)` into `dst` at `dstAt`, XORing with the key at `key[keyAt]` from key
 * phase `phase`: one pass for payloads that arrive across reads.
 */
export function maskCopy(
  src: Buffer,
  start: number,
  end: number,
  dst: Buffer,
  dstAt: number,
  key: Buffer,
  keyAt: number,
  phase: number,
): void {
  const len = end - start;
  if (native !== undefined && len >= NATIVE_MIN) {
    native.mask(src.subarray(start, end), rotatedKey(key, keyAt, phase), dst, dstAt, len);
    return;
  }
  for (let i = 0; i < len; i++) {
    dst[dstAt + i] = (src[start + i] as number) ^ (key[keyAt + ((phase + i) & 3)] as number);
  }
}

/** The key rotated to `phase`, in one scratch buffer: the native calls are synchronous. */
const scratchKey = Buffer.alloc(4);
function rotatedKey(key: Buffer, keyAt: number, phase: number): Buffer {
  for (let i = 0; i < 4; i++) scratchKey[i] = key[keyAt + ((phase + i) & 3)] as number;
  return scratchKey;
}
