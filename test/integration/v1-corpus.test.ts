/**
 * The framing v1 corpus (test/fixtures/v1-corpus.json) on the wire: every entry's hex input is
 * written to a live server over TCP, TLS and a Unix socket (whole, then one byte per write), and
 * as one binary message per body over the `echo.v1` WebSocket subprotocol. What comes back must
 * be the entry's expected echo, byte for byte (header echoes and hello answers carry server
 * values and are compared field by field), followed by the expected close code, or, when no
 * close is expected, by the echo of a sentinel frame sent after the input (so "nothing more came
 * back" is checked without waiting on time).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { parseV1Frames, type V1Frame } from '../../test-helpers/raw.js';
import { startServer, type StartedServer } from '../../test-helpers/server.js';
import { connectTls, startTlsServer, type TlsServer } from '../../test-helpers/tls.js';

interface Expect {
  echo: string;
  close?: number;
  ends?: boolean;
  compare?: 'structural';
}
interface Entry {
  name: string;
  note: string;
  input: string;
  expect: Expect;
  ws: { skip: string } | { messages: string[]; expect: { echo: string[]; close?: number; compare?: 'structural' } };
}
interface Corpus {
  limits: { maxFrameBytes: number; maxHeaderBytes: number };
  entries: Entry[];
}

const corpus = JSON.parse(readFileSync(new URL('../../../test/fixtures/v1-corpus.json', import.meta.url), 'utf8')) as Corpus;
const SENTINEL = Buffer.from('000000090273656e74696e656c', 'hex'); // binary "sentinel"

/** Drops the server's own values: `srv` in headers, `conn`, `instance` and `whoami` in hello answers. */
function normalise(f: V1Frame): unknown {
  if (f.opcode === 3) {
    const hello = JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>;
    assert.equal(typeof hello['conn'], 'string');
    // `whoami` is what the server saw (peer address and port): the server's own value too.
    return { opcode: 3, hello: { ...hello, conn: '*', instance: '*', whoami: '*' } };
  }
  let header: Record<string, unknown> | undefined;
  if (f.header !== undefined) {
    const { srv, ...rest } = f.header;
    header = rest;
    if (srv !== undefined && typeof srv === 'object') {
      const s = srv as Record<string, unknown>;
      header['srv'] = {
        conn: typeof s['conn'],
        seq: typeof s['seq'],
        rx: typeof s['rx'],
        tx: typeof s['tx'],
        instance: typeof s['instance'],
      };
    }
  }
  return { opcode: f.opcode, flags: f.flags, header, payload: f.payload.toString('hex') };
}

/** Expected echo frames from the corpus, with the stamp of the vectors replaced the same way. */
function compareFrames(got: Buffer, expected: Buffer, structural: boolean, what: string): void {
  if (!structural) {
    assert.equal(got.toString('hex'), expected.toString('hex'), what);
    return;
  }
  const g = parseV1Frames(got);
  const e = parseV1Frames(expected);
  assert.equal(g.used, got.length, `${what}: trailing bytes`);
  assert.deepEqual(g.frames.map(normalise), e.frames.map(normalise), what);
}

/** Collects everything a stream sends until it closes or `until(bytes)` holds. */
function collect(stream: Duplex): { bytes: () => Buffer; wait: (until: (b: Buffer) => boolean) => Promise<void> } {
  const chunks: Buffer[] = [];
  let closed = false;
  const waiters: (() => void)[] = [];
  stream.on('data', (c: Buffer) => {
    chunks.push(c);
    for (const w of waiters.splice(0)) w();
  });
  stream.on('error', () => undefined);
  stream.on('close', () => {
    closed = true;
    for (const w of waiters.splice(0)) w();
  });
  const bytes = (): Buffer => Buffer.concat(chunks);
  return {
    bytes,
    async wait(until) {
      while (!closed && !until(bytes())) await new Promise<void>((r) => waiters.push(r));
    },
  };
}

