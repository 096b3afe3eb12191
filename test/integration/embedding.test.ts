/**
 * Embedded mode: attach() on an application's own HTTP server, the in-process connect(), and
 * the onMessage hook (transform, no reply, throw, push) over every transport.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import {
  attach,
  createEchoServer,
  type AttachedEcho,
  type EchoConnection,
  type EchoMessage,
  type EchoReply,
  type EchoServer,
  type V1Client,
} from '../../src/index.js';
import {
  httpGet,
  nextClose,
  openWs,
  refusedUpgradeStatus,
  startServer,
  wsClosed,
  wsRoundTrip,
  type StartedServer,
} from '../../test-helpers/server.js';
import { connectV1 } from '../../src/index.js';

async function v1RoundTrip(
  client: V1Client,
  data: string | Buffer,
  header?: Record<string, unknown>,
): Promise<{ kind: string; data: Buffer; header: Record<string, unknown> | undefined }> {
  const reply = once(client, 'message');
  client.send(data, header);
  const [msg] = (await reply) as [{ kind: string; data: Buffer; header: Record<string, unknown> | undefined }];
  return msg;
}

describe('attach() on an application server', () => {
  let app: http.Server;
  let port: number;
  let echo: AttachedEcho;
  before(async () => {
    app = http.createServer((req, res) => {
      if (req.url === '/app') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('hello from the app');
        return;
      }
      res.writeHead(404);
      res.end();
    });
    echo = attach(app, { path: '/echo', instance: 'embedded' });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    port = (app.address() as { port: number }).port;
  });
  after(async () => {
    await echo.close({ drainMs: 200 });
    app.closeAllConnections();
    await new Promise((r) => app.close(r));
  });

  test('WebSocket echo works at /echo', async () => {
    const ws = await openWs(`ws://127.0.0.1:${port}/echo`);
    assert.equal((await wsRoundTrip(ws, 'text')).data.toString(), 'text');
    const bin = await wsRoundTrip(ws, Buffer.from([0, 1, 2, 255]));
    assert.equal(bin.isBinary, true);
    assert.deepEqual([...bin.data], [0, 1, 2, 255]);
    assert.equal(echo.connections.size, 1);
    ws.terminate();
  });

  test("the app's own route still works", async () => {
    const r = await httpGet(port, '/app');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'hello from the app');
  });

  test('other upgrade paths get 404 when we are the only upgrade listener', async () => {
    assert.equal(await refusedUpgradeStatus(`ws://127.0.0.1:${port}/other`), 404);
  });

  test("another upgrade listener's paths are left to it", async () => {
    const theirs = (req: http.IncomingMessage, socket: Duplex): void => {
      if (req.url === '/theirs') socket.end('HTTP/1.1 418 I am a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    };
    app.on('upgrade', theirs);
    try {
      assert.equal(await refusedUpgradeStatus(`ws://127.0.0.1:${port}/theirs`), 418);
      // Ours still works with two listeners.
      const ws = await openWs(`ws://127.0.0.1:${port}/echo`);
      assert.equal((await wsRoundTrip(ws, 'x')).data.toString(), 'x');
      ws.terminate();
    } finally {
      app.removeListener('upgrade', theirs);
    }
  });

  test('close() drains our connections (1001) and the host server keeps listening', async () => {
    const ws = await openWs(`ws://127.0.0.1:${port}/echo`);
    assert.equal((await wsRoundTrip(ws, 'before')).data.toString(), 'before');
    const closed = wsClosed(ws);
    const result = await echo.close({ drainMs: 2000 });
    assert.deepEqual(result, { clean: true });
    assert.equal((await closed).code, 1001);
    assert.equal(echo.connections.size, 0);
    assert.equal(app.listening, true);
    const r = await httpGet(port, '/app');
    assert.equal(r.status, 200);
    assert.equal(app.listenerCount('upgrade'), 0, 'our upgrade listener was removed');
  });
});

describe('in-process connect() (no listeners)', () => {
  let server: EchoServer;
  before(() => {
    server = createEchoServer({ wsPort: null, tcpPort: null, instance: 'inproc' });
  });
  after(() => server.close({ drainMs: 200 }));

  test('text, binary and header echo', async () => {
    const client = server.connect();
    const t = await v1RoundTrip(client, 'héllo');
    assert.equal(t.kind, 'text');
    assert.equal(t.data.toString(), 'héllo');
    assert.equal(t.header, undefined);
    const b = await v1RoundTrip(client, Buffer.from([1, 2, 3, 0]));
    assert.equal(b.kind, 'binary');
    assert.deepEqual([...b.data], [1, 2, 3, 0]);
    const h = await v1RoundTrip(client, 'with header', { id: 'h1', ts: 5 });
    assert.equal(h.data.toString(), 'with header');
    assert.equal(h.header?.['id'], 'h1');
    assert.equal(h.header?.['ts'], 5);
    const srv = h.header?.['srv'] as Record<string, unknown>;
    assert.equal(srv['instance'], 'inproc');
    const ids = [...server.connections].filter((c) => c.transport === 'inproc').map((c) => c.id);
    assert.ok(ids.includes(srv['conn'] as string));
    const hello = await client.hello();
    assert.equal(hello['ok'], true);
    assert.equal(server.stats().inproc.messagesIn, 3);
    assert.deepEqual(await client.close(), { code: 1000, reason: '' });
  });

  test('a large binary message (backpressure through the pair) is echoed intact', async () => {
    const client = server.connect();
    const big = Buffer.alloc(900 * 1024, 7);
    const echo = await v1RoundTrip(client, big);
    assert.ok(echo.data.equals(big));
    await client.close();
  });
});

describe('onMessage hook', () => {
  const seen: { id: string; transport: string; kind: string; header: unknown }[] = [];
  let s: StartedServer;

  function onMessage(message: EchoMessage, connection: EchoConnection): EchoReply | null | undefined {
    seen.push({ id: connection.id, transport: connection.transport, kind: message.kind, header: message.header });
    const text = message.data.toString('utf8');
    if (text.startsWith('upper:')) return { data: text.slice(6).toUpperCase() };
    if (text === 'drop') return null;
    if (text === 'throw') throw new Error('handler failed');
    if (text === 'push') {
      connection.send('pushed text');
      connection.send(Buffer.from([42]), { header: { pushed: true } });
      return null;
    }
    if (text === 'id') return { data: `${connection.transport}:${connection.id}` };
    return undefined; // echo
  }

  before(async () => {
    s = await startServer({ onMessage, instance: 'hooked' });
  });
  after(() => s.close());

  const clients: {
    name: string;
    open: () => Promise<{
      roundTrip: (d: string | Buffer) => Promise<{ data: Buffer; text: boolean }>;
      collect: (n: number) => Promise<{ data: Buffer; text: boolean }[]>;
      send: (d: string) => void;
      closed: () => Promise<number>;
      end: () => void;
    }>;
  }[] = [
    {
      name: 'in-process',
      open: async () => wrapV1(s.server.connect()),
    },
    {
      name: 'tcp',
      open: async () => wrapV1(await connectV1({ port: s.tcpPort })),
    },
    {
      name: 'ws',
      open: async () => {
        const ws = await openWs(s.wsUrl('/'));
        const closed = wsClosed(ws);
        const collect = (n: number): Promise<{ data: Buffer; text: boolean }[]> =>
          new Promise((resolve) => {
            const got: { data: Buffer; text: boolean }[] = [];
            const onMessage = (data: Buffer, isBinary: boolean): void => {
              got.push({ data, text: !isBinary });
              if (got.length === n) {
                ws.off('message', onMessage);
                resolve(got);
              }
            };
            ws.on('message', onMessage);
          });
        return {
          roundTrip: async (d) => {
            const m = await wsRoundTrip(ws, d);
            return { data: m.data, text: !m.isBinary };
          },
          collect,
          send: (d) => ws.send(d),
          closed: async () => (await closed).code,
          end: () => ws.terminate(),
        };
      },
    },
  ];

  function wrapV1(client: V1Client) {
    client.on('error', () => {});
    const closed = new Promise<number>((resolve) => client.once('close', (info) => resolve(info.code)));
    const collect = (n: number): Promise<{ data: Buffer; text: boolean }[]> =>
      new Promise((resolve) => {
        const got: { data: Buffer; text: boolean }[] = [];
        const onMessage = (m: { kind: string; data: Buffer }): void => {
          got.push({ data: m.data, text: m.kind === 'text' });
          if (got.length === n) {
            client.off('message', onMessage);
            resolve(got);
          }
        };
        client.on('message', onMessage);
      });
    return {
      roundTrip: async (d: string | Buffer) => {
        const m = await v1RoundTrip(client, d);
        return { data: m.data, text: m.kind === 'text' };
      },
      collect,
      send: (d: string) => void client.send(d),
      closed: () => closed,
      end: () => void client.stream.destroy(),
    };
  }

  const transportOf: Record<string, string> = { 'in-process': 'inproc', tcp: 'tcp', ws: 'ws' };

  for (const c of clients) {
    test(`${c.name}: transform, no reply, push, echo; the hook sees connection.id and transport`, async () => {
      const client = await c.open();
      const up = await client.roundTrip('upper:hello');
      assert.equal(up.data.toString(), 'HELLO');
      assert.equal(up.text, true);
      // No reply for 'drop': the next message received is the echo of what follows it.
      client.send('drop');
      const after = await client.roundTrip('echo me');
      assert.equal(after.data.toString(), 'echo me');
      // Pushes via connection.send().
      const pushes = client.collect(2);
      client.send('push');
      const [p1, p2] = await pushes;
      assert.ok(p1 && p2);
      assert.equal(p1.data.toString(), 'pushed text');
      assert.equal(p1.text, true);
      assert.deepEqual([...p2.data], [42]);
      assert.equal(p2.text, false);
      const idReply = (await client.roundTrip('id')).data.toString();
      const transport = transportOf[c.name] as string;
      const [t, id] = idReply.split(':');
      assert.equal(t, transport);
      const live = [...s.server.connections].filter((x) => x.transport === transport).map((x) => x.id);
      assert.ok(live.includes(id as string), 'connection.id is the registered id');
      assert.ok(seen.some((e) => e.id === id && e.transport === transport && e.kind === 'text'));
      client.end();
    });

    test(`${c.name}: a throwing hook closes the connection with 1011`, async () => {
      const client = await c.open();
      const gone = nextClose((e) => e.connection.transport === transportOf[c.name] && e.code === 1011);
      client.send('throw');
      assert.equal(await client.closed(), 1011);
      assert.equal((await gone).reason, 'internal');
    });
  }
});
