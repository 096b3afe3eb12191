/**
 * Property tests (fast-check, fixed seeds): whatever the frames and however the stream is cut,
 * the decoders give back exactly what was encoded; on arbitrary or corrupted input they throw
 * nothing but ProtocolError and never hold more than their documented bound.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import { jsonDepth, MAX_HEADER_DEPTH, parseHeader } from '../../src/protocol/header.js';
import { encodeLen, LenDecoder } from '../../src/protocol/len.js';
import { encodeClose, encodeFrame as encodeV1, V1Decoder, V1Opcode } from '../../src/protocol/v1.js';
import { encodeFrame as encodeWs, RESERVE, WsOpcode, WsReceiver } from '../../src/protocol/ws-frame.js';

const SEED = 20240611;
const RUNS = 300;

/** Cuts `buf` into pieces whose sizes cycle through `sizes` (all >= 1). */
function cut(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < buf.length; i++) {
    const n = sizes[i % sizes.length] as number;
    out.push(Buffer.from(buf.subarray(at, at + n)));
    at += n;
  }
  return out;
}
const cutSizes = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 });

const utf8 = (maxLength: number) => fc.string({ unit: 'binary', maxLength }).map((s) => Buffer.from(s, 'utf8'));
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const headerArb = fc.option(
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map((o) => Buffer.from(JSON.stringify(o))),
  { nil: undefined },
);
const validCloseCode = fc.oneof(
  fc.integer({ min: 1000, max: 1003 }),
  fc.integer({ min: 1007, max: 1014 }),
  fc.integer({ min: 3000, max: 4999 }),
);

interface V1F {
  opcode: number;
  header: string | undefined;
  payload: string;
  bytes: Buffer;
}

const v1Frame: fc.Arbitrary<V1F> = fc
  .oneof(
    fc.tuple(utf8(200), headerArb).map(([p, h]) => ({ opcode: V1Opcode.TEXT, p, h })),
    fc.tuple(bytes(300), headerArb).map(([p, h]) => ({ opcode: V1Opcode.BINARY, p, h })),
    bytes(50).map((p) => ({ opcode: V1Opcode.PING, p, h: undefined })),
    bytes(50).map((p) => ({ opcode: V1Opcode.PONG, p, h: undefined })),
    fc.string({ maxLength: 20 }).map((t) => ({ opcode: V1Opcode.HELLO, p: Buffer.from(JSON.stringify({ v: 1, token: t })), h: undefined })),
  )
  .map(({ opcode, p, h }) => ({
    opcode,
    header: h?.toString('hex'),
    payload: p.toString('hex'),
    bytes: encodeV1(opcode as V1Opcode, p, h),
  }));
const v1Close = fc.option(fc.tuple(validCloseCode, fc.string({ unit: 'binary', maxLength: 60 })), { nil: undefined });

