/**
 * Utf8Validator (incremental, fail-fast) against Node's native isUtf8 on Markus Kuhn-style edge
 * cases, fed whole and split at every position, plus exhaustive 1- and 2-byte inputs.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 as nodeIsUtf8 } from 'node:buffer';
import { Utf8Validator } from '../../src/protocol/utf8.js';

const CASES: Array<[string, string, boolean]> = [
  // [name, hex, valid]
  ['empty', '', true],
  ['ascii', '48656c6c6f00207e7f', true],
  ['greek kosme', 'cebae1bdb9cf83cebcceb5', true],
  ['first 2-byte U+0080', 'c280', true],
  ['last 2-byte U+07FF', 'dfbf', true],
  ['first 3-byte U+0800', 'e0a080', true],
  ['last before surrogates U+D7FF', 'ed9fbf', true],
  ['first after surrogates U+E000', 'ee8080', true],
  ['U+FFFD', 'efbfbd', true],
  ['noncharacter U+FFFE', 'efbfbe', true],
  ['noncharacter U+FFFF', 'efbfbf', true],
  ['first 4-byte U+10000', 'f0908080', true],
  ['last code point U+10FFFF', 'f48fbfbf', true],
  ['U+FDD0 noncharacter', 'efb790', true],
  // overlongs
  ['overlong "/" 2 bytes', 'c0af', false],
  ['overlong "/" 3 bytes', 'e080af', false],
  ['overlong "/" 4 bytes', 'f08080af', false],
  ['overlong "/" 5 bytes', 'f8808080af', false],
  ['overlong "/" 6 bytes', 'fc80808080af', false],
  ['max overlong 2 bytes U+007F', 'c1bf', false],
  ['max overlong 3 bytes U+07FF', 'e09fbf', false],
  ['max overlong 4 bytes U+FFFF', 'f08fbfbf', false],
  ['overlong NUL 2 bytes', 'c080', false],
  ['overlong NUL 3 bytes', 'e08080', false],
  ['overlong NUL 4 bytes', 'f0808080', false],
  // surrogates
  ['U+D800', 'eda080', false],
  ['U+DB7F', 'edadbf', false],
  ['U+DB80', 'edae80', false],
  ['U+DBFF', 'edafbf', false],
  ['U+DC00', 'edb080', false],
  ['U+DF80', 'edbe80', false],
  ['U+DFFF', 'edbfbf', false],
  ['paired surrogates U+D800 U+DC00', 'eda080edb080', false],
  ['paired surrogates U+DBFF U+DFFF', 'edafbfedbfbf', false],
  // above U+10FFFF
  ['U+110000', 'f4908080', false],
  ['U+13FFFF', 'f4bfbfbf', false],
  ['F5 lead', 'f5808080', false],
  ['F7 lead', 'f7bfbfbf', false],
  // 5- and 6-byte forms
  ['5-byte U+200000', 'f888808080', false],
  ['6-byte U+4000000', 'fc8480808080', false],
  ['5-byte max', 'fbbfbfbfbf', false],
  ['6-byte max', 'fdbfbfbfbfbf', false],
  // impossible bytes
  ['C0 alone', 'c0', false],
  ['C1 alone', 'c1', false],
  ['FE', 'fe', false],
  ['FF', 'ff', false],
  ['FE FE FF FF', 'fefeffff', false],
  ['F5..FF each before ascii', 'f541f641f741f841f941fa41fb41fc41fd41fe41ff41', false],
  // unexpected continuation bytes
  ['lone 80', '80', false],
  ['lone BF', 'bf', false],
  ['80 BF 80', '80bf80', false],
  ['continuation after ascii', '4180', false],
  ['extra continuation after 2-byte', 'c28080', false],
  // truncated sequences
  ['truncated 2-byte', 'c2', false],
  ['truncated 3-byte (1 of 2)', 'e0a0', false],
  ['truncated 3-byte (0 of 2)', 'e1', false],
  ['truncated 4-byte (2 of 3)', 'f09080', false],
  ['truncated 4-byte U+10FFFF', 'f48fbf', false],
  ['truncated then ascii', 'e18041', false],
  ['truncated then a new lead', 'e180c280', false],
  ['all truncated forms concatenated', 'c0e080f08080f8808080fc80808080df' + 'ef' + 'bff7bfbffbbfbfbffdbfbfbfbf', false],
  ['valid then invalid', '68c3a9ff', false],
  ['invalid at the very end', '68656c6c6fc0', false],
];

/** The validator's whole-input verdict: no invalid byte, and not ending inside a character. */
function validate(chunks: Buffer[]): boolean {
  const v = new Utf8Validator();
  for (const c of chunks) if (!v.push(c)) return false;
  return v.complete;
}

