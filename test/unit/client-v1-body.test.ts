/**
 * The client's Uint8Array-only v1 codec (src/client/v1-body.ts, shared by the browser build)
 * against every v1 vector of test/vectors/v1.json: fed whole and one byte at a time, the same
 * frames or the same close code as the server's codec; re-encoding gives the input bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeBody, decodeClosePayload, encodeBody, encodeClosePayload, frame, FrameSplitter, type Op } from '../../src/client/v1-body.js';

const ROOT = new URL('../../../', import.meta.url);
interface Vector {
  name: string;
  framing: 'v1' | 'len';
  limits?: { maxFrameBytes: number; maxHeaderBytes?: number };
  input: string;
  frames: { opcode?: number; header?: string; payload: string }[];
  error: number | null;
}
const FILE = JSON.parse(readFileSync(new URL('test/vectors/v1.json', ROOT), 'utf8')) as {
  defaultLimits: { maxFrameBytes: number; maxHeaderBytes: number };
  vectors: Vector[];
};
const hex = (u: Uint8Array): string => Array.from(u, (b) => b.toString(16).padStart(2, '0')).join('');
const bytes = (h: string): Uint8Array => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));

/** Decodes `chunks` like the client does; returns the frames and the close code of an error. */
function run(v: Vector, chunks: Uint8Array[]): { frames: Vector['frames']; error: number | null } {
  const limits = { ...FILE.defaultLimits, ...v.limits };
  const splitter = new FrameSplitter(limits.maxFrameBytes);
  const frames: Vector['frames'] = [];
  try {
    for (const c of chunks) {
      for (const body of splitter.push(c)) {
        const d = decodeBody(body, limits);
        const hb =
          body[0] !== undefined && (body[0] & 0x80) !== 0
            ? body.subarray(3, 3 + ((body[1] as number) * 256 + (body[2] as number)))
            : undefined;
        frames.push({ opcode: d.opcode, ...(hb !== undefined && { header: hex(hb) }), payload: hex(d.payload) });
        if (d.opcode === 0x8) decodeClosePayload(d.payload);
      }
    }
  } catch (err) {
    return { frames, error: (err as { closeCode: number }).closeCode };
  }
  return { frames, error: null };
}

const v1 = FILE.vectors.filter((v) => v.framing === 'v1');

test('every v1 vector decodes to the same frames or close code, whole and byte by byte', () => {
  assert.ok(v1.length >= 40, `only ${v1.length} vectors`);
  for (const v of v1) {
    const input = bytes(v.input);
    for (const chunks of [[input], Array.from(input, (b) => Uint8Array.of(b))]) {
      const got = run(v, chunks);
      assert.deepEqual(got.frames, v.frames, v.name);
      assert.equal(got.error, v.error, v.name);
    }
  }
});

test('re-encoding the decoded frames gives the vector bytes', () => {
  let n = 0;
  for (const v of v1.filter((x) => x.error === null)) {
    const out = v.frames.map((f) =>
      hex(frame(encodeBody(f.opcode as Op, bytes(f.payload), f.header === undefined ? undefined : bytes(f.header)))),
    );
    assert.equal(out.join(''), v.input, v.name);
    n++;
  }
  assert.ok(n >= 15);
});

test('close payloads: code + reason cut at 123 bytes on a character boundary', () => {
  assert.deepEqual(decodeClosePayload(encodeClosePayload(4000, 'bye')), { code: 4000, reason: 'bye' });
  const long = encodeClosePayload(1000, 'é'.repeat(100));
  assert.equal(long.length, 2 + 122);
  assert.equal(decodeClosePayload(long).reason, 'é'.repeat(61));
  assert.deepEqual(decodeClosePayload(new Uint8Array(0)), { code: 1005, reason: '' });
});

test('bounds before bytes: an over-limit length is refused from its 4 bytes alone', () => {
  const s = new FrameSplitter(16);
  assert.throws(
    () => s.push(Uint8Array.of(0, 0, 0, 17)),
    (e: { closeCode: number }) => e.closeCode === 1009,
  );
  assert.throws(
    () => decodeBody(encodeBody(0x2, new Uint8Array(4), new Uint8Array(9)), { maxFrameBytes: 64, maxHeaderBytes: 8 }),
    (e: { closeCode: number }) => e.closeCode === 1009,
  );
});
