/**
 * Framing v1 and `len`: every vector of docs/PROTOCOL.md §Test vectors (= test/vectors/v1.json)
 * fed whole, one byte at a time, cut at every single point and at seeded random cut points;
 * encoder round trips; limits (bounds before bytes).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ProtocolError } from '../../src/errors.js';
import { parseHeader, stampHeader, type ServerStamp } from '../../src/protocol/header.js';
import { encodeLen, LenDecoder } from '../../src/protocol/len.js';
import { LengthPrefixSplitter } from '../../src/protocol/length-prefix.js';
import { decodeClose, encodeBody, encodeClose, encodeFrame, parseBody, V1Decoder, V1Opcode, type V1Limits } from '../../src/protocol/v1.js';

// Compiled to build/test/unit/: the repository root is three levels up.
const ROOT = new URL('../../../', import.meta.url);

interface VectorFrame {
  opcode?: number;
  header?: string;
  payload: string;
}
interface Vector {
  name: string;
  framing: 'v1' | 'len';
  note: string;
  limits?: { maxFrameBytes: number; maxHeaderBytes?: number };
  input: string;
  frames: VectorFrame[];
  error: number | null;
  echo: string | null;
}
interface VectorFile {
  defaultLimits: V1Limits;
  stamp: ServerStamp;
  vectors: Vector[];
}

const FILE = JSON.parse(readFileSync(new URL('test/vectors/v1.json', ROOT), 'utf8')) as VectorFile;
const DOC = readFileSync(new URL('docs/PROTOCOL.md', ROOT), 'utf8');

/** mulberry32: a seeded PRNG, so random cut points are reproducible. */
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

function randomCuts(buf: Buffer, rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = 1 + Math.floor(rand() * Math.min(buf.length - at, 1 + Math.floor(rand() * 16)));
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Every way a vector is fed: whole, byte by byte, each 2-way split, 20 seeded random splits. */
function chunkings(buf: Buffer, seed: number): Array<{ how: string; chunks: Buffer[] }> {
  const ways: Array<{ how: string; chunks: Buffer[] }> = [
    { how: 'whole', chunks: [buf] },
    { how: 'byte by byte', chunks: [...buf].map((b) => Buffer.from([b])) },
  ];
  for (let i = 1; i < buf.length; i++) ways.push({ how: `cut at ${i}`, chunks: [buf.subarray(0, i), buf.subarray(i)] });
  const rand = rng(seed);
  for (let r = 0; r < 20; r++) ways.push({ how: `random #${r} (seed ${seed})`, chunks: randomCuts(buf, rand) });
  // Fresh copies: decoders may unmask/overwrite or keep references; one run must not affect the next.
  return ways.map((w) => ({ how: w.how, chunks: w.chunks.map((c) => Buffer.from(c)) }));
}

interface Outcome {
  frames: VectorFrame[];
  error: number | null;
  echo: string;
  maxBuffered: number;
}

const limitsOf = (v: Vector): V1Limits => ({
  maxFrameBytes: v.limits?.maxFrameBytes ?? FILE.defaultLimits.maxFrameBytes,
  maxHeaderBytes: v.limits?.maxHeaderBytes ?? FILE.defaultLimits.maxHeaderBytes,
});

/**
 * Runs the v1 decoder the way the stream transport does: the header is parsed (1002 when it is
 * not a UTF-8 JSON object), and the answer is computed from the codec functions (echo span,
 * stamped header, pong, close answer, hello answer).
 */
function runV1(chunks: Buffer[], limits: V1Limits, stamp: ServerStamp): Outcome {
  const frames: VectorFrame[] = [];
  const echo: Buffer[] = [];
  const dec = new V1Decoder(
    {
      onV1Frame(opcode, buf, frameStart, headerStart, headerEnd, payloadStart, end) {
        // A header that is not a UTF-8 JSON object fails the frame (1002) before it is delivered.
        const header = headerStart >= 0 ? parseHeader(buf, headerStart, headerEnd) : undefined;
        const f: VectorFrame = { opcode, payload: buf.toString('hex', payloadStart, end) };
        if (headerStart >= 0) f.header = buf.toString('hex', headerStart, headerEnd);
        frames.push(f);
        const payload = buf.subarray(payloadStart, end);
        switch (opcode) {
          case V1Opcode.TEXT:
          case V1Opcode.BINARY:
            if (header === undefined) echo.push(Buffer.from(buf.subarray(frameStart, end)));
            else echo.push(encodeFrame(opcode, payload, stampHeader(header, stamp)));
            break;
          case V1Opcode.PING:
            echo.push(encodeFrame(V1Opcode.PONG, payload));
            break;
          case V1Opcode.PONG:
            break;
          case V1Opcode.HELLO:
            echo.push(
              encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, ok: true, conn: stamp.conn, instance: stamp.instance }))),
            );
            break;
          case V1Opcode.CLOSE: {
            const { code, reason } = decodeClose(buf, payloadStart, end);
            echo.push(code === 1005 ? encodeFrame(V1Opcode.CLOSE, Buffer.alloc(0)) : encodeClose(code, reason));
            break;
          }
        }
      },
    },
    limits,
  );
  let error: number | null = null;
  let maxBuffered = 0;
  for (const c of chunks) {
    try {
      dec.push(c);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
      error = err.closeCode;
      // Stopped: later input is ignored.
      dec.push(Buffer.from('0000000101', 'hex'));
      assert.equal(dec.bufferedBytes, 0);
      break;
    }
    maxBuffered = Math.max(maxBuffered, dec.bufferedBytes);
  }
  return { frames, error, echo: Buffer.concat(echo).toString('hex'), maxBuffered };
}

