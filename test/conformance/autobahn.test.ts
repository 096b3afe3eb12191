/**
 * RFC 6455 conformance, the Autobahn|Testsuite way (fuzzingclient sections 1–7, 9, 10; 12–13
 * are permessage-deflate, which we never negotiate), plus the opening handshake and our
 * message-size limit. Autobahn itself cannot run here (Python 2), so `test-helpers/ws-raw.ts`
 * plays the fuzzing client: hand-made handshake, arbitrary masked (or invalid) frames in chosen
 * write chopping, and an exact record of the frames and the TCP close that come back.
 *
 * Every case is graded as Autobahn grades it: the received messages/pongs must equal the
 * expected ones ("OK"; "NON-STRICT" where Autobahn tolerates late failure), and the close
 * must be right: a close frame with an expected code, then the SERVER closes the TCP
 * connection. We are stricter than Autobahn in one way: a failed connection must carry a
 * close frame with the right code (Autobahn also accepts a bare TCP drop there).
 *
 * The same table runs against a reference server built with `ws` (informational) and a last
 * test prints where the two differ.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { createEchoServer, type EchoServer } from '../../src/index.js';
import {
  Op,
  RawWsClient,
  clientFrame,
  closePayload,
  type Chop,
  type FrameSpec,
  type HandshakeOptions,
  type HttpResponse,
} from '../../test-helpers/ws-raw.js';

/** maxFrameBytes for our server and maxPayload for ws: room for the 1 MiB 9.x messages. */
const LIMIT = 2 * 1024 * 1024;
/** Bound on how long a misbehaving server may keep a case waiting (never reached when it behaves). */
const DEADLINE = 1500;
/** Autobahn's wait before the next chop in 6.4.3/6.4.4 (it uses 1 s); a miss only marks NON-STRICT. */
const FAIL_FAST_WAIT = 400;

// ---------------------------------------------------------------------------------------------
// Case model
// ---------------------------------------------------------------------------------------------

type Kind = 'text' | 'binary' | 'pong';
interface Expected {
  readonly kind: Kind;
  readonly payload: Buffer;
}
type CloseCodeExpect = number | 'empty';

interface Ctx {
  /** Autobahn's NON-STRICT: the right failure, but later than it should have been. */
  nonStrict: string | undefined;
  /** Extra failure found by the script itself. */
  problems: string[];
  /** Bytes the server has queued for this client and not yet handed to the kernel (public API of each server). */
  serverQueued(): number;
}

interface Case {
  readonly id: string;
  readonly title: string;
  run(c: RawWsClient, ctx: Ctx): Promise<void>;
  /** Messages and pongs expected before the server's close frame. */
  readonly frames: readonly Expected[];
  /** Acceptable codes in the server's close frame. */
  readonly close: readonly CloseCodeExpect[];
  /** Who starts the closing handshake: `us` (the runner sends 1000 unless the script sent a close) or the server (failing the connection). */
  readonly by: 'us' | 'server';
  /** Autobahn accepts a late failure here (grades it NON-STRICT). */
  readonly allowNonStrict?: boolean;
  /** Implementation-defined in Autobahn: reported, never failed. */
  readonly informational?: boolean;
}

const text = (p: string | Buffer): Expected => ({ kind: 'text', payload: Buffer.from(p) });
const binary = (p: Buffer): Expected => ({ kind: 'binary', payload: p });
const pong = (p: string | Buffer = ''): Expected => ({ kind: 'pong', payload: Buffer.from(p) });
const h = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

const T = (payload: string | Buffer, fin = true, rsv = 0): FrameSpec => ({ opcode: Op.TEXT, payload, fin, rsv });
const Bn = (payload: Buffer, fin = true, rsv = 0): FrameSpec => ({ opcode: Op.BINARY, payload, fin, rsv });
const C = (payload: string | Buffer, fin = true): FrameSpec => ({ opcode: Op.CONTINUATION, payload, fin });
const Ping = (payload: string | Buffer = '', rsv = 0): FrameSpec => ({ opcode: Op.PING, payload, rsv });
const Pong = (payload: string | Buffer = ''): FrameSpec => ({ opcode: Op.PONG, payload });
const Close = (payload: Buffer = Buffer.alloc(0)): FrameSpec => ({ opcode: Op.CLOSE, payload });

const cases: Case[] = [];
const add = (c: Case): void => {
  cases.push(c);
};
/** A case that sends `frames` (chopped as asked) and expects echoes, then a normal close. */
const echoCase = (id: string, title: string, send: FrameSpec[], frames: Expected[], chop: Chop = 'whole', perFrame = false): void =>
  add({ id, title, frames, close: [1000], by: 'us', run: (c) => c.send(send, chop, perFrame) });
/** A case that sends `send` and expects `before`, then the server failing the connection with `code`. */
const failCase = (
  id: string,
  title: string,
  send: FrameSpec[],
  code: number | number[],
  before: Expected[] = [],
  chop: Chop = 'whole',
  perFrame = false,
): void =>
  add({ id, title, frames: before, close: Array.isArray(code) ? code : [code], by: 'server', run: (c) => c.send(send, chop, perFrame) });

// 1.x Framing: text and binary payloads of every length class, whole and chopped ----------------
const SIZES = [0, 125, 126, 127, 128, 65535, 65536];
SIZES.forEach((n, i) => {
  const t = '*'.repeat(n);
  const b = Buffer.alloc(n, 0xfe);
  echoCase(`1.1.${i + 1}`, `text, ${n} bytes`, [T(t)], [text(t)]);
  echoCase(`1.2.${i + 1}`, `binary, ${n} bytes`, [Bn(b)], [binary(b)]);
  // 64 KiB one byte per event-loop turn would cost seconds: split the header and the first
  // payload bytes byte-wise, the rest in 997-byte chops (every mask phase, as Autobahn's 1.1.8).
  const chop: Chop = n <= 128 ? 'byte' : { headBytes: 64, then: 997 };
  const how = n <= 128 ? '1-byte writes' : 'header and first bytes 1 byte per write, then 997-byte chops';
  echoCase(`1.1.${i + 1}/byte`, `text, ${n} bytes, ${how}`, [T(t)], [text(t)], chop);
  echoCase(`1.2.${i + 1}/byte`, `binary, ${n} bytes, ${how}`, [Bn(b)], [binary(b)], chop);
});
echoCase('1.1.8', 'text, 65536 bytes, 997-byte chops', [T('*'.repeat(65536))], [text('*'.repeat(65536))], 997);
echoCase('1.2.8', 'binary, 65536 bytes, 997-byte chops', [Bn(Buffer.alloc(65536, 0xfe))], [binary(Buffer.alloc(65536, 0xfe))], 997);

