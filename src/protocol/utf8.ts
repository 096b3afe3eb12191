/**
 * UTF-8 validation. Whole messages use Node's native `buffer.isUtf8`; fragmented WebSocket
 * text messages use the incremental validator so that an invalid sequence fails the
 * connection at the fragment that carries it (RFC 6455 §8.1, "fail fast"), even when the
 * sequence is split across fragments.
 */
import { isUtf8 } from 'node:buffer';

export { isUtf8 };

/**
 * Incremental UTF-8 validator (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF). State is two small numbers, so it costs nothing per connection until used.
 */
export class Utf8Validator {
  /** Continuation bytes still expected for the current sequence. */
  private need = 0;
  /** Allowed range of the next continuation byte (narrowed after E0, ED, F0, F4). */
  private lo = 0x80;
  private hi = 0xbf;

  /**
   * Feeds `buf[start, end)`; false as soon as an invalid byte is seen (within this call). The
   * bulk is checked by the native `isUtf8` up to the last character boundary; only a pending
   * sequence at either end goes through the JS state machine.
   */
  push(buf: Uint8Array, start = 0, end = buf.length): boolean {
    let i = start;
    // Finish a sequence left open by the previous call.
    while (this.need !== 0 && i < end) {
      if (!this.step(buf, i, i + 1)) return false;
      i++;
    }
    if (i >= end) return true;
    // Cut before a trailing lead byte whose sequence may continue in the next call.
    let k = end - 1;
    while (k > i && end - k < 4 && ((buf[k] as number) & 0xc0) === 0x80) k--;
    const cut = (buf[k] as number) >= 0xc0 ? k : end;
    if (cut > i && !isUtf8(buf.subarray(i, cut))) return this.fail();
    return this.step(buf, cut, end);
  }

  /** The byte-wise state machine over `buf[start, end)`. */
  private step(buf: Uint8Array, start: number, end: number): boolean {
    let need = this.need;
    let lo = this.lo;
    let hi = this.hi;
    for (let i = start; i < end; i++) {
      const b = buf[i] as number;
      if (need === 0) {
        if (b < 0x80) continue;
        if (b >= 0xc2 && b <= 0xdf) {
          need = 1;
        } else if (b === 0xe0) {
          need = 2;
          lo = 0xa0;
        } else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) {
          need = 2;
        } else if (b === 0xed) {
          need = 2;
          hi = 0x9f; // no UTF-16 surrogates
        } else if (b === 0xf0) {
          need = 3;
          lo = 0x90;
        } else if (b >= 0xf1 && b <= 0xf3) {
          need = 3;
        } else if (b === 0xf4) {
          need = 3;
          hi = 0x8f; // nothing above U+10FFFF
        } else {
          return this.fail();
        }
      } else {
        if (b < lo || b > hi) return this.fail();
        lo = 0x80;
        hi = 0xbf;
        need--;
      }
    }
    this.need = need;
    this.lo = lo;
    this.hi = hi;
    return true;
  }

  /** True when the input so far ends on a character boundary. */
  get complete(): boolean {
    return this.need === 0;
  }

  reset(): void {
    this.need = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
  }

  private fail(): false {
    this.reset();
    return false;
  }
}