function runLen(chunks: Buffer[], maxFrameBytes: number): Outcome {
  const frames: VectorFrame[] = [];
  const echo: Buffer[] = [];
  const dec = new LenDecoder(maxFrameBytes);
  const sink = {
    onFrame(buf: Buffer, frameStart: number, bodyStart: number, end: number) {
      frames.push({ payload: buf.toString('hex', bodyStart, end) });
      echo.push(Buffer.from(buf.subarray(frameStart, end)));
    },
  };
  let error: number | null = null;
  let maxBuffered = 0;
  for (const c of chunks) {
    try {
      dec.push(c, sink);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
      error = err.closeCode;
      dec.push(Buffer.from('0000000101', 'hex'), sink);
      assert.equal(dec.bufferedBytes, 0);
      break;
    }
    maxBuffered = Math.max(maxBuffered, dec.bufferedBytes);
  }
  return { frames, error, echo: Buffer.concat(echo).toString('hex'), maxBuffered };
}

describe('test vectors (test/vectors/v1.json)', () => {
  test('there are enough vectors, with unique names, covering every opcode and error code', () => {
    const names = FILE.vectors.map((v) => v.name);
    assert.ok(names.length >= 20);
    assert.equal(new Set(names).size, names.length);
    const opcodes = new Set(FILE.vectors.flatMap((v) => v.frames.map((f) => f.opcode)));
    for (const op of Object.values(V1Opcode)) assert.ok(opcodes.has(op), `no vector decodes opcode ${op}`);
    const errors = new Set(FILE.vectors.map((v) => v.error));
    for (const code of [1002, 1007, 1009]) assert.ok(errors.has(code), `no vector expects ${code}`);
    assert.ok(FILE.vectors.some((v) => v.framing === 'len' && v.error === null));
    assert.ok(FILE.vectors.some((v) => v.framing === 'len' && v.error !== null));
  });

  FILE.vectors.forEach((v, index) => {
    test(`${v.name}: ${v.note}`, () => {
      const input = Buffer.from(v.input, 'hex');
      assert.equal(input.toString('hex'), v.input, 'input is valid hex');
      const limits = limitsOf(v);
      for (const { how, chunks } of chunkings(input, 1000 + index)) {
        const out = v.framing === 'v1' ? runV1(chunks, limits, FILE.stamp) : runLen(chunks, limits.maxFrameBytes);
        assert.deepEqual(out.frames, v.frames, `${v.name} (${how}): frames`);
        assert.equal(out.error, v.error, `${v.name} (${how}): error close code`);
        if (v.echo !== null) assert.equal(out.echo, v.echo, `${v.name} (${how}): echo bytes`);
        assert.ok(out.maxBuffered <= 4 + limits.maxFrameBytes, `${v.name} (${how}): buffered ${out.maxBuffered}`);
      }
    });
  });

  test('data vectors have an echo, error vectors have none', () => {
    for (const v of FILE.vectors) assert.equal(v.echo === null, v.error !== null, v.name);
  });
});