// 2.x Pings and pongs --------------------------------------------------------------------------
const P8 = h('00 ff fe fd fc fb 00 ff');
echoCase('2.1', 'ping, no payload', [Ping()], [pong()]);
echoCase('2.2', 'ping, text payload', [Ping('Hello, world!')], [pong('Hello, world!')]);
echoCase('2.3', 'ping, binary payload', [Ping(P8)], [pong(P8)]);
echoCase('2.4', 'ping, 125-byte payload', [Ping(Buffer.alloc(125, 0xfe))], [pong(Buffer.alloc(125, 0xfe))]);
failCase('2.5', 'ping, 126-byte payload', [Ping(Buffer.alloc(126, 0xfe))], 1002);
echoCase('2.6', 'ping, 125-byte payload, 1-byte writes', [Ping(Buffer.alloc(125, 0xfe))], [pong(Buffer.alloc(125, 0xfe))], 'byte');
echoCase('2.7', 'unsolicited pong, no payload: ignored', [Pong()], []);
echoCase('2.8', 'unsolicited pong with payload: ignored', [Pong('unsolicited pong payload')], []);
echoCase('2.9', 'unsolicited pong, then ping', [Pong('unsolicited pong payload'), Ping('ping payload')], [pong('ping payload')]);
const tenPings = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
echoCase(
  '2.10',
  '10 pings in a row',
  tenPings.map((p) => Ping(p)),
  tenPings.map((p) => pong(p)),
);
echoCase(
  '2.11',
  '10 pings, 1-byte writes',
  tenPings.map((p) => Ping(p)),
  tenPings.map((p) => pong(p)),
  'byte',
);

// 3.x Reserved bits ----------------------------------------------------------------------------
const HW = 'Hello, world!';
failCase('3.1', 'text with RSV1', [T(HW, true, 4)], 1002);
failCase('3.2', 'text, text with RSV2, ping', [T(HW), T(HW, true, 2), Ping(HW)], 1002, [text(HW)]);
failCase('3.3', 'text, text with RSV3, ping; one write per frame', [T(HW), T(HW, true, 3), Ping(HW)], 1002, [text(HW)], 'whole', true);
failCase('3.4', 'text, text with RSV4, ping; 1-byte writes', [T(HW), T(HW, true, 4), Ping(HW)], 1002, [text(HW)], 'byte');
failCase('3.5', 'binary with RSV5', [Bn(P8, true, 5)], 1002);
failCase('3.6', 'ping with RSV6', [Ping(HW, 6)], 1002);
failCase('3.7', 'close with RSV7', [{ ...Close(closePayload(1000)), rsv: 7 }], 1002);
for (const rsv of [1, 2, 4]) {
  failCase(`3.x/bin-${rsv}`, `binary with RSV bits ${rsv.toString(2).padStart(3, '0')}`, [Bn(P8, true, rsv)], 1002);
  failCase(`3.x/ping-${rsv}`, `ping with RSV bits ${rsv.toString(2).padStart(3, '0')}`, [Ping(HW, rsv)], 1002);
  failCase(
    `3.x/after-${rsv}`,
    `binary echo, then text with RSV bits ${rsv.toString(2).padStart(3, '0')}`,
    [Bn(P8), T(HW, true, rsv)],
    1002,
    [binary(P8)],
  );
}
failCase('3.x/cont', 'continuation frame with RSV1', [T('frag1', false), { ...C('frag2'), rsv: 4 }], 1002);

// 4.x Opcodes ----------------------------------------------------------------------------------
const RES = 'reserved opcode payload';
const opcodeCases = (section: string, ops: number[]): void => {
  const [a, b, c, d, e] = ops as [number, number, number, number, number];
  failCase(`${section}.1`, `reserved opcode ${a}`, [{ opcode: a }], 1002);
  failCase(`${section}.2`, `reserved opcode ${b} with payload`, [{ opcode: b, payload: RES }], 1002);
  failCase(`${section}.3`, `text, reserved opcode ${c}, ping`, [T(HW), { opcode: c }, Ping(HW)], 1002, [text(HW)]);
  failCase(`${section}.4`, `text, reserved opcode ${d} with payload, ping`, [T(HW), { opcode: d, payload: RES }, Ping(HW)], 1002, [
    text(HW),
  ]);
  failCase(
    `${section}.5`,
    `text, reserved opcode ${e} with payload, ping; 1-byte writes`,
    [T(HW), { opcode: e, payload: RES }, Ping(HW)],
    1002,
    [text(HW)],
    'byte',
  );
};
opcodeCases('4.1', [3, 4, 5, 6, 7]);
opcodeCases('4.2', [11, 12, 13, 14, 15]);

