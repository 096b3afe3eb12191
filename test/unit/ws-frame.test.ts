/**
 * WsReceiver (RFC 6455 §5, server side): masked frames of every length form, split at every
 * byte and at random points, fragmentation, every protocol violation with its close code,
 * close frame validation, `inPlace` semantics, and unmasking against a reference (JS and
 * native bufferutil paths, and with ECHO_NO_NATIVE_MASK=1 in a child process).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { ProtocolError } from '../../src/errors.js';
import { maskCopy, nativeMasking, unmaskInPlace } from '../../src/protocol/mask.js';
import { encodeClosePayload, encodeFrame, RESERVE, WsOpcode, WsReceiver, type WsDataOpcode } from '../../src/protocol/ws-frame.js';

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]); // RFC 6455 §5.7

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const randomBytes = (rand: () => number, n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));

function randomCuts(buf: Buffer, rand: () => number, maxPiece = 16): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = 1 + Math.floor(rand() * Math.min(buf.length - at, maxPiece));
    out.push(Buffer.from(buf.subarray(at, at + n)));
    at += n;
  }
  return out;
}
const bytewise = (buf: Buffer): Buffer[] => [...buf].map((b) => Buffer.from([b]));

/** A client frame (masked with KEY unless told otherwise). */
const cf = (opcode: number, payload: Uint8Array | string, opts: { fin?: boolean; rsv?: number; maskKey?: Uint8Array } = {}): Buffer =>
  encodeFrame(opcode, typeof payload === 'string' ? Buffer.from(payload) : payload, { maskKey: KEY, ...opts });

type Event =
  | {
      type: 'message';
      opcode: WsDataOpcode;
      payload: string;
      inPlace: boolean;
      start: number;
      frameStart: number;
      bufLength: number;
      sameBuf: boolean;
    }
  | { type: 'ping' | 'pong'; payload: string }
  | { type: 'close'; code: number; reason: string };

interface Run {
  events: Event[];
  error: ProtocolError | undefined;
  /** Index of the chunk whose push threw. */
  errorAt: number;
  receiver: WsReceiver;
}

function run(chunks: Buffer[], maxMessageBytes = 1 << 20): Run {
  const events: Event[] = [];
  let current: Buffer | undefined;
  const receiver = new WsReceiver(
    {
      onMessage(opcode, buf, start, end, inPlace, frameStart) {
        events.push({
          type: 'message',
          opcode,
          payload: buf.toString('hex', start, end),
          inPlace,
          start,
          frameStart,
          bufLength: buf.length,
          sameBuf: buf === current,
        });
      },
      onPing: (p) => events.push({ type: 'ping', payload: p.toString('hex') }),
      onPong: (p) => events.push({ type: 'pong', payload: p.toString('hex') }),
      onClose: (code, reason) => events.push({ type: 'close', code, reason }),
    },
    { maxMessageBytes },
  );
  let error: ProtocolError | undefined;
  let errorAt = -1;
  for (const [i, c] of chunks.entries()) {
    current = c;
    try {
      receiver.push(c);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
      error = err;
      errorAt = i;
      break;
    }
  }
  return { events, error, errorAt, receiver };
}

/** The stable part of the events (no buffer offsets), for comparing chunkings. */
const plain = (events: Event[]): unknown[] =>
  events.map((e) => (e.type === 'message' ? { type: e.type, opcode: e.opcode, payload: e.payload } : e));

/** Asserts the same outcome whole, byte by byte, at every 2-way cut (for short input) and at random cuts. */
function expectAllChunkings(input: Buffer, expected: unknown[], errorCode?: number, seed = 1): void {
  const ways: Array<[string, Buffer[]]> = [
    ['whole', [Buffer.from(input)]],
    ['byte by byte', bytewise(input)],
  ];
  if (input.length <= 400)
    for (let i = 1; i < input.length; i++) ways.push([`cut at ${i}`, [Buffer.from(input.subarray(0, i)), Buffer.from(input.subarray(i))]]);
  const rand = rng(seed);
  for (let r = 0; r < 10; r++) ways.push([`random #${r}`, randomCuts(input, rand, 1 + Math.floor(rand() * 64))]);
  for (const [how, chunks] of ways) {
    const r = run(chunks);
    assert.deepEqual(plain(r.events), expected, how);
    assert.equal(r.error?.closeCode, errorCode, `${how}: error ${r.error?.message}`);
  }
}

