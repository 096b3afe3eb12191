/**
 * Stream listeners over real sockets: TCP framing v1 (echo, split frames, headers, control
 * frames, close handshake, bad frames and their close codes), the bare `len` framing, the
 * Unix socket listener (removal, stale and live socket files) and the raw echo listener.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectV1, createEchoServer } from '../../src/index.js';
import { encodeLen } from '../../src/protocol/len.js';
import { encodeClose, encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { RawSocket, readV1Frames, type V1Frame } from '../../test-helpers/raw.js';
import { nextClose, startServer, type StartedServer } from '../../test-helpers/server.js';

const MAX_FRAME = 64 * 1024;
const MAX_HEADER = 256;

const textFrame = (s: string): Buffer => encodeFrame(V1Opcode.TEXT, Buffer.from(s, 'utf8'));
const binFrame = (b: Uint8Array): Buffer => encodeFrame(V1Opcode.BINARY, b);
const withHeader = (opcode: V1Opcode, payload: Uint8Array, header: unknown): Buffer =>
  encodeFrame(opcode, payload, Buffer.from(JSON.stringify(header), 'utf8'));

/** A frame with an arbitrary body (for malformed input). */
const rawFrame = (body: Uint8Array): Buffer => {
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
};

const closeOf = (f: V1Frame | undefined): number => {
  assert.ok(f, 'expected a close frame');
  assert.equal(f.opcode, V1Opcode.CLOSE, `expected a close frame, got opcode ${f.opcode}`);
  return f.payload.readUInt16BE(0);
};

let srv: StartedServer;
before(async () => {
  srv = await startServer({ instance: 'tcp-v1', wsPort: null, maxFrameBytes: MAX_FRAME, maxHeaderBytes: MAX_HEADER });
});
after(() => srv.close());

const connect = (): Promise<RawSocket> => RawSocket.connect({ port: srv.tcpPort });

describe('framing v1 echo', () => {
  test('text and binary header-less frames are echoed byte-for-byte', async () => {
    const raw = await connect();
    const sent = Buffer.concat([
      textFrame('héllo wörld'),
      binFrame(randomBytes(1000)),
      textFrame(''),
      binFrame(Buffer.alloc(0)),
      binFrame(randomBytes(MAX_FRAME - 1)),
    ]);
    await raw.write(sent);
    const got = await raw.waitBytes(sent.length);
    assert.equal(got.length, sent.length);
    assert.ok(got.equals(sent), 'echo bytes differ from the bytes sent');
    raw.destroy();
  });

  test('frames written one byte at a time are echoed', async () => {
    const raw = await connect();
    const sent = Buffer.concat([textFrame('a'), binFrame(randomBytes(300)), textFrame('€uro'), binFrame(Buffer.from([0]))]);
    await raw.writeBytewise(sent);
    const got = await raw.waitBytes(sent.length);
    assert.ok(got.equals(sent));
    // A header frame split at every byte gets its stamped echo.
    await raw.writeBytewise(withHeader(V1Opcode.TEXT, Buffer.from('hdr'), { id: 'split' }));
    raw.take(sent.length);
    const [echo] = await readV1Frames(raw, 1);
    assert.equal(echo?.header?.['id'], 'split');
    assert.equal(echo?.payload.toString(), 'hdr');
    raw.destroy();
  });

  test('many frames in one write come back in order', async () => {
    const raw = await connect();
    const frames: Buffer[] = [];
    for (let i = 0; i < 2000; i++) frames.push(i % 3 === 0 ? textFrame(`#${i}`) : binFrame(randomBytes(i % 50)));
    const sent = Buffer.concat(frames);
    await raw.write(sent);
    const got = await raw.waitBytes(sent.length);
    assert.ok(got.subarray(0, sent.length).equals(sent));
    raw.destroy();
  });

  test('a frame with a header is echoed with the client fields plus srv', async () => {
    const raw = await connect();
    const header = { id: 'x-1', ts: 123.5, nested: { list: [1, 'two', null] }, srv: 'client value' };
    const payload = randomBytes(50);
    await raw.write(
      Buffer.concat([withHeader(V1Opcode.BINARY, payload, header), withHeader(V1Opcode.TEXT, Buffer.from('t'), { id: 'x-2' })]),
    );
    const [a, b] = await readV1Frames(raw, 2);
    assert.ok(a && b);
    assert.equal(a.opcode, V1Opcode.BINARY);
    assert.equal(a.flags, 0x80);
    assert.ok(a.payload.equals(payload));
    assert.equal(a.header?.['id'], 'x-1');
    assert.equal(a.header?.['ts'], 123.5);
    assert.deepEqual(a.header?.['nested'], header.nested);
    const srvA = a.header?.['srv'] as Record<string, unknown>;
    assert.equal(typeof srvA, 'object');
    assert.equal(srvA['instance'], 'tcp-v1');
    const tcpIds = [...srv.server.connections].filter((c) => c.transport === 'tcp').map((c) => c.id);
    assert.ok(tcpIds.includes(srvA['conn'] as string), 'srv.conn is the connection id');
    assert.equal(typeof srvA['seq'], 'number');
    assert.ok((srvA['tx'] as number) >= (srvA['rx'] as number));
    assert.equal(b.opcode, V1Opcode.TEXT);
    const srvB = b.header?.['srv'] as Record<string, unknown>;
    assert.equal(srvB['seq'], (srvA['seq'] as number) + 1);
    assert.equal(srvB['conn'], srvA['conn']);
    raw.destroy();
  });

  test('ping gets a pong with the same payload', async () => {
    const raw = await connect();
    const payload = randomBytes(33);
    await raw.write(encodeFrame(V1Opcode.PING, payload));
    const [pong] = await readV1Frames(raw, 1);
    assert.equal(pong?.opcode, V1Opcode.PONG);
    assert.ok(pong?.payload.equals(payload));
    raw.destroy();
  });

  test('hello gets a hello reply', async () => {
    const client = await connectV1({ port: srv.tcpPort });
    const reply = await client.hello({ client: 'test' });
    assert.equal(reply['ok'], true);
    assert.equal(reply['instance'], 'tcp-v1');
    assert.equal(typeof reply['conn'], 'string');
    await client.close();
  });

  for (const code of [1000, 4001]) {
    test(`close handshake: client close ${code} → server close with the same code → socket ends`, async () => {
      const raw = await connect();
      await raw.write(Buffer.concat([textFrame('before'), encodeClose(code, 'bye')]));
      const [echo, close] = await readV1Frames(raw, 2);
      assert.equal(echo?.payload.toString(), 'before');
      assert.equal(closeOf(close), code);
      await raw.waitClose();
      assert.equal(raw.available, 0, 'nothing after the close frame');
    });
  }
});