// 5.x Fragmentation ----------------------------------------------------------------------------
failCase('5.1', 'ping in 2 fragments', [{ opcode: Op.PING, payload: 'fragment1', fin: false }, C('fragment2')], 1002);
failCase('5.2', 'pong in 2 fragments', [{ opcode: Op.PONG, payload: 'fragment1', fin: false }, C('fragment2')], 1002);
const twoFrags = [T('fragment1', false), C('fragment2')];
echoCase('5.3', 'text in 2 fragments', twoFrags, [text('fragment1fragment2')]);
echoCase('5.4', 'text in 2 fragments, 1-byte writes', twoFrags, [text('fragment1fragment2')], 'byte');
echoCase('5.5', 'text in 2 fragments, one write per frame', twoFrags, [text('fragment1fragment2')], 'whole', true);
const withPing = [T('fragment1', false), Ping('ping payload'), C('fragment2')];
echoCase('5.6', 'text in 2 fragments, ping in between', withPing, [pong('ping payload'), text('fragment1fragment2')]);
echoCase(
  '5.7',
  'text in 2 fragments, ping in between, 1-byte writes',
  withPing,
  [pong('ping payload'), text('fragment1fragment2')],
  'byte',
);
echoCase(
  '5.8',
  'text in 2 fragments, ping in between, one write per frame',
  withPing,
  [pong('ping payload'), text('fragment1fragment2')],
  'whole',
  true,
);
const contFirst = [C('non-continuation payload'), T(HW)];
failCase('5.9', 'continuation (FIN) without a message, then text', contFirst, 1002);
failCase('5.10', 'same, 1-byte writes', contFirst, 1002, [], 'byte');
failCase('5.11', 'same, one write per frame', contFirst, 1002, [], 'whole', true);
const contFirstNoFin = [C('non-continuation payload', false), T(HW)];
failCase('5.12', 'continuation (no FIN) without a message, then text', contFirstNoFin, 1002);
failCase('5.13', 'same, 1-byte writes', contFirstNoFin, 1002, [], 'byte');
failCase('5.14', 'same, one write per frame', contFirstNoFin, 1002, [], 'whole', true);
failCase(
  '5.15',
  'text in 2 fragments, then a stray continuation, then text',
  [T('fragment1', false), C('fragment2'), C('fragment3', false), T('fragment4')],
  1002,
  [text('fragment1fragment2')],
);
failCase(
  '5.16',
  '2x: stray continuation (no FIN), text in 2 fragments',
  [C('fragment1', false), T('fragment2', false), C('fragment3'), C('fragment1', false), T('fragment2', false), C('fragment3')],
  1002,
);
failCase(
  '5.17',
  '2x: stray continuation (FIN), text in 2 fragments',
  [C('fragment1'), T('fragment2', false), C('fragment3'), C('fragment1'), T('fragment2', false), C('fragment3')],
  1002,
);
failCase('5.18', 'text fragment, then a new text frame instead of a continuation', [T('fragment1', false), T('fragment2')], 1002);
for (const [id, chop] of [
  ['5.19', 'whole'],
  ['5.20', 'byte'],
] as const) {
  add({
    id,
    title: `text in 5 fragments with 2 pings, pauses between frames${chop === 'byte' ? ', 1-byte writes' : ''}`,
    frames: [pong('pongme 1!'), pong('pongme 2!'), text('fragment1fragment2fragment3fragment4fragment5')],
    close: [1000],
    by: 'us',
    async run(c, ctx) {
      // Each pause lasts until the server has answered the ping: the fragments before it were
      // surely read on their own, as Autobahn's 1-second pauses intend.
      await c.send([T('fragment1', false), C('fragment2', false), Ping('pongme 1!')], chop, true);
      if (!(await c.waitReplies(1, DEADLINE))) ctx.problems.push('no pong for the first ping mid-message');
      await c.send([C('fragment3', false), C('fragment4', false), Ping('pongme 2!')], chop, true);
      if (!(await c.waitReplies(2, DEADLINE))) ctx.problems.push('no pong for the second ping mid-message');
      await c.send([C('fragment5')], chop, true);
    },
  });
}
const MIXED = 'Hello-µ@ßöäüàá-UTF-8!!';
const mixedBytes = Buffer.from(MIXED);
echoCase(
  '5.x/1-byte-frags',
  'text in 1-byte fragments',
  [...mixedBytes].map((b, i) => (i === 0 ? T(Buffer.from([b]), false) : C(Buffer.from([b]), i === mixedBytes.length - 1))),
  [text(MIXED)],
);
{
  const big = Buffer.alloc(4 * 65536);
  for (let i = 0; i < big.length; i++) big[i] = 0x41 + (i % 26);
  const frags = (op: number): FrameSpec[] =>
    [0, 1, 2, 3].map((k) => ({ opcode: k === 0 ? op : Op.CONTINUATION, payload: big.subarray(k * 65536, (k + 1) * 65536), fin: k === 3 }));
  echoCase('5.x/64k-frags-text', 'text of 256 KiB in 65536-byte fragments', frags(Op.TEXT), [text(big)]);
  echoCase('5.x/64k-frags-binary', 'binary of 256 KiB in 65536-byte fragments, 997-byte chops', frags(Op.BINARY), [binary(big)], 997);
  echoCase(
    '5.x/64k-frags-ping',
    'binary in 65536-byte fragments, pings between every fragment',
    frags(Op.BINARY).flatMap((f, i) => (i < 3 ? [f, Ping(`p${i}`)] : [f])),
    [pong('p0'), pong('p1'), pong('p2'), binary(big)],
  );
}
echoCase(
  '5.x/empty-binary-frags',
  'binary in 3 empty fragments',
  [Bn(Buffer.alloc(0), false), C('', false), C('')],
  [binary(Buffer.alloc(0))],
);

// 6.x UTF-8 ------------------------------------------------------------------------------------
echoCase('6.1.1', 'empty text', [T('')], [text('')]);
echoCase('6.1.2', 'text in 3 empty fragments', [T('', false), C('', false), C('')], [text('')]);
echoCase(
  '6.1.3',
  'empty, non-empty, empty fragment',
  [T('', false), C('middle frame payload', false), C('')],
  [text('middle frame payload')],
);
echoCase('6.2.1', 'valid UTF-8 in one frame', [T(MIXED)], [text(MIXED)]);
echoCase(
  '6.2.2',
  'valid UTF-8 in 2 fragments, split on a code point',
  [T(mixedBytes.subarray(0, 12), false), C(mixedBytes.subarray(12))],
  [text(MIXED)],
);
echoCase(
  '6.2.3',
  'valid UTF-8 in 1-byte fragments',
  [...mixedBytes].map((b, i) => (i === 0 ? T(Buffer.from([b]), false) : C(Buffer.from([b]), i === mixedBytes.length - 1))),
  [text(MIXED)],
);
const KOSME = h('ce ba e1 bd b9 cf 83 ce bc ce b5');
echoCase(
  '6.2.4',
  'valid UTF-8 (κόσμε) in 1-byte fragments',
  [...KOSME].map((b, i) => (i === 0 ? T(Buffer.from([b]), false) : C(Buffer.from([b]), i === KOSME.length - 1))),
  [text(KOSME)],
);
const INVALID = Buffer.concat([KOSME, h('ed a0 80'), Buffer.from('edited')]);
failCase('6.3.1', 'invalid UTF-8 (surrogate) in one frame', [T(INVALID)], 1007);
failCase(
  '6.3.2',
  'invalid UTF-8 (surrogate) in 1-byte fragments',
  [...INVALID].map((b, i) => (i === 0 ? T(Buffer.from([b]), false) : C(Buffer.from([b]), i === INVALID.length - 1))),
  1007,
);

/** 6.4.1/6.4.2: 3 fragments; the 2nd makes the text invalid and must be refused at once. */
const failFastFrames = (id: string, title: string, p1: Buffer, p2: Buffer, p3: Buffer): void =>
  add({
    id,
    title,
    frames: [pong('sync')],
    close: [1007],
    by: 'server',
    async run(c, ctx) {
      // The ping proves fragment 1 was read and accepted (Autobahn: "timeout A").
      await c.send([T(p1, false), Ping('sync')]);
      await c.waitReplies(1, DEADLINE);
      if (c.closeFrame !== undefined) {
        ctx.problems.push('the valid first fragment was refused');
        return;
      }
      await c.send([C(p2, false)]);
      if (!(await c.waitCloseFrame(FAIL_FAST_WAIT))) {
        ctx.nonStrict = 'no close after the invalid fragment; sent the last fragment';
        await c.send([C(p3)]);
      }
    },
  });
failFastFrames('6.4.1', 'fail fast: 2nd of 3 fragments has a code point > U+10FFFF', KOSME, h('f4 90 80 80'), Buffer.from('edited'));
failFastFrames(
  '6.4.2',
  'fail fast: invalid sequence split across fragments (F4 | 90)',
  Buffer.concat([KOSME, h('f4')]),
  h('90'),
  h('80 80 65 64 69 74 65 64'),
);

