/**
 * WebSocket listener over real sockets: plain echo (text/binary, sizes around the length
 * encodings, fragmentation, ping), paths, the `echo.v1` subprotocol and the HTTP routes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import WebSocket from 'ws';
import { connectV1 } from '../../src/index.js';
import { encodeBody, parseBody, V1Opcode } from '../../src/protocol/v1.js';
import { closeCode, clientFrame, readHead, readWsFrames, RawSocket, wsHandshake } from '../../test-helpers/raw.js';
import {
  httpGet,
  nextClose,
  openWs,
  randomText,
  refusedUpgradeStatus,
  startServer,
  wsClosed,
  wsRoundTrip,
  type StartedServer,
} from '../../test-helpers/server.js';

const MAX_FRAME = 1024 * 1024;
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, MAX_FRAME - 1, MAX_FRAME];

let srv: StartedServer;
before(async () => {
  srv = await startServer({ instance: 'ws-echo', maxFrameBytes: MAX_FRAME });
});
after(() => srv.close());

describe('plain echo (no subprotocol)', () => {
  let ws: WebSocket;
  before(async () => {
    ws = await openWs(srv.wsUrl('/'));
  });
  after(() => ws.terminate());

  for (const size of SIZES) {
    test(`binary ${size} bytes comes back as binary, byte-identical`, async () => {
      const payload = randomBytes(size);
      const echo = await wsRoundTrip(ws, payload);
      assert.equal(echo.isBinary, true);
      assert.equal(echo.data.length, size);
      assert.ok(echo.data.equals(payload), 'payload differs');
    });
    test(`text ${size} bytes comes back as text, identical`, async () => {
      const text = randomText(size);
      const echo = await wsRoundTrip(ws, text);
      assert.equal(echo.isBinary, false);
      assert.equal(echo.data.toString('utf8'), text);
    });
  }

  test('many messages sent back to back come back in order', async () => {
    const n = 500;
    const got: string[] = [];
    const done = new Promise<void>((resolve) => {
      const onMessage = (data: Buffer): void => {
        got.push(data.toString());
        if (got.length === n) {
          ws.off('message', onMessage);
          resolve();
        }
      };
      ws.on('message', onMessage);
    });
    for (let i = 0; i < n; i++) ws.send(i % 2 === 0 ? `m${i}` : Buffer.from(`m${i}`));
    await done;
    assert.deepEqual(
      got,
      Array.from({ length: n }, (_, i) => `m${i}`),
    );
  });

  test('a message over maxFrameBytes closes with 1009', async () => {
    const big = await openWs(srv.wsUrl('/'));
    const closed = wsClosed(big);
    big.send(randomBytes(MAX_FRAME + 1));
    assert.equal((await closed).code, 1009);
  });

  test('ping gets a pong with the same payload', async () => {
    const payload = randomBytes(100);
    const pong = once(ws, 'pong');
    ws.ping(payload);
    const [data] = (await pong) as [Buffer];
    assert.ok(data.equals(payload));
  });
});

describe('fragmented messages over a raw socket', () => {
  test('text fragments (a character split across them, a ping in between) come back as ONE text message', async () => {
    const { raw, head } = await wsHandshake(srv.wsPort, '/');
    assert.equal(head.status, 101);
    const text = Buffer.from('Hello, wörld €!', 'utf8');
    const euro = text.indexOf(Buffer.from('€'));
    // Cut in the middle of 'ö' and of '€'.
    const a = text.subarray(0, 9);
    const b = text.subarray(9, euro + 1);
    const c = text.subarray(euro + 1);
    await raw.write(Buffer.concat([clientFrame(0x1, a, false), clientFrame(0x0, b, false), clientFrame(0x9, 'mid')]));
    // The pong may come back before the message is complete.
    const [pong] = await readWsFrames(raw, 1);
    assert.equal(pong?.opcode, 0xa);
    assert.equal(pong?.payload.toString(), 'mid');
    await raw.write(clientFrame(0x0, c, true));
    const [msg] = await readWsFrames(raw, 1);
    assert.ok(msg);
    assert.equal(msg.opcode, 0x1);
    assert.equal(msg.fin, true);
    assert.equal(msg.masked, false);
    assert.ok(msg.payload.equals(text));
    // Nothing else: a follow-up message is the very next frame.
    await raw.write(clientFrame(0x2, Buffer.from([1, 2, 3])));
    const [next] = await readWsFrames(raw, 1);
    assert.equal(next?.opcode, 0x2);
    assert.deepEqual([...(next?.payload ?? [])], [1, 2, 3]);
    raw.destroy();
  });

  test('binary fragments (one per write, 5 parts) come back as ONE binary message', async () => {
    const { raw } = await wsHandshake(srv.wsPort, '/ws');
    const payload = randomBytes(70_000);
    const cuts = [0, 1, 126, 30_000, 65_600, payload.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const part = payload.subarray(cuts[i], cuts[i + 1]);
      await raw.write(clientFrame(i === 0 ? 0x2 : 0x0, part, i + 2 === cuts.length));
    }
    const [msg] = await readWsFrames(raw, 1);
    assert.equal(msg?.opcode, 0x2);
    assert.equal(msg?.fin, true);
    assert.ok(msg?.payload.equals(payload));
    assert.equal(raw.available, 0, 'exactly one frame expected');
    raw.destroy();
  });

  test('a frame split at every byte is echoed', async () => {
    const { raw } = await wsHandshake(srv.wsPort, '/');
    const frame = Buffer.concat([clientFrame(0x1, 'abc'), clientFrame(0x2, randomBytes(300))]);
    await raw.writeBytewise(frame);
    const frames = await readWsFrames(raw, 2);
    assert.deepEqual(
      frames.map((f) => f.opcode),
      [0x1, 0x2],
    );
    assert.equal(frames[0]?.payload.toString(), 'abc');
    raw.destroy();
  });

  test('an unmasked client frame is a protocol error: close 1002', async () => {
    const { raw } = await wsHandshake(srv.wsPort, '/');
    await raw.write(Buffer.from([0x81, 0x02, 0x68, 0x69])); // unmasked "hi"
    const [close] = await readWsFrames(raw, 1);
    assert.equal(close?.opcode, 0x8);
    assert.equal(closeCode(close?.payload ?? Buffer.alloc(0)), 1002);
    await raw.waitClose();
  });
});

describe('paths', () => {
  for (const path of ['/', '/ws', '/ws?token=abc']) {
    test(`echo works on ${path}`, async () => {
      const ws = await openWs(srv.wsUrl(path));
      const echo = await wsRoundTrip(ws, 'hi');
      assert.equal(echo.data.toString(), 'hi');
      ws.terminate();
    });
  }

  test('unknown path gets HTTP 404', async () => {
    assert.equal(await refusedUpgradeStatus(srv.wsUrl('/nope')), 404);
    assert.equal(await refusedUpgradeStatus(srv.wsUrl('/ws/')), 404);
  });

  test('custom wsPaths: served paths work, the defaults are 404', async () => {
    const custom = await startServer({ wsPaths: ['/echo', '/a/b'], tcpPort: null });
    try {
      for (const path of ['/echo', '/a/b']) {
        const ws = await openWs(custom.wsUrl(path));
        assert.equal((await wsRoundTrip(ws, path)).data.toString(), path);
        ws.terminate();
      }
      assert.equal(await refusedUpgradeStatus(custom.wsUrl('/')), 404);
      assert.equal(await refusedUpgradeStatus(custom.wsUrl('/ws')), 404);
    } finally {
      await custom.close();
    }
  });

  test('a plain GET on a WebSocket path is not a 200 (426 hint)', async () => {
    const res = await httpGet(srv.wsPort, '/ws');
    assert.equal(res.status, 426);
  });
});

describe('echo.v1 subprotocol', () => {
  let ws: WebSocket;
  before(async () => {
    ws = await openWs(srv.wsUrl('/'), 'echo.v1');
  });
  after(() => ws.terminate());

  test('the subprotocol is selected', () => {
    assert.equal(ws.protocol, 'echo.v1');
  });

  test('header-less bodies (text and binary) are echoed byte-identical', async () => {
    for (const body of [
      encodeBody(V1Opcode.BINARY, randomBytes(1000)),
      encodeBody(V1Opcode.TEXT, Buffer.from('héllo')),
      encodeBody(V1Opcode.BINARY, Buffer.alloc(0)),
    ]) {
      const echo = await wsRoundTrip(ws, body);
      assert.equal(echo.isBinary, true);
      assert.ok(echo.data.equals(body), `body ${body.toString('hex').slice(0, 20)} differs`);
    }
  });

  test('a body with a header is echoed with the client fields plus srv {instance, conn, seq, rx, tx}', async () => {
    const clientHeader = { id: 'm-1', ts: 1700000000000, route: { to: 'x', tags: ['a', 'b'] } };
    const payload = Buffer.from('payload ✓');
    const sent = encodeBody(V1Opcode.TEXT, payload, Buffer.from(JSON.stringify(clientHeader)));
    const first = await wsRoundTrip(ws, sent);
    const second = await wsRoundTrip(
      ws,
      encodeBody(V1Opcode.BINARY, Buffer.from([9]), Buffer.from(JSON.stringify({ id: 'm-2', srv: 'client-sent' }))),
    );
    const limits = { maxFrameBytes: MAX_FRAME, maxHeaderBytes: 65535 };

    const p = parseBody(first.data, 0, first.data.length, limits);
    assert.equal(p.opcode, V1Opcode.TEXT);
    assert.ok(p.headerStart >= 0, 'echo has a header');
    assert.ok(first.data.subarray(p.payloadStart).equals(payload), 'payload byte-identical');
    const h = JSON.parse(first.data.toString('utf8', p.headerStart, p.headerEnd)) as Record<string, unknown> & {
      srv: Record<string, unknown>;
    };
    assert.equal(h['id'], 'm-1');
    assert.equal(h['ts'], 1700000000000);
    assert.deepEqual(h['route'], clientHeader.route);
    assert.equal(h.srv['instance'], 'ws-echo');
    assert.equal(typeof h.srv['conn'], 'string');
    const wsConns = [...srv.server.connections].filter((c) => c.transport === 'ws').map((c) => c.id);
    assert.ok(wsConns.includes(h.srv['conn'] as string), 'srv.conn is a live connection id');
    assert.equal(typeof h.srv['seq'], 'number');
    assert.equal(typeof h.srv['rx'], 'number');
    assert.equal(typeof h.srv['tx'], 'number');
    assert.ok((h.srv['tx'] as number) >= (h.srv['rx'] as number), 'tx >= rx');
    assert.ok(Math.abs((h.srv['rx'] as number) - Date.now()) < 60_000, 'rx is epoch ms');

    const p2 = parseBody(second.data, 0, second.data.length, limits);
    assert.equal(p2.opcode, V1Opcode.BINARY);
    const h2 = JSON.parse(second.data.toString('utf8', p2.headerStart, p2.headerEnd)) as { id: string; srv: Record<string, unknown> };
    assert.equal(h2.id, 'm-2');
    assert.equal(typeof h2.srv, 'object', 'a client-sent srv is replaced by the server stamp');
    assert.equal(h2.srv['conn'], h.srv['conn']);
    assert.equal(h2.srv['seq'], (h.srv['seq'] as number) + 1, 'seq increases per message');
  });

  test('v1 ping and hello are answered', async () => {
    const pong = await wsRoundTrip(ws, encodeBody(V1Opcode.PING, Buffer.from('pp')));
    assert.ok(pong.data.equals(encodeBody(V1Opcode.PONG, Buffer.from('pp'))));
    const hello = await wsRoundTrip(ws, encodeBody(V1Opcode.HELLO, Buffer.from('{"v":1}')));
    assert.equal(hello.data[0], V1Opcode.HELLO);
    const body = JSON.parse(hello.data.toString('utf8', 1)) as Record<string, unknown>;
    assert.equal(body['ok'], true);
    assert.equal(body['instance'], 'ws-echo');
  });

  test('a text WebSocket message closes with 1003', async () => {
    const other = await openWs(srv.wsUrl('/'), 'echo.v1');
    const closed = wsClosed(other);
    other.send('not a v1 body');
    assert.equal((await closed).code, 1003);
  });

  test('a malformed body (unknown opcode) closes with 1002', async () => {
    const other = await openWs(srv.wsUrl('/'), 'echo.v1');
    const closed = wsClosed(other);
    other.send(Buffer.from([0x05, 1, 2]));
    assert.equal((await closed).code, 1002);
  });
});

describe('HTTP routes', () => {
  test('/healthz is 200 JSON', async () => {
    const res = await httpGet(srv.wsPort, '/healthz');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /application\/json/);
    JSON.parse(res.body);
  });

  test('/readyz is 200 when listening', async () => {
    const res = await httpGet(srv.wsPort, '/readyz');
    assert.equal(res.status, 200);
    assert.equal(srv.server.ready, true);
  });

  test('unknown route is 404', async () => {
    assert.equal((await httpGet(srv.wsPort, '/nothing-here')).status, 404);
  });

  test('/info: instance, version, uptimeSeconds and a connection count matching open connections; no listener layout, pid or identities without credentials', async () => {
    const base = (JSON.parse((await httpGet(srv.wsPort, '/info')).body) as { connections: { total: number } }).connections.total;
    assert.equal(base, srv.server.connections.size);
    const known = new Set([...srv.server.connections].map((c) => c.id));
    const a = await openWs(srv.wsUrl('/'));
    const aId = [...srv.server.connections].find((c) => !known.has(c.id))?.id;
    assert.ok(aId, 'the new connection is registered once the upgrade completed');
    const b = await openWs(srv.wsUrl('/ws'), 'echo.v1');
    const t = await connectV1({ port: srv.tcpPort });
    const helloDone = t.hello();
    await helloDone; // the TCP connection is registered once it answered
    const res = await httpGet(srv.wsPort, '/info');
    assert.equal(res.status, 200);
    const info = JSON.parse(res.body) as {
      instance: string;
      version: string;
      uptimeSeconds: number;
      listeners: { ws: { port: number }; tcp: { port: number } };
      connections: { total: number; byTransport: Record<string, number> };
    };
    assert.equal(info.instance, 'ws-echo');
    // (The CLI test checks it equals package.json's version; here the server runs from build/.)
    assert.match(info.version, /^\d+\.\d+\.\d+/);
    assert.equal(typeof info.uptimeSeconds, 'number');
    assert.ok(info.uptimeSeconds >= 0);
    // The public view: no listener layout, pid, Node version or identities (issue 9/14).
    const raw = info as unknown as Record<string, unknown>;
    for (const key of ['listeners', 'pid', 'node']) assert.equal(raw[key], undefined, `public /info has no ${key}`);
    assert.equal((raw['connections'] as Record<string, unknown>)['byIdentity'], undefined);
    // The library's own view has them.
    const full = srv.server.info() as typeof info;
    assert.equal(full.listeners.ws.port, srv.wsPort);
    assert.equal(full.listeners.tcp.port, srv.tcpPort);
    assert.equal(info.connections.total, base + 3);
    assert.equal(info.connections.total, srv.server.connections.size);
    assert.ok((info.connections.byTransport['ws'] ?? 0) >= 2);
    assert.ok((info.connections.byTransport['tcp'] ?? 0) >= 1);

    const gone = nextClose((e) => e.connection.id === aId);
    a.close(1000);
    await gone;
    const after1 = JSON.parse((await httpGet(srv.wsPort, '/info')).body) as { connections: { total: number } };
    assert.equal(after1.connections.total, base + 2);
    b.terminate();
    await t.close();
  });

  test('/readyz is 503 while draining (request in flight when close() starts)', async () => {
    const s = await startServer({ tcpPort: null });
    // A WebSocket client that never answers the close frame keeps the drain going.
    const { raw: hold } = await wsHandshake(s.wsPort, '/');
    // An HTTP request whose head is not complete yet: the connection is busy, not idle.
    const probe = await RawSocket.connect({ port: s.wsPort });
    await probe.write('GET /readyz HTTP/1.1\r\nHost: x\r\n');
    const closing = s.server.close({ drainMs: 2000 });
    await probe.write('\r\n');
    const head = await readHead(probe);
    assert.equal(head?.status, 503);
    assert.equal(s.server.ready, false, 'ready is false while draining');
    hold.destroy();
    const result = await closing;
    assert.equal(result.clean, true);
    probe.destroy();
  });
});