const msg = (opcode: WsDataOpcode, payload: Buffer | string) => ({
  type: 'message',
  opcode,
  payload: (typeof payload === 'string' ? Buffer.from(payload) : payload).toString('hex'),
});
const code = (c: number) => (r: Run) => assert.equal(r.error?.closeCode, c, r.error?.message ?? 'no error');

describe('WsReceiver: data frames', () => {
  test('RFC 6455 §5.7 masked "Hello" (known bytes, not from our encoder)', () => {
    const r = run([Buffer.from('818537fa213d7f9f4d5158', 'hex')]);
    assert.deepEqual(plain(r.events), [msg(WsOpcode.TEXT, 'Hello')]);
  });

  test('masked text and binary frames, whole and in pieces', () => {
    expectAllChunkings(cf(WsOpcode.TEXT, 'héllo wörld €😀'), [msg(WsOpcode.TEXT, 'héllo wörld €😀')]);
    const bin = Buffer.from([0, 1, 2, 0xfe, 0xff, 0xc0, 0xaf]);
    expectAllChunkings(cf(WsOpcode.BINARY, bin), [msg(WsOpcode.BINARY, bin)]);
  });

  for (const [size, lenByte] of [
    [0, 0],
    [125, 125],
    [126, 126],
    [65535, 126],
    [65536, 127],
  ] as const) {
    test(`${size}-byte payload (length form ${lenByte})`, () => {
      const payload = randomBytes(rng(size), size);
      const frame = cf(WsOpcode.BINARY, payload);
      assert.equal((frame[1] as number) & 0x7f, lenByte);
      assert.equal(frame.length, payload.length + 4 + (lenByte < 126 ? 2 : lenByte === 126 ? 4 : 10));
      expectAllChunkings(frame, [msg(WsOpcode.BINARY, payload)], undefined, size);
      if (size > 400) {
        // Every cut inside the header and around the payload start and end.
        for (const i of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, frame.length - 2, frame.length - 1]) {
          const r = run([Buffer.from(frame.subarray(0, i)), Buffer.from(frame.subarray(i))]);
          assert.deepEqual(plain(r.events), [msg(WsOpcode.BINARY, payload)], `cut at ${i}`);
        }
      }
    });
  }

  test('many frames in one chunk are delivered in order, in place', () => {
    const rand = rng(5);
    const payloads = Array.from({ length: 100 }, (_, i) => randomBytes(rand, i * 3));
    const chunk = Buffer.concat(
      payloads.map((p, i) =>
        cf(i % 2 === 0 ? WsOpcode.BINARY : WsOpcode.PING, p.subarray(0, i % 2 === 0 ? p.length : Math.min(p.length, 125))),
      ),
    );
    const r = run([chunk]);
    assert.equal(r.events.length, 100);
    r.events.forEach((e, i) => {
      const p = payloads[i] as Buffer;
      if (i % 2 === 0) {
        assert.equal(e.type, 'message');
        assert.equal(e.type === 'message' && e.inPlace, true);
        assert.equal(e.payload, p.toString('hex'));
      } else {
        assert.deepEqual(e, { type: 'ping', payload: p.subarray(0, Math.min(p.length, 125)).toString('hex') });
      }
    });
    assert.equal(r.receiver.bufferedBytes, 0);
  });

  test('fragmented text (3 fragments) with a ping interleaved: one message, ping in order', () => {
    const input = Buffer.concat([
      cf(WsOpcode.TEXT, 'frag', { fin: false }),
      cf(WsOpcode.CONTINUATION, 'men', { fin: false }),
      cf(WsOpcode.PING, 'are you there'),
      cf(WsOpcode.CONTINUATION, 'ted €'),
      cf(WsOpcode.BINARY, 'next'),
    ]);
    expectAllChunkings(input, [
      { type: 'ping', payload: Buffer.from('are you there').toString('hex') },
      msg(WsOpcode.TEXT, 'fragmented €'),
      msg(WsOpcode.BINARY, 'next'),
    ]);
    const r = run([input]);
    const m = r.events[1];
    assert.ok(m?.type === 'message' && !m.inPlace && m.start === RESERVE, 'a reassembled message is a new buffer with header room');
  });

  test('a UTF-8 character split across fragments is accepted', () => {
    const euro = Buffer.from('€'); // e2 82 ac
    const input = Buffer.concat([
      cf(WsOpcode.TEXT, euro.subarray(0, 1), { fin: false }),
      cf(WsOpcode.CONTINUATION, euro.subarray(1, 2), { fin: false }),
      cf(WsOpcode.CONTINUATION, euro.subarray(2)),
    ]);
    expectAllChunkings(input, [msg(WsOpcode.TEXT, '€')]);
  });

  test('empty fragments are fine', () => {
    const input = Buffer.concat([
      cf(WsOpcode.BINARY, '', { fin: false }),
      cf(WsOpcode.CONTINUATION, 'x', { fin: false }),
      cf(WsOpcode.CONTINUATION, ''),
    ]);
    expectAllChunkings(input, [msg(WsOpcode.BINARY, 'x')]);
  });
});