/** 6.4.3/6.4.4: the same, but 3 chops of ONE frame (Autobahn grades a late failure NON-STRICT). */
const failFastChops = (id: string, title: string, p1: Buffer, p2: Buffer, p3: Buffer): void =>
  add({
    id,
    title,
    frames: [],
    close: [1007],
    by: 'server',
    allowNonStrict: true,
    async run(c, ctx) {
      const frame = clientFrame(T(Buffer.concat([p1, p2, p3])));
      const headLen = frame.length - p1.length - p2.length - p3.length;
      const c1 = headLen + p1.length;
      const c2 = c1 + p2.length;
      await c.send([frame.subarray(0, c1)]);
      if (await c.waitCloseFrame(FAIL_FAST_WAIT)) {
        ctx.problems.push('the valid first chop was refused');
        return;
      }
      await c.send([frame.subarray(c1, c2)]);
      if (!(await c.waitCloseFrame(FAIL_FAST_WAIT))) {
        ctx.nonStrict = 'no close after the invalid chop; the failure came only with the complete frame';
        await c.send([frame.subarray(c2)]);
      }
    },
  });
failFastChops(
  '6.4.3',
  'fail fast within a frame: 2nd of 3 chops has a code point > U+10FFFF',
  KOSME,
  h('f4 90 80 80'),
  Buffer.from('edited'),
);
failFastChops(
  '6.4.4',
  'fail fast within a frame: F4 | 90 split across chops',
  Buffer.concat([KOSME, h('f4')]),
  h('90'),
  h('80 80 65 64 69 74 65 64'),
);

/** The brief's 6.4: the FIRST fragment is invalid; the close must come before fragment 2 is sent. */
for (const [id, chop] of [
  ['6.4.5', 'whole'],
  ['6.4.6', 'byte'],
] as const) {
  add({
    id,
    title: `fail fast: invalid first fragment refused before the rest is sent${chop === 'byte' ? ', 1-byte writes' : ''}`,
    frames: [],
    close: [1007],
    by: 'server',
    async run(c, ctx) {
      await c.send([T(Buffer.concat([KOSME, h('ed a0 80')]), false)], chop);
      if (!(await c.waitCloseFrame(DEADLINE))) {
        ctx.problems.push('no close frame after an invalid first fragment (fragment 2 was never sent)');
        await c.send([C('edited')]);
      }
    },
  });
}

// 6.5+ — the UTF-8 decoder vectors (Markus Kuhn's UTF-8-test.txt, as Autobahn uses them).
const strict = new TextDecoder('utf-8', { fatal: true });
const isValidUtf8 = (b: Buffer): boolean => {
  try {
    strict.decode(b);
    return true;
  } catch {
    return false;
  }
};
const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
const truncated = ['c0', 'e0 80', 'f0 80 80', 'f8 80 80 80', 'fc 80 80 80 80', 'df', 'ef bf', 'f7 bf bf', 'fb bf bf bf', 'fd bf bf bf bf'];
const nonChars: string[] = ['ef bf be', 'ef bf bf'];
for (const z1 of ['f0', 'f1', 'f2', 'f3', 'f4']) {
  for (const z2 of ['8f', '9f', 'af', 'bf']) {
    if (z1 === 'f4' && z2 !== '8f') continue;
    for (const z3 of ['be', 'bf']) if (!(z1 === 'f0' && z2 === '8f')) nonChars.push(`${z1} ${z2} bf ${z3}`);
  }
}
const UTF8_GROUPS: Array<[string, Array<[boolean, Buffer]>]> = [
  [
    'some valid UTF-8',
    [
      Buffer.from('hello\x24world'),
      h('68656c6c6f c2a2 776f726c64'),
      h('68656c6c6f e282ac 776f726c64'),
      h('68656c6c6f f0a4ada2 776f726c64'),
      KOSME,
    ].map((b) => [true, b]),
  ],
  ['prefixes of κόσμε', range(1, KOSME.length + 1).map((i) => [isValidUtf8(KOSME.subarray(0, i)), KOSME.subarray(0, i)])],
  ['first possible sequence of each length', ['00', 'c2 80', 'e0 a0 80', 'f0 90 80 80'].map((x) => [true, h(x)])],
  ['first possible 5/6-byte sequences', ['f8 88 80 80 80', 'fc 84 80 80 80 80'].map((x) => [false, h(x)])],
  ['last possible sequence of each length', ['7f', 'df bf', 'ef bf bf', 'f4 8f bf bf'].map((x) => [true, h(x)])],
  ['last possible 4/5/6-byte sequences (> U+10FFFF)', ['f7 bf bf bf', 'fb bf bf bf bf', 'fd bf bf bf bf bf'].map((x) => [false, h(x)])],
  [
    'other boundary conditions',
    [
      [true, h('ed 9f bf')],
      [true, h('ee 80 80')],
      [true, h('ef bf bd')],
      [true, h('f4 8f bf bf')],
      [false, h('f4 90 80 80')],
    ],
  ],
  [
    'unexpected continuation bytes',
    [
      ...['80', 'bf', '80 bf', '80 bf 80', '80 bf 80 bf', '80 bf 80 bf 80', '80 bf 80 bf 80 bf'].map((x) => h(x)),
      Buffer.from(range(0x80, 0xbf)),
    ].map((b) => [false, b]),
  ],
  [
    'lonely start characters',
    (
      [
        [0xc0, 0xdf],
        [0xe0, 0xef],
        [0xf0, 0xf7],
        [0xf8, 0xfb],
        [0xfc, 0xfd],
      ] as const
    ).map(([a, b]) => [false, Buffer.from(range(a, b).flatMap((x) => [x, 0x20]))]),
  ],
  ['last continuation byte missing', truncated.map((x) => [false, h(x)])],
  ['concatenated incomplete sequences', [[false, h(truncated.join(''))]]],
  ['impossible bytes', ['fe', 'ff', 'fe fe ff ff'].map((x) => [false, h(x)])],
  ['overlong ASCII', ['c0 af', 'e0 80 af', 'f0 80 80 af', 'f8 80 80 80 af', 'fc 80 80 80 80 af'].map((x) => [false, h(x)])],
  ['maximum overlong sequences', ['c1 bf', 'e0 9f bf', 'f0 8f bf bf', 'f8 87 bf bf bf', 'fc 83 bf bf bf bf'].map((x) => [false, h(x)])],
  ['overlong NUL', ['c0 80', 'e0 80 80', 'f0 80 80 80', 'f8 80 80 80 80', 'fc 80 80 80 80 80'].map((x) => [false, h(x)])],
  [
    'single UTF-16 surrogates',
    ['ed a0 80', 'ed ad bf', 'ed ae 80', 'ed af bf', 'ed b0 80', 'ed be 80', 'ed bf bf'].map((x) => [false, h(x)]),
  ],
  [
    'paired UTF-16 surrogates',
    [
      'eda080 edb080',
      'eda080 edbfbf',
      'edadbf edb080',
      'edadbf edbfbf',
      'edae80 edb080',
      'edae80 edbfbf',
      'edafbf edb080',
      'edafbf edbfbf',
    ].map((x) => [false, h(x)]),
  ],
  ['non-characters (valid UTF-8)', nonChars.map((x) => [true, h(x)])],
  ['Unicode specials', ['ef bf b9', 'ef bf ba', 'ef bf bb', 'ef bf bc', 'ef bf bd', 'ef bf be', 'ef bf bf'].map((x) => [true, h(x)])],
  [
    '0xC0/0xC1/0xF5 lead bytes and truncation at the end',
    [
      [false, h('c1 81')],
      [false, h('f5 80 80 80')],
      [false, Buffer.concat([Buffer.from('ok'), h('e2 82')])],
      [false, Buffer.concat([Buffer.from('ok'), h('f0 9f 98')])],
    ],
  ],
];
const oneByteFrags = (b: Buffer): FrameSpec[] =>
  b.length <= 1 ? [T(b)] : [...b].map((x, i) => (i === 0 ? T(Buffer.from([x]), false) : C(Buffer.from([x]), i === b.length - 1)));