describe('property: round trips through any cutting of the stream', () => {
  test('v1: concatenated valid frames (closing with a close frame) decode to the same frames', () => {
    fc.assert(
      fc.property(fc.array(v1Frame, { maxLength: 20 }), v1Close, cutSizes, (frames, close, sizes) => {
        const closeFrame = close === undefined ? encodeV1(V1Opcode.CLOSE, Buffer.alloc(0)) : encodeClose(close[0], close[1]);
        const stream = Buffer.concat([...frames.map((f) => f.bytes), closeFrame]);
        const got: Array<{ opcode: number; header: string | undefined; payload: string }> = [];
        const echoes: Buffer[] = [];
        const dec = new V1Decoder(
          {
            onV1Frame(opcode, buf, frameStart, hs, he, ps, end) {
              got.push({ opcode, header: hs >= 0 ? buf.toString('hex', hs, he) : undefined, payload: buf.toString('hex', ps, end) });
              echoes.push(Buffer.from(buf.subarray(frameStart, end)));
            },
          },
          { maxFrameBytes: 4096, maxHeaderBytes: 4096 },
        );
        for (const c of cut(stream, sizes)) dec.push(c);
        assert.deepEqual(
          got.slice(0, -1),
          frames.map(({ opcode, header, payload }) => ({ opcode, header, payload })),
        );
        assert.equal(got.at(-1)?.opcode, V1Opcode.CLOSE);
        // The frame spans handed out are the frames as sent (the byte-for-byte echo).
        assert.deepEqual(Buffer.concat(echoes), stream);
        assert.equal(dec.bufferedBytes, 0);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test('len: concatenated payloads decode to the same payloads', () => {
    fc.assert(
      fc.property(fc.array(bytes(300), { maxLength: 20 }), cutSizes, (payloads, sizes) => {
        const stream = Buffer.concat(payloads.map((p) => encodeLen(p)));
        const got: string[] = [];
        const dec = new LenDecoder(300);
        for (const c of cut(stream, sizes)) dec.push(c, { onFrame: (buf, _f, b, e) => got.push(buf.toString('hex', b, e)) });
        assert.deepEqual(
          got,
          payloads.map((p) => p.toString('hex')),
        );
        assert.equal(dec.bufferedBytes, 0);
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  test('WebSocket: masked, randomly fragmented messages with pings between fragments reassemble', () => {
    const message = fc.record({
      text: fc.boolean(),
      data: fc.oneof(utf8(400), bytes(400)),
      // Fragment boundaries (fractions of the payload) and whether a ping follows each fragment.
      cuts: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean()), { maxLength: 4 }),
      key: fc.uint8Array({ minLength: 4, maxLength: 4 }),
      ping: bytes(20),
    });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), cutSizes, (messages, sizes) => {
        const wire: Buffer[] = [];
        const expected: string[] = [];
        for (const m of messages) {
          // Text messages carry UTF-8; split points may fall inside a character.
          const payload = m.text ? Buffer.from(m.data.toString('utf8')) : m.data;
          const points = [...new Set(m.cuts.map(([f]) => Math.floor(f * payload.length)))].sort((a, b) => a - b);
          const bounds = [0, ...points, payload.length];
          const nFrags = bounds.length - 1;
          for (let i = 0; i < nFrags; i++) {
            const opcode = i === 0 ? (m.text ? WsOpcode.TEXT : WsOpcode.BINARY) : WsOpcode.CONTINUATION;
            wire.push(encodeWs(opcode, payload.subarray(bounds[i], bounds[i + 1]), { fin: i === nFrags - 1, maskKey: m.key }));
            if (i < nFrags - 1 && m.cuts[i]?.[1] === true) {
              wire.push(encodeWs(WsOpcode.PING, m.ping, { maskKey: m.key }));
              expected.push(`ping:${m.ping.toString('hex')}`);
            }
          }
          expected.push(`${m.text ? 'text' : 'binary'}:${payload.toString('hex')}`);
        }
        const got: string[] = [];
        const r = new WsReceiver(
          {
            onMessage: (op, buf, s, e, inPlace, frameStart) => {
              if (!inPlace) assert.equal(s, RESERVE);
              else assert.ok(frameStart < s);
              got.push(`${op === WsOpcode.TEXT ? 'text' : 'binary'}:${buf.toString('hex', s, e)}`);
            },
            onPing: (p) => got.push(`ping:${p.toString('hex')}`),
            onPong: () => assert.fail('no pong sent'),
            onClose: () => assert.fail('no close sent'),
          },
          { maxMessageBytes: 4096 },
        );
        for (const c of cut(Buffer.concat(wire), sizes)) r.push(c);
        assert.deepEqual(got, expected);
        assert.equal(r.bufferedBytes, 0);
      }),
      { seed: SEED + 2, numRuns: RUNS },
    );
  });
});

describe('property: arbitrary and corrupted input', () => {
  const LIMIT = 1024;
  /** Random bytes, or valid frames with some bytes overwritten (so parsing gets deep). */
  const noise = (valid: fc.Arbitrary<Buffer>) =>
    fc.oneof(
      bytes(3000),
      fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 })).map(([b, edits]) => {
        const out = Buffer.from(b);
        for (const [at, v] of edits) if (out.length > 0) out[at % out.length] = v;
        return out;
      }),
    );
  const expectProtocolError = (err: unknown): void => {
    if (!(err instanceof ProtocolError)) throw err;
    assert.ok([1002, 1007, 1009].includes(err.closeCode), `close code ${err.closeCode}`);
  };

  test('V1Decoder throws only ProtocolError and holds at most 4 + maxFrameBytes', () => {
    const valid = fc.array(v1Frame, { maxLength: 8 }).map((fs) => Buffer.concat(fs.map((f) => f.bytes)));
    fc.assert(
      fc.property(noise(valid), cutSizes, (input, sizes) => {
        const dec = new V1Decoder({ onV1Frame: () => {} }, { maxFrameBytes: LIMIT, maxHeaderBytes: 64 });
        try {
          for (const c of cut(input, sizes)) {
            dec.push(c);
            assert.ok(dec.bufferedBytes <= 4 + LIMIT, `buffered ${dec.bufferedBytes}`);
          }
        } catch (err) {
          expectProtocolError(err);
          assert.equal(dec.bufferedBytes, 0);
        }
      }),
      { seed: SEED + 3, numRuns: 500 },
    );
  });

  test('LenDecoder throws only ProtocolError and holds at most 4 + maxFrameBytes', () => {
    const valid = fc.array(bytes(LIMIT), { maxLength: 4 }).map((ps) => Buffer.concat(ps.map((p) => encodeLen(p))));
    fc.assert(
      fc.property(noise(valid), cutSizes, (input, sizes) => {
        const dec = new LenDecoder(LIMIT);
        try {
          for (const c of cut(input, sizes)) {
            dec.push(c, { onFrame: () => {} });
            assert.ok(dec.bufferedBytes <= 4 + LIMIT, `buffered ${dec.bufferedBytes}`);
          }
        } catch (err) {
          expectProtocolError(err);
          assert.equal(dec.bufferedBytes, 0);
        }
      }),
      { seed: SEED + 4, numRuns: 500 },
    );
  });

  test('WsReceiver throws only ProtocolError and holds at most one message, one control frame and header room', () => {
    const frame = fc
      .tuple(fc.constantFrom(0, 1, 2, 8, 9, 10), fc.boolean(), bytes(600), fc.uint8Array({ minLength: 4, maxLength: 4 }))
      .map(([op, fin, p, key]) => encodeWs(op, op >= 8 ? p.subarray(0, 125) : p, { fin: op >= 8 ? true : fin, maskKey: key }));
    const valid = fc.array(frame, { maxLength: 8 }).map((fs) => Buffer.concat(fs));
    const bound = LIMIT + RESERVE + 125;
    fc.assert(
      fc.property(noise(valid), cutSizes, (input, sizes) => {
        const r = new WsReceiver(
          { onMessage: () => {}, onPing: () => {}, onPong: () => {}, onClose: () => {} },
          { maxMessageBytes: LIMIT },
        );
        try {
          for (const c of cut(input, sizes)) {
            r.push(c);
            assert.ok(r.bufferedBytes <= bound, `buffered ${r.bufferedBytes}`);
          }
        } catch (err) {
          expectProtocolError(err);
          assert.equal(r.bufferedBytes, 0);
          assert.equal(r.closed, true);
        }
      }),
      { seed: SEED + 5, numRuns: 500 },
    );
  });
});

describe('metadata header nesting (issue 14 item 7)', () => {
  const depthOf = (v: unknown): number =>
    v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v as Record<string, unknown>).map(depthOf)) : 0;
  // Strings full of brackets, quotes and backslashes: the scan must not count what is inside them.
  const tricky = fc.string({ unit: fc.constantFrom('[', ']', '{', '}', '"', '\\', 'a', 'é', '\u0000'), maxLength: 12 });
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      tricky,
      fc.integer(),
      fc.constant(null),
      fc.array(tie('v'), { maxLength: 3 }),
      fc.dictionary(tricky, tie('v'), { maxKeys: 3 }),
    ),
  })).v;

  test('jsonDepth of JSON text equals the depth of the value', () => {
    fc.assert(
      fc.property(value, (v) => {
        const text = Buffer.from(JSON.stringify(v));
        assert.equal(jsonDepth(text), depthOf(v));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test('parseHeader accepts up to MAX_HEADER_DEPTH levels and refuses deeper with 1002', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), tricky, (depth, filler) => {
        const inner = JSON.stringify(filler);
        const text = Buffer.from(`{"k":${'['.repeat(depth - 1)}${inner}${']'.repeat(depth - 1)}}`);
        if (depth <= MAX_HEADER_DEPTH) assert.deepEqual(Object.keys(parseHeader(text, 0, text.length)), ['k']);
        else
          assert.throws(
            () => parseHeader(text, 0, text.length),
            (e: unknown) => e instanceof ProtocolError && e.closeCode === 1002 && /nested deeper/.test(e.message),
          );
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test('100 000 levels are refused at once, without a stack overflow', () => {
    const text = Buffer.from(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    assert.equal(jsonDepth(text, 0, text.length, MAX_HEADER_DEPTH), MAX_HEADER_DEPTH + 1);
    assert.throws(() => parseHeader(text, 0, text.length), ProtocolError);
  });
});