describe('WsReceiver: protocol violations', () => {
  test('an unmasked client frame is 1002', () => {
    code(1002)(run([encodeFrame(WsOpcode.TEXT, Buffer.from('hi'))]));
  });

  for (const rsv of [1, 2, 4, 7]) {
    test(`RSV bits ${rsv.toString(2).padStart(3, '0')} are 1002 (no extension negotiated)`, () => {
      code(1002)(run([cf(WsOpcode.TEXT, 'hi', { rsv })]));
    });
  }

  test('reserved opcodes 3-7 and 0xB-0xF are 1002', () => {
    // Payloads that would be valid for a neighbouring opcode (close, ping), so only the opcode check can refuse them.
    for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      for (const payload of [Buffer.alloc(0), Buffer.from('x'), encodeClosePayload(1000, 'ok')]) {
        const r = run([cf(op, payload)]);
        assert.equal(r.error?.closeCode, 1002, `opcode ${op}`);
        assert.deepEqual(r.events, []);
      }
    }
  });

  test('a fragmented control frame is 1002', () => {
    for (const op of [WsOpcode.PING, WsOpcode.PONG, WsOpcode.CLOSE]) code(1002)(run([cf(op, '', { fin: false })]));
  });

  test('a control payload of 126 bytes is 1002, 125 is fine', () => {
    code(1002)(run([cf(WsOpcode.PING, Buffer.alloc(126))]));
    assert.deepEqual(run([cf(WsOpcode.PING, Buffer.alloc(125))]).events, [{ type: 'ping', payload: '00'.repeat(125) }]);
  });

  test('a continuation without a message is 1002', () => {
    code(1002)(run([cf(WsOpcode.CONTINUATION, 'x')]));
    code(1002)(run([Buffer.concat([cf(WsOpcode.TEXT, 'done'), cf(WsOpcode.CONTINUATION, 'x')])]));
  });

  test('a new message inside a fragmented one is 1002', () => {
    for (const op of [WsOpcode.TEXT, WsOpcode.BINARY]) {
      const r = run([Buffer.concat([cf(WsOpcode.TEXT, 'a', { fin: false }), cf(op, 'b')])]);
      code(1002)(r);
      assert.deepEqual(r.events, []);
    }
  });

  test('a message over maxMessageBytes is 1009, detected from the header alone', () => {
    const frame = cf(WsOpcode.BINARY, Buffer.alloc(1001));
    const headerOnly = frame.subarray(0, 8); // 126 form: 2 + 2 + 4-byte key
    const r = run([Buffer.from(headerOnly)], 1000);
    code(1009)(r);
    assert.equal(r.receiver.bufferedBytes, 0);
    assert.deepEqual(run([cf(WsOpcode.BINARY, Buffer.alloc(1000))], 1000).events.length, 1);
  });

  test('fragments whose sum exceeds maxMessageBytes are 1009 at the fragment that crosses it', () => {
    const parts = [
      cf(WsOpcode.BINARY, Buffer.alloc(400), { fin: false }),
      cf(WsOpcode.CONTINUATION, Buffer.alloc(400), { fin: false }),
      cf(WsOpcode.CONTINUATION, Buffer.alloc(201)),
    ];
    const r = run(parts, 1000);
    code(1009)(r);
    assert.equal(r.errorAt, 2);
    assert.deepEqual(r.events, []);
    // Exactly at the limit is fine.
    const ok = run(
      [
        cf(WsOpcode.BINARY, Buffer.alloc(400), { fin: false }),
        cf(WsOpcode.CONTINUATION, Buffer.alloc(400), { fin: false }),
        cf(WsOpcode.CONTINUATION, Buffer.alloc(200)),
      ],
      1000,
    );
    assert.equal(ok.events.length, 1);
  });

  test('a 64-bit length with the most significant bit set is 1002; a huge one without it is 1009', () => {
    const msb = Buffer.concat([Buffer.from('82ff', 'hex'), Buffer.from('8000000000000001', 'hex'), KEY]);
    code(1002)(run([msb]));
    const huge = Buffer.concat([Buffer.from('82ff', 'hex'), Buffer.from('0000000100000000', 'hex'), KEY]);
    code(1009)(run([huge]));
  });

  test('invalid UTF-8 in a single text frame is 1007', () => {
    for (const bad of ['ff', 'c0af', 'eda080', 'f4908080', 'e282']) code(1007)(run([cf(WsOpcode.TEXT, Buffer.from(bad, 'hex'))]));
    // ...but not in a binary frame.
    assert.equal(run([cf(WsOpcode.BINARY, Buffer.from('ff', 'hex'))]).events.length, 1);
  });

  test("fail fast: invalid UTF-8 in the first of 3 fragments fails on that fragment's push", () => {
    const first = cf(WsOpcode.TEXT, Buffer.from('61ff62', 'hex'), { fin: false });
    // Copies: the receiver unmasks the chunks it is given in place.
    const r = run([Buffer.from(first), cf(WsOpcode.CONTINUATION, 'b', { fin: false }), cf(WsOpcode.CONTINUATION, 'c')]);
    code(1007)(r);
    assert.equal(r.errorAt, 0, 'reported before later fragments arrive');
    // Also when the first fragment's payload itself arrives across reads.
    const r2 = run([Buffer.from(first.subarray(0, 7)), Buffer.from(first.subarray(7))]);
    code(1007)(r2);
    assert.equal(r2.errorAt, 1);
  });

  test('a fragmented text message ending inside a character is 1007', () => {
    code(1007)(run([Buffer.concat([cf(WsOpcode.TEXT, 'a', { fin: false }), cf(WsOpcode.CONTINUATION, Buffer.from('e282', 'hex'))])]));
  });
});