UTF8_GROUPS.forEach(([group, vectors], g) => {
  vectors.forEach(([valid, payload], j) => {
    // Guard the table itself against a typo: Autobahn's verdicts agree with a strict decoder.
    assert.equal(isValidUtf8(payload), valid, `UTF-8 vector 6.${g + 5}.${j + 1} (${group}) mislabelled`);
    const id = `6.${g + 5}.${j + 1}`;
    const title = `${group}: ${payload.length > 24 ? payload.subarray(0, 24).toString('hex') + '…' : payload.toString('hex')}`;
    if (valid) {
      echoCase(id, `${title} → echo`, [T(payload)], [text(payload)]);
      echoCase(`${id}/frag`, `${title}, 1-byte fragments → echo`, oneByteFrags(payload), [text(payload)]);
    } else {
      failCase(id, `${title} → 1007`, [T(payload)], 1007);
      failCase(`${id}/frag`, `${title}, 1-byte fragments → 1007`, oneByteFrags(payload), 1007);
    }
  });
});
// Valid multibyte text split into 2 fragments at every byte position (6.2.x/6.3.x style).
const SPLIT = Buffer.concat([Buffer.from('a'), h('c2a2'), h('e282ac'), h('f0a4ada2'), Buffer.from('z')]);
for (let at = 1; at < SPLIT.length; at++) {
  echoCase(
    `6.x/split-${at}`,
    `valid 1-4 byte characters split into 2 fragments at byte ${at}`,
    [T(SPLIT.subarray(0, at), false), C(SPLIT.subarray(at))],
    [text(SPLIT)],
  );
}
echoCase(
  '6.x/split-3frags',
  '4-byte character spread over 3 fragments with a ping inside',
  [T(h('f0'), false), C(h('a4 ad'), false), Ping('x'), C(h('a2'))],
  [pong('x'), text(h('f0a4ada2'))],
);
failCase('6.x/trunc-frag', 'fragmented text ending inside a character', [T('ok', false), C(h('e2 82'))], 1007);
failCase('6.x/binary-ok', 'invalid UTF-8 in a BINARY message is not checked', [Bn(h('ed a0 80')), T(h('c0'))], 1007, [
  binary(h('ed a0 80')),
]);

// 7.x Closing handshake ------------------------------------------------------------------------
add({
  id: '7.1.1',
  title: 'text, then close 1000',
  frames: [text('Hello World!')],
  close: [1000],
  by: 'us',
  run: (c) => c.send([T('Hello World!')]),
});
add({
  id: '7.1.2',
  title: 'close twice: one close frame back',
  frames: [],
  close: [1000],
  by: 'us',
  async run(c, ctx) {
    await c.send([Close(closePayload(1000)), Close(closePayload(1000))]);
    await c.waitClosed(DEADLINE);
    const n = c.frames.filter((f) => f.opcode === Op.CLOSE).length;
    if (n !== 1) ctx.problems.push(`${n} close frames came back`);
  },
});
add({
  id: '7.1.3',
  title: 'close, then ping: no pong',
  frames: [],
  close: [1000],
  by: 'us',
  run: (c) => c.send([Close(closePayload(1000)), Ping('payload')]),
});
add({
  id: '7.1.4',
  title: 'close, then text: not echoed',
  frames: [],
  close: [1000],
  by: 'us',
  run: (c) => c.send([Close(closePayload(1000)), T('payload')]),
});
add({
  id: '7.1.5',
  title: 'text fragment, close, last fragment: not echoed',
  frames: [],
  close: [1000],
  by: 'us',
  run: (c) => c.send([T('fragment1', false), Close(closePayload(1000)), C('fragment2')]),
});
add({
  id: '7.1.6',
  title: '256 KiB text, text, close, ping (implementation-defined)',
  frames: [text(Buffer.alloc(256 * 1024, 'BAsd7&jh23')), text('Hello World!')],
  close: [1000],
  by: 'us',
  informational: true,
  run: (c) => c.send([T(Buffer.alloc(256 * 1024, 'BAsd7&jh23')), T('Hello World!'), Close(closePayload(1000)), Ping()]),
});
add({
  id: '7.1.7',
  title: 'pipelined text, close, text in one write',
  frames: [text('before')],
  close: [1000],
  by: 'us',
  run: (c) => c.send([T('before'), Close(closePayload(1000)), T('after')]),
});
add({
  id: '7.3.1',
  title: 'close with no payload → empty close back',
  frames: [],
  close: ['empty', 1000],
  by: 'us',
  run: (c) => c.send([Close()]),
});
failCase('7.3.2', 'close with a 1-byte payload', [Close(h('03'))], 1002);
add({ id: '7.3.3', title: 'close 1000', frames: [], close: [1000], by: 'us', run: (c) => c.send([Close(closePayload(1000))]) });
add({
  id: '7.3.4',
  title: 'close 1000 with a reason',
  frames: [],
  close: [1000],
  by: 'us',
  run: (c) => c.send([Close(closePayload(1000, 'Hello World!'))]),
});
add({
  id: '7.3.5',
  title: 'close 1000 with a 123-byte reason',
  frames: [],
  close: [1000],
  by: 'us',
  run: (c) => c.send([Close(closePayload(1000, '*'.repeat(123)))]),
});
failCase('7.3.6', 'close 1000 with a 124-byte reason (126-byte control frame)', [Close(closePayload(1000, '*'.repeat(124)))], 1002);
failCase('7.5.1', 'close with invalid UTF-8 in the reason', [Close(closePayload(1000, INVALID))], 1007);
[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999].forEach((code, i) => {
  add({
    id: `7.7.${i + 1}`,
    title: `close with valid code ${code} → echoed`,
    frames: [],
    close: [code, 1000],
    by: 'us',
    run: (c) => c.send([Close(closePayload(code))]),
  });
});
[0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535].forEach((code, i) => {
  failCase(`7.9.${i + 1}`, `close with invalid code ${code}`, [Close(closePayload(code))], 1002);
});