describe('bad frames close with the right code; other clients keep working', () => {
  const cases: { name: string; bytes: () => Buffer; code: number }[] = [
    { name: 'unknown opcode', bytes: () => rawFrame(Buffer.from([0x05, 1, 2, 3])), code: 1002 },
    { name: 'unknown flags', bytes: () => rawFrame(Buffer.from([0x41, 0x61])), code: 1002 },
    { name: 'zero-length frame', bytes: () => rawFrame(Buffer.alloc(0)), code: 1002 },
    { name: 'header that is not JSON', bytes: () => rawFrame(Buffer.from([0x81, 0, 3, 0x7b, 0x7b, 0x7b, 0x61])), code: 1002 },
    { name: 'invalid UTF-8 in a text frame', bytes: () => rawFrame(Buffer.from([0x01, 0x68, 0xff, 0xfe])), code: 1007 },
    { name: 'truncated UTF-8 sequence in a text frame', bytes: () => rawFrame(Buffer.from([0x01, 0xe2, 0x82])), code: 1007 },
    {
      name: 'header over maxHeaderBytes',
      bytes: () => {
        const hdr = Buffer.from(JSON.stringify({ pad: 'x'.repeat(MAX_HEADER) }));
        const body = Buffer.alloc(3 + hdr.length + 1);
        body[0] = 0x82;
        body.writeUInt16BE(hdr.length, 1);
        hdr.copy(body, 3);
        return rawFrame(body);
      },
      code: 1009,
    },
  ];

  for (const c of cases) {
    test(`${c.name} → close ${c.code}, then the socket closes`, async () => {
      const good = await connectV1({ port: srv.tcpPort });
      await good.hello(); // registered on the server
      const bad = await connect();
      const closed = nextClose((e) => e.connection.transport === 'tcp' && e.code === c.code);
      // A valid frame first, in the same write: its echo goes out ahead of the close frame.
      await bad.write(Buffer.concat([textFrame('ok'), c.bytes()]));
      const [echo, close] = await readV1Frames(bad, 2);
      assert.equal(echo?.payload.toString(), 'ok');
      assert.equal(closeOf(close), c.code);
      await bad.waitClose();
      await closed;
      // The other client still gets its echo.
      const reply = once(good, 'message');
      good.send('still here');
      const [msg] = (await reply) as [{ data: Buffer }];
      assert.equal(msg.data.toString(), 'still here');
      await good.close();
    });
  }

  test('a frame over maxFrameBytes → 1009 as soon as the length is read (the server does not wait for the body)', async () => {
    const good = await connectV1({ port: srv.tcpPort });
    await good.hello();
    const bad = await connect();
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(MAX_FRAME + 1, 0);
    prefix[4] = V1Opcode.BINARY;
    await bad.write(prefix); // and nothing more: the body never comes
    const [close] = await readV1Frames(bad, 1);
    assert.equal(closeOf(close), 1009);
    await bad.waitClose();
    const reply = once(good, 'message');
    good.send(Buffer.from([1, 2, 3]));
    const [msg] = (await reply) as [{ data: Buffer }];
    assert.deepEqual([...msg.data], [1, 2, 3]);
    await good.close();
  });

  test('a 4 GiB length prefix → 1009 at once', async () => {
    const bad = await connect();
    await bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    const [close] = await readV1Frames(bad, 1);
    assert.equal(closeOf(close), 1009);
    await bad.waitClose();
  });

  test('frame of exactly maxFrameBytes is accepted', async () => {
    const raw = await connect();
    const frame = binFrame(randomBytes(MAX_FRAME - 1)); // body = kind byte + payload
    await raw.write(frame);
    const got = await raw.waitBytes(frame.length);
    assert.ok(got.equals(frame));
    raw.destroy();
  });
});