describe('Utf8Validator: Kuhn-style edge cases', () => {
  for (const [name, hex, valid] of CASES) {
    test(`${name} (${hex || 'empty'}) → ${valid ? 'valid' : 'invalid'}`, () => {
      const buf = Buffer.from(hex, 'hex');
      assert.equal(nodeIsUtf8(buf), valid, 'the case table agrees with Node');
      assert.equal(validate([buf]), valid, 'whole');
      for (let i = 0; i <= buf.length; i++) assert.equal(validate([buf.subarray(0, i), buf.subarray(i)]), valid, `split at ${i}`);
      assert.equal(validate([...buf].map((b) => Buffer.from([b]))), valid, 'byte by byte');
      // Also as a sub-range of a larger buffer (start/end arguments).
      const padded = Buffer.concat([Buffer.from('ff', 'hex'), buf, Buffer.from('ff', 'hex')]);
      const v = new Utf8Validator();
      assert.equal(v.push(padded, 1, 1 + buf.length) && v.complete, valid, 'start/end');
    });
  }
});

/** A prefix is acceptable when some continuation makes it valid (checked by brute force). */
function prefixOk(prefix: Buffer): boolean {
  if (nodeIsUtf8(prefix)) return true;
  const conts = [0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf];
  for (let n = 1; n <= 3; n++) {
    const total = conts.length ** n;
    for (let k = 0; k < total; k++) {
      const tail: number[] = [];
      for (let j = 0, x = k; j < n; j++, x = Math.floor(x / conts.length)) tail.push(conts[x % conts.length] as number);
      if (nodeIsUtf8(Buffer.concat([prefix, Buffer.from(tail)]))) return true;
    }
  }
  return false;
}

describe('Utf8Validator: fail fast', () => {
  test('push() is false exactly when the bytes so far cannot start a valid string', () => {
    for (const [name, hex] of CASES) {
      const buf = Buffer.from(hex, 'hex');
      const v = new Utf8Validator();
      let alive = true;
      for (let i = 0; i < buf.length && alive; i++) {
        alive = v.push(buf, i, i + 1);
        assert.equal(alive, prefixOk(buf.subarray(0, i + 1)), `${name}: after byte ${i}`);
      }
    }
  });

  test('reset() and failure return the validator to a character boundary', () => {
    const v = new Utf8Validator();
    assert.equal(v.push(Buffer.from('e282', 'hex')), true);
    assert.equal(v.complete, false);
    v.reset();
    assert.equal(v.complete, true);
    assert.equal(v.push(Buffer.from('41', 'hex')), true);
    assert.equal(v.push(Buffer.from('ff', 'hex')), false);
    assert.equal(v.complete, true);
    assert.equal(v.push(Buffer.from('c3a9', 'hex')), true);
  });
});

describe('Utf8Validator: exhaustive and random', () => {
  test('every 1- and 2-byte input agrees with isUtf8, whole and split', () => {
    const b = Buffer.alloc(2);
    for (let x = 0; x < 256; x++) {
      assert.equal(validate([Buffer.from([x])]), nodeIsUtf8(Buffer.from([x])), `${x}`);
      for (let y = 0; y < 256; y++) {
        b[0] = x;
        b[1] = y;
        const want = nodeIsUtf8(b);
        if (validate([b]) !== want || validate([b.subarray(0, 1), b.subarray(1)]) !== want) assert.fail(`mismatch on ${b.toString('hex')}`);
      }
    }
  });

  test('every lead byte with every second byte and boundary third/fourth bytes agrees with isUtf8', () => {
    const thirds = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
    for (let x = 0xc0; x < 0x100; x++) {
      for (let y = 0; y < 256; y++) {
        for (const z of thirds) {
          for (const w of [0x80, 0xbf, 0x41]) {
            const buf = Buffer.from([x, y, z, w]);
            const want = nodeIsUtf8(buf);
            if (validate([buf]) !== want || validate([buf.subarray(0, 2), buf.subarray(2)]) !== want)
              assert.fail(`mismatch on ${buf.toString('hex')}`);
          }
        }
      }
    }
  });

  test('random mixes of valid and invalid characters agree with isUtf8 at every split', () => {
    let seed = 77;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
    const pieces = CASES.map(([, hex]) => Buffer.from(hex, 'hex'));
    for (let i = 0; i < 500; i++) {
      const parts: Buffer[] = [];
      for (let j = 0, n = 1 + Math.floor(rand() * 5); j < n; j++)
        parts.push(
          rand() < 0.7 ? Buffer.from('aé€😀'.slice(0, 1 + Math.floor(rand() * 4))) : (pieces[Math.floor(rand() * pieces.length)] as Buffer),
        );
      const buf = Buffer.concat(parts);
      const want = nodeIsUtf8(buf);
      for (let k = 0; k <= buf.length; k++)
        assert.equal(validate([buf.subarray(0, k), buf.subarray(k)]), want, `${buf.toString('hex')} split at ${k}`);
    }
  });
});