/** Parses the `vector` blocks of docs/PROTOCOL.md back into the JSON form. */
function parseDocVectors(doc: string): { defaults: { limits: Record<string, number>; stamp: unknown }; vectors: Vector[] } {
  const parseLimits = (s: string): Record<string, number> =>
    Object.fromEntries(
      s
        .trim()
        .split(/\s+/)
        .map((kv) => {
          const [k, val] = kv.split('=');
          return [k as string, Number(val)];
        }),
    );
  const fields = (block: string): Array<[string, string]> => {
    const out: Array<[string, string]> = [];
    for (const line of block.split('\n')) {
      if (line.trim() === '' || line.trim().startsWith('#')) continue;
      const m = /^([a-z]+):\s*(.*)$/.exec(line);
      if (m !== null) out.push([m[1] as string, m[2] as string]);
      else {
        const last = out[out.length - 1];
        assert.ok(last !== undefined && /^\s/.test(line), `stray line in vector block: ${line}`);
        last[1] += ' ' + line.trim();
      }
    }
    return out;
  };
  const hex = (s: string): string => {
    const v = s.replace(/\(.*\)\s*$/, '').trim();
    if (v === '-') return '';
    assert.match(v, /^[0-9a-f\s]*$/, `not hex: ${v}`);
    return v.replace(/\s+/g, '');
  };
  const OPS: Record<string, number | undefined> = { TEXT: 1, BINARY: 2, HELLO: 3, CLOSE: 8, PING: 9, PONG: 10, DATA: undefined };

  const d = /```vector-defaults\n([\s\S]*?)```/.exec(doc);
  assert.ok(d !== null, 'vector-defaults block missing');
  const df = Object.fromEntries(fields(d[1] as string));
  const defaults = { limits: parseLimits(df['limits'] as string), stamp: JSON.parse(df['stamp'] as string) as unknown };

  const vectors: Vector[] = [];
  const re = /^#### (\S+)\n\n([^\n]+)\n\n```vector\n([\s\S]*?)```/gm;
  for (let m = re.exec(doc); m !== null; m = re.exec(doc)) {
    const v: Vector = {
      name: m[1] as string,
      framing: 'v1',
      note: (m[2] as string).replace(/\.$/, ''),
      input: '',
      frames: [],
      error: null,
      echo: null,
    };
    let frame: VectorFrame | undefined;
    for (const [k, val] of fields(m[3] as string)) {
      switch (k) {
        case 'framing':
          v.framing = val.trim() as 'v1' | 'len';
          break;
        case 'limits':
          v.limits = parseLimits(val) as Vector['limits'];
          break;
        case 'input':
          v.input = hex(val);
          break;
        case 'frame': {
          const op = val.trim();
          assert.ok(op in OPS, `unknown frame kind ${op}`);
          frame = OPS[op] === undefined ? { payload: '' } : { opcode: OPS[op] as number, payload: '' };
          v.frames.push(frame);
          break;
        }
        case 'header':
          assert.ok(frame !== undefined);
          // Key order as in the JSON: opcode, header, payload.
          Object.assign(frame, { header: hex(val), payload: frame.payload });
          delete (frame as { payload?: string }).payload;
          frame.payload = '';
          break;
        case 'payload':
          assert.ok(frame !== undefined);
          frame.payload = hex(val);
          break;
        case 'error':
          v.error = Number(val);
          break;
        case 'echo':
          v.echo = hex(val);
          break;
        default:
          assert.fail(`unknown key ${k} in vector ${v.name}`);
      }
    }
    vectors.push(v);
  }
  return { defaults, vectors };
}