describe('len framing', () => {
  let len: StartedServer;
  before(async () => {
    len = await startServer({ wsPort: null, tcpFraming: 'len', maxFrameBytes: 1024 });
  });
  after(() => len.close());

  test('frames (zero-length included) are echoed byte-for-byte, split or batched', async () => {
    assert.equal(len.addr.tcp?.framing, 'len');
    const raw = await RawSocket.connect({ port: len.tcpPort });
    const sent = Buffer.concat([
      encodeLen(randomBytes(10)),
      encodeLen(Buffer.alloc(0)),
      encodeLen(randomBytes(1024)),
      encodeLen(Buffer.alloc(0)),
    ]);
    await raw.write(sent);
    assert.ok((await raw.waitBytes(sent.length)).equals(sent));
    raw.take(sent.length);
    const split = encodeLen(randomBytes(7));
    await raw.writeBytewise(split);
    assert.ok((await raw.waitBytes(split.length)).equals(split));
    raw.destroy();
  });

  test('a frame over the limit closes the connection without a reply', async () => {
    const raw = await RawSocket.connect({ port: len.tcpPort });
    const good = encodeLen(Buffer.from('ok'));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1025, 0);
    await raw.write(Buffer.concat([good, prefix]));
    await raw.waitClose();
    assert.ok(raw.data().equals(good), 'only the echo of the good frame');
  });
});

describe('unix socket', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'echo-unix-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('echo works and the socket file is removed on close', async () => {
    const path = join(dir, 'a.sock');
    const s = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    const addr = await s.listen();
    assert.equal(addr.unix?.path, path);
    assert.ok(statSync(path).isSocket());
    const client = await connectV1({ path });
    const reply = once(client, 'message');
    client.send('over unix', { id: 'u' });
    const [msg] = (await reply) as [{ data: Buffer; header: Record<string, unknown> }];
    assert.equal(msg.data.toString(), 'over unix');
    assert.equal(msg.header['id'], 'u');
    assert.equal(s.stats().unix.messagesIn, 1);
    await client.close();
    await s.close({ drainMs: 500 });
    assert.equal(existsSync(path), false, 'socket file removed');
  });

  test('a stale socket file (its process died) is replaced on start', async () => {
    const path = join(dir, 'stale.sock');
    // A process that binds the path and dies without cleaning up.
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`],
      { stdio: 'ignore' },
    );
    await once(child, 'exit');
    assert.ok(statSync(path).isSocket(), 'a stale socket file exists');
    const s = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    await s.listen();
    const client = await connectV1({ path });
    const reply = once(client, 'message');
    client.send('fresh');
    assert.equal(((await reply) as [{ data: Buffer }])[0].data.toString(), 'fresh');
    await client.close();
    await s.close({ drainMs: 500 });
    assert.equal(existsSync(path), false);
  });

  test('a live socket makes listen() reject, and the live server keeps working', async () => {
    const path = join(dir, 'live.sock');
    const first = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    await first.listen();
    const second = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    await assert.rejects(second.listen(), /another server|in use|listening/i);
    assert.ok(statSync(path).isSocket(), 'the live socket file is still there');
    const client = await connectV1({ path });
    const reply = once(client, 'message');
    client.send('still live');
    assert.equal(((await reply) as [{ data: Buffer }])[0].data.toString(), 'still live');
    await client.close();
    await second.close({ drainMs: 100 });
    assert.ok(existsSync(path), 'closing the failed server must not remove the live socket');
    await first.close({ drainMs: 500 });
    assert.equal(existsSync(path), false);
  });

  test('a regular file at the path is not deleted: listen() rejects', async () => {
    const path = join(dir, 'not-a-socket');
    writeFileSync(path, 'important data');
    const s = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    let listened = false;
    try {
      await s.listen();
      listened = true;
    } catch {
      // expected
    } finally {
      await s.close({ drainMs: 100 });
    }
    assert.equal(listened, false, 'listen() must refuse a path that is not a socket');
    assert.ok(existsSync(path), 'the regular file was deleted');
  });
});

describe('raw listener', () => {
  test('bytes are echoed as they are', async () => {
    const s = await startServer({ wsPort: null, tcpPort: null, rawPort: 0 });
    try {
      assert.ok(s.addr.raw);
      const raw = await RawSocket.connect({ port: s.addr.raw.port });
      const sent = randomBytes(200_000);
      await raw.write(sent.subarray(0, 1));
      await raw.write(sent.subarray(1));
      const got = await raw.waitBytes(sent.length);
      assert.ok(got.equals(sent));
      raw.socket.end();
      await raw.waitClose();
    } finally {
      await s.close();
    }
  });
});