// 9.x (lite) Limits and throughput sanity ------------------------------------------------------
{
  const MiB = 1024 * 1024;
  const big = Buffer.alloc(MiB);
  for (let i = 0; i < MiB; i++) big[i] = 0x20 + (i % 95);
  const frags = (op: number, size: number): FrameSpec[] =>
    range(0, MiB / size).map((k) => ({
      opcode: k === 0 ? op : Op.CONTINUATION,
      payload: big.subarray(k * size, (k + 1) * size),
      fin: k === MiB / size - 1,
    }));
  echoCase('9.1.1', 'text of 1 MiB in one frame', [T(big)], [text(big)]);
  echoCase('9.2.1', 'binary of 1 MiB in one frame', [Bn(big)], [binary(big)]);
  echoCase('9.3.1', 'text of 1 MiB in 64 KiB fragments', frags(Op.TEXT, 65536), [text(big)]);
  echoCase('9.4.1', 'binary of 1 MiB in 64 KiB fragments', frags(Op.BINARY, 65536), [binary(big)]);
  echoCase('9.5.1', 'text of 1 MiB, 64-byte chops', [T(big)], [text(big)], 64);
  echoCase('9.6.1', 'binary of 1 MiB, 4096-byte chops', [Bn(big)], [binary(big)], 4096);
  const many = range(0, 1000).map((i) => `message ${i} ${'x'.repeat(i % 50)}`);
  echoCase(
    '9.7.1',
    '1000 text messages in one write → all echoed in order',
    many.map((m) => T(m)),
    many.map((m) => text(m)),
  );
  const manyBin = range(0, 1000).map((i) => Buffer.alloc(16, i & 0xff));
  echoCase(
    '9.8.1',
    '1000 binary messages in one write → all echoed in order',
    manyBin.map((m) => Bn(m)),
    manyBin.map((m) => binary(m)),
  );
}

// Backpressure: echoes must stay intact while the server's writes are queued ------------------
{
  // Many small messages with pings between them, while we do not read: the server's socket
  // buffer fills, its writes queue up in userland, and every echo written after that must not
  // touch bytes still queued. We resume reading once the server reports 1 MiB queued (its
  // pause threshold by default), or at the deadline.
  // (ws terminates such a connection: more than 60 auto-pongs pending, `maxPendingAutoPongs`.)
  const N = 400_000;
  const backpressure = (id: string, title: string, specs: FrameSpec[], want: Expected[]): void => {
    let bytes: Buffer | undefined; // encoded once, for both servers
    add({
      id,
      title,
      frames: want,
      close: [1000],
      by: 'us',
      async run(c, ctx) {
        bytes ??= Buffer.concat(specs.map((f) => clientFrame(f)));
        c.socket.pause();
        void c.send(bytes);
        const deadline = Date.now() + 5000;
        // The servers expose their queue only as a number: check it once per event-loop turn
        // (-1: the server dropped the connection, which a paused socket would not notice).
        for (let q = ctx.serverQueued(); q >= 0 && q < 1024 * 1024 && Date.now() < deadline; q = ctx.serverQueued()) {
          await new Promise<void>((r) => setImmediate(r));
        }
        c.socket.resume();
        await c.waitReplies(want.length, 10_000);
      },
    });
  };
  const s1: FrameSpec[] = [];
  const w1: Expected[] = [];
  const s2: FrameSpec[] = [];
  const w2: Expected[] = [];
  for (let i = 0; i < N; i++) {
    const m = `m${i}`.padEnd(16, '.');
    s1.push(T(m));
    w1.push(text(m));
    if (i % 3 === 0) {
      s1.push(Ping(`p${i}`));
      w1.push(pong(`p${i}`));
    }
    // Every 3rd message in 2 fragments: its echo leaves the in-place path mid-read.
    s2.push(...(i % 3 === 0 ? [T(m.slice(0, 7), false), C(m.slice(7))] : [T(m)]));
    w2.push(text(m));
  }
  backpressure('B.1', `${N} small messages and pings while the client does not read (server writes queued)`, s1, w1);
  backpressure('B.2', `${N} small messages, every 3rd fragmented, while the client does not read`, s2, w2);
}

// 10.x: auto-fragmentation is not required; a client's own fragmentation must work.
echoCase(
  '10.1.1',
  'text of 65536 bytes in 1300-byte fragments',
  range(0, Math.ceil(65536 / 1300)).map((k, _i, all) => ({
    opcode: k === 0 ? Op.TEXT : Op.CONTINUATION,
    payload: '*'.repeat(Math.min(1300, 65536 - k * 1300)),
    fin: k === all.length - 1,
  })),
  [text('*'.repeat(65536))],
);

// Limits and masking (RFC 6455 §5.1, §10.4) ----------------------------------------------------
add({
  id: 'L.1',
  title: 'frame declaring maxFrameBytes + 1: 1009 before the payload is sent',
  frames: [],
  close: [1009],
  by: 'server',
  run: (c) => c.send([{ opcode: Op.BINARY, payload: Buffer.alloc(16), declaredLength: LIMIT + 1 }]),
});
add({
  id: 'L.2',
  title: 'fragments summing past maxFrameBytes: 1009 at the header of the fragment that crosses it',
  frames: [],
  close: [1009],
  by: 'server',
  run: (c) =>
    c.send([Bn(Buffer.alloc(LIMIT - 10), false), { opcode: Op.CONTINUATION, payload: Buffer.alloc(16), declaredLength: 65536, fin: true }]),
});
failCase(
  'L.3',
  '64-bit length with the most significant bit set',
  [{ opcode: Op.BINARY, payload: Buffer.alloc(8), declaredLength: 0x8000000000000000n }],
  [1002, 1009],
);
failCase('L.4', '64-bit length of 2^32', [{ opcode: Op.BINARY, payload: Buffer.alloc(8), declaredLength: 0x100000000n }], 1009);
echoCase('L.5', 'message of exactly maxFrameBytes', [Bn(Buffer.alloc(LIMIT, 7))], [binary(Buffer.alloc(LIMIT, 7))]);
failCase('M.1', 'unmasked client frame', [{ opcode: Op.TEXT, payload: HW, mask: false }], 1002);
failCase('M.2', 'text echo, then an unmasked client frame', [T(HW), { opcode: Op.BINARY, payload: P8, mask: false }], 1002, [text(HW)]);