describe('docs/PROTOCOL.md and test/vectors/v1.json agree', () => {
  const parsed = parseDocVectors(DOC);

  test('defaults (limits and srv stamp)', () => {
    assert.deepEqual(parsed.defaults.limits, FILE.defaultLimits);
    assert.deepEqual(parsed.defaults.stamp, FILE.stamp);
  });

  test('the same vectors, in the same order, with the same bytes and expectations', () => {
    assert.deepEqual(
      parsed.vectors.map((v) => v.name),
      FILE.vectors.map((v) => v.name),
    );
    for (const [i, dv] of parsed.vectors.entries()) {
      const jv = FILE.vectors[i] as Vector;
      const def = jv.framing === 'v1' ? FILE.defaultLimits : { maxFrameBytes: FILE.defaultLimits.maxFrameBytes };
      assert.deepEqual(
        { ...dv, note: dv.note.toLowerCase(), limits: dv.limits },
        { ...jv, note: jv.note.toLowerCase(), limits: jv.limits ?? def },
        `vector ${jv.name}`,
      );
    }
  });

  test('the drift check itself notices a changed byte', () => {
    const tampered = DOC.replace('input:   00000006 01 68656c6c6f', 'input:   00000006 01 68656c6c6e');
    assert.notEqual(tampered, DOC);
    const v = parseDocVectors(tampered).vectors.find((x) => x.name === 'v1-text');
    assert.notEqual(v?.input, FILE.vectors.find((x) => x.name === 'v1-text')?.input);
  });
});

describe('encoders', () => {
  const limits: V1Limits = { maxFrameBytes: 1 << 20, maxHeaderBytes: 4096 };
  const decodeOne = (bytes: Buffer): VectorFrame[] => runV1([bytes], limits, FILE.stamp).frames;

  test('encodeFrame round trips through V1Decoder, with and without a header', () => {
    const rand = rng(7);
    for (let i = 0; i < 200; i++) {
      const opcode = ([V1Opcode.BINARY, V1Opcode.PING, V1Opcode.PONG] as const)[i % 3] as V1Opcode;
      // Control payloads are at most 125 bytes (MAX_CONTROL_PAYLOAD).
      const len = Math.floor(rand() * (opcode === V1Opcode.BINARY ? 300 : 126));
      const payload = Buffer.from(Array.from({ length: len }, () => Math.floor(rand() * 256)));
      assert.deepEqual(decodeOne(encodeFrame(opcode, payload)), [{ opcode, payload: payload.toString('hex') }]);
      const header = Buffer.from(JSON.stringify({ id: `m${i}`, n: len }));
      const withHeader = encodeFrame(V1Opcode.BINARY, payload, header);
      assert.equal(withHeader.readUInt32BE(0), withHeader.length - 4);
      assert.deepEqual(decodeOne(withHeader), [
        { opcode: V1Opcode.BINARY, header: header.toString('hex'), payload: payload.toString('hex') },
      ]);
    }
  });

  test('encodeFrame produces the documented layout', () => {
    assert.equal(encodeFrame(V1Opcode.TEXT, Buffer.from('hello')).toString('hex'), '000000060168656c6c6f');
    assert.equal(encodeFrame(V1Opcode.BINARY, Buffer.from([1]), Buffer.from('{}')).toString('hex'), '0000000682' + '0002' + '7b7d' + '01');
    assert.equal(encodeFrame(V1Opcode.BINARY, Buffer.alloc(0)).toString('hex'), '0000000102');
  });

  test('encodeBody is encodeFrame without the length prefix, and parseBody reads it back', () => {
    const header = Buffer.from('{"id":"x"}');
    const payload = Buffer.from('payload');
    const body = encodeBody(V1Opcode.TEXT, payload, header);
    assert.deepEqual(body, encodeFrame(V1Opcode.TEXT, payload, header).subarray(4));
    const p = parseBody(body, 0, body.length, limits);
    assert.equal(p.opcode, V1Opcode.TEXT);
    assert.equal(body.toString('utf8', p.headerStart, p.headerEnd), '{"id":"x"}');
    assert.equal(body.toString('utf8', p.payloadStart), 'payload');
    const plain = encodeBody(V1Opcode.BINARY, payload);
    const q = parseBody(plain, 0, plain.length, limits);
    assert.deepEqual(q, { opcode: V1Opcode.BINARY, headerStart: -1, headerEnd: -1, payloadStart: 1 });
  });

  test('parseBody on an empty body is 1002', () => {
    assert.throws(
      () => parseBody(Buffer.alloc(0), 0, 0, limits),
      (e: unknown) => e instanceof ProtocolError && e.closeCode === 1002,
    );
  });

  test('encodeClose / decodeClose round trip', () => {
    for (const [code, reason] of [
      [1000, ''],
      [1001, 'server shutting down'],
      [4999, 'é€😀'],
      [3000, 'x'],
    ] as const) {
      const frame = encodeClose(code, reason);
      const frames = decodeOne(frame);
      assert.equal(frames.length, 1);
      assert.equal(frames[0]?.opcode, V1Opcode.CLOSE);
      const payload = Buffer.from(frames[0]?.payload ?? '', 'hex');
      assert.deepEqual(decodeClose(payload, 0, payload.length), { code, reason });
    }
    assert.deepEqual(decodeClose(Buffer.alloc(0), 0, 0), { code: 1005, reason: '' });
  });

  test('encodeClose cuts the reason to 123 bytes without splitting a character', () => {
    const ascii = encodeClose(1000, 'a'.repeat(200));
    assert.equal(ascii.length, 4 + 1 + 2 + 123);
    const euro = encodeClose(1000, '€'.repeat(100)); // 3 bytes each: 41 fit in 123
    const { reason } = decodeClose(euro, 5, euro.length);
    assert.equal(reason, '€'.repeat(41));
    const emoji = encodeClose(1000, '😀'.repeat(40)); // 4 bytes each: 30 fit (120 bytes)
    assert.equal(decodeClose(emoji, 5, emoji.length).reason, '😀'.repeat(30));
    assert.equal(decodeOne(emoji).length, 1, 'the cut reason is still valid UTF-8');
  });

  test('encodeLen round trips through LenDecoder', () => {
    const rand = rng(11);
    const payloads = Array.from({ length: 50 }, () =>
      Buffer.from(Array.from({ length: Math.floor(rand() * 100) }, () => Math.floor(rand() * 256))),
    );
    const stream = Buffer.concat(payloads.map((p) => encodeLen(p)));
    for (const { how, chunks } of [
      { how: 'whole', chunks: [stream] },
      { how: 'random', chunks: randomCuts(stream, rand) },
    ]) {
      const out = runLen(chunks, 100);
      assert.deepEqual(
        out.frames.map((f) => f.payload),
        payloads.map((p) => p.toString('hex')),
        how,
      );
      assert.equal(out.echo, stream.toString('hex'), how);
    }
  });
});