describe('WsReceiver: close frames', () => {
  test('an empty close is reported as 1005', () => {
    assert.deepEqual(run([cf(WsOpcode.CLOSE, '')]).events, [{ type: 'close', code: 1005, reason: '' }]);
  });

  test('a 1-byte close payload is 1002', () => {
    code(1002)(run([cf(WsOpcode.CLOSE, Buffer.from([3]))]));
  });

  for (const c of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
    test(`close code ${c} is invalid (1002)`, () => {
      const r = run([cf(WsOpcode.CLOSE, encodeClosePayloadRaw(c, 'x'))]);
      code(1002)(r);
      assert.deepEqual(r.events, []);
    });
  }

  test('valid close codes are accepted with their reason', () => {
    for (const c of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999]) {
      assert.deepEqual(
        run([cf(WsOpcode.CLOSE, encodeClosePayload(c, 'bye €'))]).events,
        [{ type: 'close', code: c, reason: 'bye €' }],
        `code ${c}`,
      );
    }
  });

  test('a close reason that is not UTF-8 is 1007', () => {
    code(1007)(run([cf(WsOpcode.CLOSE, Buffer.concat([encodeClosePayload(1000), Buffer.from('ff', 'hex')]))]));
  });

  test('after a close frame nothing more is delivered', () => {
    const r = run([
      Buffer.concat([
        cf(WsOpcode.TEXT, 'before'),
        cf(WsOpcode.CLOSE, encodeClosePayload(1000, '')),
        cf(WsOpcode.TEXT, 'after'),
        cf(WsOpcode.PING, 'p'),
      ]),
    ]);
    assert.deepEqual(plain(r.events), [msg(WsOpcode.TEXT, 'before'), { type: 'close', code: 1000, reason: '' }]);
    assert.equal(r.receiver.closed, true);
    r.receiver.push(cf(WsOpcode.TEXT, 'later'));
    r.receiver.push(Buffer.from('garbage'));
    assert.equal(r.events.length, 2);
    assert.equal(r.receiver.bufferedBytes, 0);
  });

  test('encodeClosePayload: 1005 encodes as empty, long reasons are cut at a character', () => {
    assert.equal(encodeClosePayload(1005, 'ignored').length, 0);
    const p = encodeClosePayload(1000, 'é'.repeat(100));
    assert.ok(p.length <= 125);
    assert.equal(p.toString('utf8', 2), 'é'.repeat(61));
  });
});