// ---------------------------------------------------------------------------------------------
// Handshake cases
// ---------------------------------------------------------------------------------------------

interface HandshakeCase {
  readonly id: string;
  readonly title: string;
  readonly opts: HandshakeOptions;
  /** Returns a problem, or undefined when the response is right. */
  check(res: HttpResponse, client: RawWsClient | undefined): Promise<string | undefined> | string | undefined;
}
const status = (want: number, res: HttpResponse): string | undefined =>
  res.status === want ? undefined : `status ${res.status}, want ${want}`;
const handshakes: HandshakeCase[] = [
  { id: 'H.1', title: 'missing Sec-WebSocket-Key → 400', opts: { headers: { 'sec-websocket-key': null } }, check: (r) => status(400, r) },
  {
    id: 'H.2',
    title: 'malformed Sec-WebSocket-Key → 400',
    opts: { headers: { 'sec-websocket-key': 'short' } },
    check: (r) => status(400, r),
  },
  {
    id: 'H.3',
    title: 'Sec-WebSocket-Version: 8 → 426 with Sec-WebSocket-Version: 13',
    opts: { headers: { 'sec-websocket-version': '8' } },
    check: (r) =>
      status(426, r) ??
      (r.headers['sec-websocket-version']
        ?.split(',')
        .map((v) => v.trim())
        .includes('13')
        ? undefined
        : `Sec-WebSocket-Version header: ${r.headers['sec-websocket-version']}`),
  },
  {
    id: 'H.4',
    title: 'Sec-WebSocket-Version: 14 → 426',
    opts: { headers: { 'sec-websocket-version': '14' } },
    check: (r) => status(426, r),
  },
  { id: 'H.5', title: 'POST → 405', opts: { method: 'POST' }, check: (r) => status(405, r) },
  {
    id: 'H.6',
    title: 'permessage-deflate offered → 101 without the extension, and echo works uncompressed',
    opts: { headers: { 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits' } },
    async check(r, c) {
      if (r.status !== 101 || c === undefined) return `status ${r.status}, want 101`;
      if (r.headers['sec-websocket-extensions'] !== undefined) return `extension accepted: ${r.headers['sec-websocket-extensions']}`;
      await c.send([T(HW)]);
      if (!(await c.waitReplies(1, DEADLINE))) return 'no echo';
      const f = c.frames[0];
      return f?.rsv === 0 && f.payload.toString() === HW ? undefined : 'echo differs (compressed?)';
    },
  },
  {
    id: 'H.7',
    title: 'frames pipelined in the same packet as the upgrade request are echoed',
    opts: { head: Buffer.concat([T('pipelined'), Bn(P8), Ping('pp'), T('frag-', false), C('ment')].map((f) => clientFrame(f))) },
    async check(r, c) {
      if (r.status !== 101 || c === undefined) return `status ${r.status}, want 101`;
      if (!(await c.waitReplies(4, DEADLINE))) return `only ${c.received().length} of 4 replies`;
      const got = c.received().map((m) => `${m.kind}:${m.payload.toString('hex')}`);
      const want = [text('pipelined'), binary(P8), pong('pp'), text('frag-ment')].map((m) => `${m.kind}:${m.payload.toString('hex')}`);
      return JSON.stringify(got) === JSON.stringify(want) ? undefined : `got ${got.join(' ')}`;
    },
  },
  {
    id: 'H.8',
    title: 'upgrade, subprotocol not offered → no Sec-WebSocket-Protocol in the response',
    opts: {},
    check: (r) =>
      status(101, r) ?? (r.headers['sec-websocket-protocol'] === undefined ? undefined : `protocol ${r.headers['sec-websocket-protocol']}`),
  },
];

// ---------------------------------------------------------------------------------------------
// Runner and grading
// ---------------------------------------------------------------------------------------------

interface Result {
  readonly pass: boolean;
  /** Autobahn's behaviour verdict: OK, NON-STRICT, FAILED or INFORMATIONAL. */
  readonly behavior: string;
  /** Autobahn's close verdict plus our stricter checks. */
  readonly closeBehavior: string;
  /** What happened, comparable between servers. */
  readonly summary: string;
  readonly detail: string;
}

const show = (m: { kind: string; payload: Buffer }): string =>
  `${m.kind}(${m.payload.length}${m.payload.length <= 16 ? ':' + m.payload.toString('hex') : ''})`;

async function runCase(port: number, k: Case, serverQueued: () => number): Promise<Result> {
  const c = await RawWsClient.connect(port);
  const ctx: Ctx = { nonStrict: undefined, problems: [], serverQueued };
  try {
    await k.run(c, ctx);
    if (k.by === 'us') {
      // Autobahn starts the closing handshake once everything expected has arrived.
      await c.waitFor(
        () => c.closeFrame !== undefined || c.received().filter((m) => m.kind !== 'ping').length >= k.frames.length,
        DEADLINE,
      );
      if (!c.closeSent && c.closeFrame === undefined) await c.send([Close(closePayload(1000))]);
    }
    await c.waitCloseFrame(DEADLINE);
    // The server, not the client, must close the TCP connection (Autobahn: "failed by client" otherwise).
    await c.waitFor(() => c.serverFin || c.closed, 1000);
    return grade(c, k, ctx);
  } finally {
    await c.dispose();
  }
}

function grade(c: RawWsClient, k: Case, ctx: Ctx): Result {
  const got = c.received().filter((m) => m.kind !== 'ping');
  const same =
    got.length === k.frames.length && got.every((m, i) => m.kind === k.frames[i]?.kind && m.payload.equals(k.frames[i]?.payload as Buffer));
  const problems = [...ctx.problems, ...c.violations];
  let behavior = same && problems.length === 0 ? (ctx.nonStrict !== undefined ? 'NON-STRICT' : 'OK') : 'FAILED';

  const cf = c.closeFrame;
  const code: CloseCodeExpect | 'none' | 'malformed' =
    cf === undefined ? 'none' : cf.payload.length === 0 ? 'empty' : cf.payload.length === 1 ? 'malformed' : cf.payload.readUInt16BE(0);
  const tcp = c.serverFin ? 'server closed TCP' : c.reset ? 'TCP reset' : 'client had to drop TCP';
  let closeBehavior: string;
  if (code === 'none') closeBehavior = c.serverFin || c.reset ? 'DROPPED WITHOUT CLOSE FRAME' : 'NO CLOSE';
  else if (!k.close.includes(code as CloseCodeExpect)) closeBehavior = 'WRONG CODE';
  else if (!c.serverFin) closeBehavior = c.reset ? 'UNCLEAN (reset)' : 'FAILED BY CLIENT';
  else closeBehavior = 'OK';

  if (k.informational === true) behavior = `INFORMATIONAL (${same ? 'all messages echoed' : 'messages dropped'})`;
  const behaviorOk = behavior === 'OK' || (behavior === 'NON-STRICT' && k.allowNonStrict === true) || k.informational === true;
  const pass = behaviorOk && closeBehavior === 'OK';
  const summary = `${behavior}; close ${String(code)}${cf !== undefined && k.by === 'server' ? ' by server' : ''}; ${tcp}`;
  const detail = [
    `expected ${k.frames.length > 20 ? k.frames.length + ' messages' : k.frames.map(show).join(' ') || 'nothing'} then close ${k.close.join('|')} (${k.by === 'us' ? 'we close' : 'server fails the connection'})`,
    `received ${got.length > 20 ? got.length + ' messages' : got.map(show).join(' ') || 'nothing'}; close ${String(code)}${cf !== undefined && cf.payload.length > 2 ? ` "${cf.payload.subarray(2).toString()}"` : ''}; ${tcp}`,
    ...(same ? [] : firstMismatch(got, k.frames)),
    ...(ctx.nonStrict !== undefined ? [`non-strict: ${ctx.nonStrict}`] : []),
    ...problems.map((p) => `problem: ${p}`),
  ].join('\n');
  return { pass, behavior, closeBehavior, summary, detail };
}

function firstMismatch(got: ReadonlyArray<{ kind: string; payload: Buffer }>, want: readonly Expected[]): string[] {
  const n = Math.max(got.length, want.length);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < n; i++) {
    const a = got[i];
    const b = want[i];
    if (a === undefined || b === undefined || a.kind !== b.kind || !a.payload.equals(b.payload)) {
      bad++;
      if (first === -1) first = i;
    }
  }
  const a = got[first];
  const b = want[first];
  return [
    `${bad} of ${n} positions differ; first at #${first}: got ${a === undefined ? 'nothing' : show(a)}, want ${b === undefined ? 'nothing' : show(b)}`,
  ];
}

async function runHandshake(port: number, k: HandshakeCase): Promise<Result> {
  const r = await RawWsClient.handshake(port, k.opts);
  try {
    const problem = await k.check(r.response, r.client);
    const summary = `HTTP ${r.response.status}${r.response.headers['sec-websocket-version'] !== undefined ? ` (Sec-WebSocket-Version: ${r.response.headers['sec-websocket-version']})` : ''}${r.client?.violations.length ? '; ' + r.client.violations.join(', ') : ''}`;
    return {
      pass: problem === undefined,
      behavior: problem === undefined ? 'OK' : 'FAILED',
      closeBehavior: '-',
      summary,
      detail: problem ?? r.response.raw.split('\r\n')[0] ?? '',
    };
  } finally {
    await r.client?.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------------

let ours: EchoServer;
let oursPort = 0;
let reference: WebSocketServer;
let refPort = 0;
const results = { ours: new Map<string, Result>(), ws: new Map<string, Result>() };

before(async () => {
  ours = createEchoServer({
    wsPort: 0,
    tcpPort: null,
    insecure: true,
    host: '127.0.0.1',
    maxFrameBytes: LIMIT,
    keepaliveIntervalMs: 0,
    logLevel: 'silent',
  });
  oursPort = (await ours.listen()).ws?.port ?? 0;
  reference = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: LIMIT });
  reference.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
    ws.on('error', () => {}); // protocol errors are what we provoke
  });
  await new Promise<void>((resolve) => reference.once('listening', () => resolve()));
  refPort = (reference.address() as { port: number }).port;
});