async function runStream(stream: Duplex, entry: Entry, bytewise: boolean): Promise<void> {
  const what = `${entry.name} (${bytewise ? 'byte by byte' : 'whole'})`;
  const rx = collect(stream);
  const input = Buffer.from(entry.input, 'hex');
  const expected = Buffer.from(entry.expect.echo, 'hex');
  const write = (b: Buffer): Promise<void> => new Promise((resolve) => stream.write(b, () => resolve()));
  if (bytewise) for (let i = 0; i < input.length; i++) await write(input.subarray(i, i + 1));
  else await write(input);
  const { close, ends } = entry.expect;
  if (close !== undefined || ends === true) {
    // The server answers and then ends the connection.
    await rx.wait(() => false);
    const all = rx.bytes();
    const { frames, used } = parseV1Frames(all);
    assert.equal(used, all.length, `${what}: a partial frame at the end`);
    const last = frames[frames.length - 1];
    if (close !== undefined) {
      assert.ok(last !== undefined && last.opcode === 8, `${what}: no close frame (got ${all.toString('hex')})`);
      assert.equal(last.payload.readUInt16BE(0), close, `${what}: close code`);
      compareFrames(all.subarray(0, all.length - last.raw.length), expected, entry.expect.compare === 'structural', what);
    } else {
      compareFrames(all, expected, entry.expect.compare === 'structural', what);
    }
    return;
  }
  await write(SENTINEL);
  await rx.wait((b) => b.length >= SENTINEL.length && b.subarray(b.length - SENTINEL.length).equals(SENTINEL));
  const all = rx.bytes();
  assert.ok(all.subarray(all.length - SENTINEL.length).equals(SENTINEL), `${what}: the connection closed early (${all.toString('hex')})`);
  compareFrames(all.subarray(0, all.length - SENTINEL.length), expected, entry.expect.compare === 'structural', what);
  stream.destroy();
}

async function runWs(url: string, entry: Entry): Promise<void> {
  if ('skip' in entry.ws) return;
  const spec = entry.ws;
  const ws = new WebSocket(url, 'echo.v1');
  await once(ws, 'open');
  assert.equal(ws.protocol, 'echo.v1');
  const got: Buffer[] = [];
  let closeCode: number | undefined;
  const closed = new Promise<void>((resolve) =>
    ws.once('close', (code) => {
      closeCode = code;
      resolve();
    }),
  );
  const sentinelBody = SENTINEL.subarray(4);
  const sawSentinel = new Promise<void>((resolve) =>
    ws.on('message', (d: Buffer) => {
      if (d.equals(sentinelBody)) resolve();
      else got.push(d);
    }),
  );
  ws.on('error', () => undefined);
  for (const m of spec.messages) ws.send(Buffer.from(m, 'hex'), { binary: true });
  const toStream = (bodies: Buffer[]): Buffer =>
    Buffer.concat(
      bodies.flatMap((b) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(b.length);
        return [len, b];
      }),
    );
  if (spec.expect.close !== undefined) {
    await closed;
    assert.equal(closeCode, spec.expect.close, `${entry.name} (echo.v1): close code`);
  } else {
    ws.send(sentinelBody, { binary: true });
    await Promise.race([sawSentinel, closed]);
    assert.equal(closeCode, undefined, `${entry.name} (echo.v1): closed early with ${closeCode}`);
    ws.close();
    await closed;
  }
  compareFrames(
    toStream(got),
    toStream(spec.expect.echo.map((h) => Buffer.from(h, 'hex'))),
    spec.expect.compare === 'structural',
    `${entry.name} (echo.v1)`,
  );
}

describe('framing v1 corpus (test/fixtures/v1-corpus.json)', () => {
  let plain: StartedServer;
  let secure: TlsServer;
  let dir: string;
  let unixPath: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-corpus-'));
    unixPath = join(dir, 'echo.sock');
    plain = await startServer({ ...corpus.limits, unixPath });
    secure = await startTlsServer({ ...corpus.limits, wsPort: null });
  });
  after(async () => {
    await plain?.close();
    await secure?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the corpus has valid and invalid entries, each with an expectation', () => {
    assert.ok(corpus.entries.length >= 40, `${corpus.entries.length} entries`);
    assert.ok(corpus.entries.filter((e) => e.expect.close !== undefined).length >= 25);
    assert.ok(corpus.entries.filter((e) => e.expect.close === undefined).length >= 15);
  });

  const transports: [string, () => Promise<Duplex>][] = [
    [
      'TCP',
      async () => {
        const s = net.connect(plain.tcpPort, '127.0.0.1');
        await once(s, 'connect');
        return s;
      },
    ],
    ['TLS', () => connectTls(secure.tcpPort, { ca: secure.ca })],
    [
      'Unix socket',
      async () => {
        const s = net.connect(unixPath);
        await once(s, 'connect');
        return s;
      },
    ],
  ];
  for (const [name, connect] of transports) {
    test(`${name}: every entry, whole and one byte per write`, { timeout: 60_000 }, async () => {
      for (const entry of corpus.entries) {
        for (const bytewise of [false, true]) {
          // Byte-by-byte writes of the 17 KB entry add nothing but time.
          if (bytewise && entry.input.length > 2000) continue;
          await runStream(await connect(), entry, bytewise);
        }
      }
    });
  }

  test('WebSocket echo.v1: every entry with a WebSocket form, one body per binary message', { timeout: 60_000 }, async () => {
    let ran = 0;
    for (const entry of corpus.entries) {
      if ('skip' in entry.ws) continue;
      await runWs(plain.wsUrl('/'), entry);
      ran++;
    }
    assert.ok(ran >= 40, `${ran} entries ran over echo.v1`);
  });
});