/** A close payload with any code (encodeClosePayload would refuse nothing, but be explicit). */
function encodeClosePayloadRaw(c: number, reason: string): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(c, 0);
  b.write(reason, 2);
  return b;
}

describe('WsReceiver: inPlace semantics', () => {
  test('frames within one chunk arrive in place, in the chunk, at their offsets', () => {
    const a = cf(WsOpcode.TEXT, 'first');
    const b = cf(WsOpcode.BINARY, Buffer.alloc(300, 7));
    const chunk = Buffer.concat([a, b]);
    const r = run([chunk]);
    assert.equal(r.events.length, 2);
    const [e1, e2] = r.events;
    assert.ok(e1?.type === 'message' && e2?.type === 'message');
    assert.ok(e1.inPlace && e1.sameBuf && e1.frameStart === 0 && e1.start === 6);
    assert.ok(e2.inPlace && e2.sameBuf && e2.frameStart === a.length && e2.start === a.length + 8);
  });

  test('a payload that spans chunks arrives with inPlace=false and start === RESERVE', () => {
    const frame = cf(WsOpcode.BINARY, Buffer.alloc(300, 9));
    for (const cut of [2, 8, 9, 150, frame.length - 1]) {
      const r = run([Buffer.from(frame.subarray(0, cut)), Buffer.from(frame.subarray(cut))]);
      const e = r.events[0];
      assert.ok(e?.type === 'message');
      if (cut < 8) {
        // Header incomplete in the first read (2 + 2 + 4-byte key): it is kept, and the frame is
        // parsed whole from the second read.
        assert.equal(e.inPlace, true, `cut ${cut}`);
      } else {
        assert.equal(e.inPlace, false, `cut ${cut}`);
        assert.equal(e.start, RESERVE);
        assert.equal(e.bufLength, RESERVE + 300);
        assert.equal(e.sameBuf, false);
      }
      assert.equal(e.payload, '09'.repeat(300));
    }
  });

  /** A receiver that collects each message's payload as text into `got`. */
  function collecting(got: string[]): WsReceiver {
    return new WsReceiver(
      {
        onMessage: (_op, buf, start, end) => void got.push(buf.toString('utf8', start, end)),
        onPing: () => {},
        onPong: () => {},
        onClose: () => {},
      },
      { maxMessageBytes: 1 << 20 },
    );
  }

  test('fragments received in place are kept safe when the caller reuses the chunk', () => {
    const chunk1 = Buffer.concat([
      cf(WsOpcode.TEXT, 'first part, ', { fin: false }),
      cf(WsOpcode.CONTINUATION, 'second part, ', { fin: false }),
    ]);
    const chunk2 = cf(WsOpcode.CONTINUATION, 'last part');
    const got: string[] = [];
    const receiver = collecting(got);
    receiver.push(chunk1);
    chunk1.fill(0x41); // the socket layer (or an in-place echo) may reuse the read buffer
    receiver.push(chunk2);
    assert.deepEqual(got, ['first part, second part, last part']);
  });

  test('a frame header split across reads survives the first read buffer being overwritten', () => {
    const wire = Buffer.concat([cf(WsOpcode.TEXT, 'one'), cf(WsOpcode.BINARY, 'two, a little longer')]);
    const cut = cf(WsOpcode.TEXT, 'one').length + 3; // half of the second frame's header
    const got: string[] = [];
    const receiver = collecting(got);
    const read = Buffer.from(wire.subarray(0, cut));
    receiver.push(read);
    read.fill(0x41); // the shared read buffer takes some other socket's next read (core/direct-io.ts)
    receiver.push(Buffer.from(wire.subarray(cut)));
    assert.deepEqual(got, ['one', 'two, a little longer']);
  });

  test('a handler that overwrites the bytes in front of an in-place frame does not corrupt later frames', () => {
    const rand = rng(3);
    const payloads = Array.from({ length: 30 }, (_, i) => randomBytes(rand, i * 17));
    const chunk = Buffer.concat(payloads.map((p) => cf(WsOpcode.BINARY, p)));
    const got: string[] = [];
    const receiver = new WsReceiver(
      {
        onMessage(_op, buf, start, end, inPlace, frameStart) {
          got.push(buf.toString('hex', start, end));
          // The echo fast path writes its output below the frame: scribble there.
          if (inPlace) buf.fill(0xaa, 0, frameStart);
        },
        onPing: () => {},
        onPong: () => {},
        onClose: () => {},
      },
      { maxMessageBytes: 1 << 20 },
    );
    receiver.push(chunk);
    assert.deepEqual(
      got,
      payloads.map((p) => p.toString('hex')),
    );
  });
});