after(async () => {
  await ours.close({ drainMs: 500 });
  for (const client of reference.clients) client.terminate();
  await new Promise<void>((resolve) => reference.close(() => resolve()));
});

describe('EchoServer: Autobahn-style RFC 6455 cases', () => {
  for (const k of cases) {
    test(`${k.id} ${k.title}`, async () => {
      const r = await runCase(oursPort, k, () => Math.max(-1, ...[...ours.connections].map((x) => x.queuedBytes)));
      results.ours.set(k.id, r);
      assert.ok(r.pass, `${k.id}: behaviour ${r.behavior}, close ${r.closeBehavior}\n${r.detail}`);
    });
  }
  for (const k of handshakes) {
    test(`${k.id} ${k.title}`, async () => {
      const r = await runHandshake(oursPort, k);
      results.ours.set(k.id, r);
      assert.ok(r.pass, `${k.id}: ${r.detail}`);
    });
  }
});

test('ws reference server: same table (informational, never fails)', async (t) => {
  let ok = 0;
  for (const k of cases) {
    const r = await runCase(refPort, k, () => Math.max(-1, ...[...reference.clients].map((x) => x.bufferedAmount)));
    results.ws.set(k.id, r);
    if (r.pass) ok++;
    else t.diagnostic(`ws ${k.id}: ${r.behavior} / close ${r.closeBehavior}: ${r.detail.replace(/\n/g, ' | ')}`);
  }
  for (const k of handshakes) {
    const r = await runHandshake(refPort, k);
    results.ws.set(k.id, r);
    if (r.pass) ok++;
  }
  t.diagnostic(`ws passed ${ok} of ${cases.length + handshakes.length} cases by our (strict) grading`);
});

test('parity: where ws and EchoServer differ', (t) => {
  const all = [...cases.map((k) => [k.id, k.title] as const), ...handshakes.map((k) => [k.id, k.title] as const)];
  const rows: string[] = [];
  let oursPass = 0;
  for (const [id, title] of all) {
    const a = results.ours.get(id);
    const b = results.ws.get(id);
    if (a?.pass === true) oursPass++;
    if (a === undefined || b === undefined) continue;
    if (a.summary !== b.summary || a.pass !== b.pass) {
      rows.push(
        `${id.padEnd(14)} ${title.slice(0, 60).padEnd(60)} | EchoServer: ${a.pass ? 'pass' : 'FAIL'} ${a.summary} | ws: ${b.pass ? 'pass' : 'fail'} ${b.summary}`,
      );
    }
  }
  t.diagnostic(`EchoServer passed ${oursPass} of ${all.length} cases; ${rows.length} cases differ from ws`);
  for (const r of rows) t.diagnostic(r);
  const nonStrict = [...results.ours.entries()].filter(([, r]) => r.behavior === 'NON-STRICT').map(([id]) => id);
  if (nonStrict.length > 0)
    t.diagnostic(`EchoServer NON-STRICT (accepted by Autobahn, fail-fast would be better): ${nonStrict.join(', ')}`);
  assert.equal(results.ours.size, all.length, 'every case ran against EchoServer');
});