describe('limits: bounds before bytes', () => {
  const limits: V1Limits = { maxFrameBytes: 1000, maxHeaderBytes: 16 };
  const expectCode = (code: number) => (e: unknown) => e instanceof ProtocolError && e.closeCode === code;

  test('a frame announcing maxFrameBytes + 1 fails with 1009 on its 4-byte prefix; nothing is buffered', () => {
    const dec = new V1Decoder({ onV1Frame: () => assert.fail('no frame expected') }, limits);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(limits.maxFrameBytes + 1);
    assert.throws(() => dec.push(prefix), expectCode(1009));
    assert.equal(dec.bufferedBytes, 0);
    dec.push(Buffer.alloc(2000)); // ignored once stopped
    assert.equal(dec.bufferedBytes, 0);
  });

  test('the same, with the prefix arriving one byte at a time', () => {
    const dec = new V1Decoder({ onV1Frame: () => assert.fail('no frame expected') }, limits);
    const prefix = Buffer.from('000003e9', 'hex'); // 1001
    for (let i = 0; i < 3; i++) {
      dec.push(prefix.subarray(i, i + 1));
      assert.equal(dec.bufferedBytes, i + 1, 'only the partial prefix is held');
    }
    assert.throws(() => dec.push(prefix.subarray(3)), expectCode(1009));
    assert.equal(dec.bufferedBytes, 0);
  });

  test('len: a frame announcing maxFrameBytes + 1 fails with 1009 on its prefix', () => {
    const dec = new LenDecoder(1000);
    assert.throws(() => dec.push(Buffer.from('000003e9', 'hex'), { onFrame: () => assert.fail('no frame') }), expectCode(1009));
    assert.equal(dec.bufferedBytes, 0);
  });

  test('LengthPrefixSplitter refuses a body under minBody (1002) before calling the sink', () => {
    const s = new LengthPrefixSplitter(10, 1);
    assert.throws(() => s.push(Buffer.from('0000000001', 'hex'), { onFrame: () => assert.fail('no frame') }), expectCode(1002));
    const got: number[] = [];
    new LengthPrefixSplitter(10, 0).push(Buffer.from('00000000', 'hex'), { onFrame: (_b, f, b, e) => got.push(f, b, e) });
    assert.deepEqual(got, [0, 4, 4]);
  });

  test('a frame of exactly maxFrameBytes is accepted', () => {
    let got = 0;
    const dec = new V1Decoder({ onV1Frame: (_op, _b, _f, _hs, _he, ps, end) => (got = end - ps) }, limits);
    dec.push(encodeFrame(V1Opcode.BINARY, Buffer.alloc(limits.maxFrameBytes - 1)));
    assert.equal(got, limits.maxFrameBytes - 1);
  });

  test('a header over maxHeaderBytes is 1009, a header of exactly maxHeaderBytes is accepted', () => {
    const ok = Buffer.from('{"id":"123456789"}'.slice(0, 16 - 2) + '"}');
    assert.equal(ok.length, 16);
    assert.doesNotThrow(() => JSON.parse(ok.toString()));
    const frames: number[] = [];
    new V1Decoder({ onV1Frame: (op) => frames.push(op) }, limits).push(encodeFrame(V1Opcode.TEXT, Buffer.from('x'), ok));
    assert.deepEqual(frames, [V1Opcode.TEXT]);
    const big = Buffer.from('{"id":"12345678"}'); // maxHeaderBytes + 1
    assert.equal(big.length, 17);
    const dec = new V1Decoder({ onV1Frame: () => assert.fail('no frame expected') }, limits);
    assert.throws(() => dec.push(encodeFrame(V1Opcode.TEXT, Buffer.from('x'), big)), expectCode(1009));
  });

  test('bufferedBytes never exceeds 4 + maxFrameBytes while frames of every size arrive in pieces', () => {
    const rand = rng(42);
    let count = 0;
    const dec = new V1Decoder({ onV1Frame: () => count++ }, limits);
    const frames: Buffer[] = [];
    for (let i = 0; i < 300; i++) frames.push(encodeFrame(V1Opcode.BINARY, Buffer.alloc(Math.floor(rand() * limits.maxFrameBytes))));
    frames.push(encodeFrame(V1Opcode.BINARY, Buffer.alloc(limits.maxFrameBytes - 1)));
    let max = 0;
    for (const c of randomCuts(Buffer.concat(frames), rand)) {
      dec.push(c);
      max = Math.max(max, dec.bufferedBytes);
      assert.ok(dec.bufferedBytes <= 4 + limits.maxFrameBytes, `buffered ${dec.bufferedBytes}`);
    }
    assert.equal(count, frames.length);
    assert.equal(dec.bufferedBytes, 0);
    assert.ok(max > limits.maxFrameBytes / 2, 'large partial frames were actually buffered');
  });
});

describe('read buffers are reused (direct socket I/O)', () => {
  test('a length prefix split across reads survives the first read buffer being overwritten', () => {
    const frames: string[] = [];
    const decoder = new LenDecoder(1024);
    const sink = { onFrame: (buf: Buffer, _f: number, s: number, e: number): void => void frames.push(buf.toString('latin1', s, e)) };
    const wire = Buffer.concat([encodeLen(Buffer.from('first')), encodeLen(Buffer.from('second'))]);
    const cut = 4 + 5 + 2; // the first frame and half of the second one's length
    const read = Buffer.from(wire.subarray(0, cut));
    decoder.push(read, sink);
    read.fill(0xee); // the shared read buffer takes the next read of some other socket
    decoder.push(Buffer.from(wire.subarray(cut)), sink);
    assert.deepEqual(frames, ['first', 'second']);
  });
});