describe('unmasking', () => {
  const reference = (payload: Buffer, key: Buffer, phase = 0): Buffer =>
    Buffer.from(payload.map((b, i) => b ^ (key[(phase + i) & 3] as number)));

  test('bufferutil is installed here, so the native path is exercised for payloads >= 128 bytes', () => {
    assert.equal(nativeMasking, true);
  });

  test('WsReceiver unmasks random payloads of 0..2000 bytes like a JS reference (whole and split)', () => {
    const rand = rng(99);
    for (let size = 0; size <= 2000; size += 1 + Math.floor(rand() * 13)) {
      const payload = randomBytes(rand, size);
      const key = randomBytes(rand, 4);
      // Build the frame by hand from the reference, not with encodeFrame.
      const len = size < 126 ? Buffer.from([0x82, 0x80 | size]) : Buffer.from([0x82, 0x80 | 126, size >> 8, size & 0xff]);
      const frame = Buffer.concat([len, key, reference(payload, key)]);
      for (const chunks of [[Buffer.from(frame)], randomCuts(frame, rand, 300)]) {
        const r = run(chunks);
        assert.deepEqual(plain(r.events), [msg(WsOpcode.BINARY, payload)], `size ${size}`);
      }
    }
  });

  test('unmaskInPlace and maskCopy match the reference at every phase, offset and size', () => {
    const rand = rng(1234);
    for (let size = 0; size <= 2000; size += 1 + Math.floor(rand() * 29)) {
      for (let phase = 0; phase < 4; phase++) {
        const key = randomBytes(rand, 4);
        const payload = randomBytes(rand, size);
        const want = reference(payload, key, phase).toString('hex');
        const keyAt = Math.floor(rand() * 5);
        const keyBuf = Buffer.concat([Buffer.alloc(keyAt, 0x55), key, Buffer.alloc(3, 0x66)]);
        const start = Math.floor(rand() * 7);
        const buf = Buffer.concat([Buffer.alloc(start, 0x11), payload, Buffer.alloc(5, 0x22)]);
        unmaskInPlace(buf, start, start + size, keyBuf, keyAt, phase);
        assert.equal(buf.toString('hex', start, start + size), want, `unmaskInPlace size ${size} phase ${phase}`);
        assert.ok(
          buf.subarray(0, start).every((b) => b === 0x11) && buf.subarray(start + size).every((b) => b === 0x22),
          'bytes outside untouched',
        );
        const dst = Buffer.alloc(size + 6, 0x33);
        maskCopy(Buffer.concat([Buffer.alloc(start), payload]), start, start + size, dst, 3, keyBuf, keyAt, phase);
        assert.equal(dst.toString('hex', 3, 3 + size), want, `maskCopy size ${size} phase ${phase}`);
        assert.ok(dst.subarray(0, 3).every((b) => b === 0x33) && dst.subarray(3 + size).every((b) => b === 0x33));
      }
    }
  });

  test('with ECHO_NO_NATIVE_MASK=1 the JS path is used and gives the same results', () => {
    const maskUrl = new URL('../../src/protocol/mask.js', import.meta.url).href;
    const code = `
      const { nativeMasking, unmaskInPlace, maskCopy } = await import(${JSON.stringify(maskUrl)});
      let bad = 0;
      for (let size = 0; size <= 2000; size += 7) for (let phase = 0; phase < 4; phase++) {
        const key = Buffer.from([size & 255, 0x9c, phase, 0x5a]);
        const payload = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + size) & 255));
        const want = Buffer.from(payload.map((b, i) => b ^ key[(phase + i) & 3]));
        const a = Buffer.from(payload); unmaskInPlace(a, 0, size, key, 0, phase);
        const b = Buffer.alloc(size); maskCopy(payload, 0, size, b, 0, key, 0, phase);
        if (!a.equals(want) || !b.equals(want)) bad++;
      }
      process.stdout.write(JSON.stringify({ nativeMasking, bad }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], {
      env: { ...process.env, ECHO_NO_NATIVE_MASK: '1' },
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(out), { nativeMasking: false, bad: 0 });
  });
});
