/**
 * The typed client (`echoserver/client`) against the real server on every transport: request
 * matching under pipelining, ping, iteration, timeout and abort, reconnect after a restart on
 * the same port with queued sends delivered once, TLS pinning, token and JWT auth, and option
 * checking.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import {
  connect,
  type Client,
  type ClientEvents,
  type ClientOptions,
  type ConnectTarget,
  type ReceivedMessage,
} from '../../src/client/index.js';
import { createEchoServer, type EchoServer, type EchoServerOptions } from '../../src/index.js';
import { startServer, type StartedServer } from '../../test-helpers/server.js';
import { startTlsServer, type TlsServer } from '../../test-helpers/tls.js';

const TOKEN = 'alice-0123456789abcdefghijkl';
const JWT_SECRET = 'a-jwt-secret-of-at-least-32-bytes-long!!';

/** The next event of a client. */
function next<K extends keyof ClientEvents>(c: Client, event: K): Promise<ClientEvents[K][0]> {
  return new Promise((resolve) => c.once(event, ((...args: ClientEvents[K]) => resolve(args[0])) as (...args: ClientEvents[K]) => void));
}

/** Rejects with the error's `code` (what users switch on). */
async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as { code?: string }).code);
  }
  return 'resolved';
}

/** 40 pipelined requests of different sizes and kinds, each resolved with its own echo. */
async function pipelined(c: Client): Promise<void> {
  const sent = Array.from({ length: 40 }, (_, i) =>
    i % 2 === 0 ? `msg-${i}-${'x'.repeat(i * 37)}` : Uint8Array.from({ length: i * 11 }, (_, j) => (i + j) & 0xff),
  );
  const results = await Promise.all(sent.map((d) => c.request(d)));
  results.forEach((r, i) => {
    const d = sent[i] as string | Uint8Array;
    assert.equal(r.kind, typeof d === 'string' ? 'text' : 'binary');
    assert.deepEqual(typeof d === 'string' ? r.data : Buffer.from(r.data as Uint8Array), typeof d === 'string' ? d : Buffer.from(d));
    assert.ok(r.rttMs >= 0 && r.rttMs < 10_000);
    if (c.mode === 'v1') {
      assert.equal(typeof r.header?.['id'], 'string');
      assert.equal(r.srv?.instance, 'test');
      assert.equal(r.srv?.conn, c.conn);
    }
  });
  // Distinct ids: matching was by id, not by luck.
  if (c.mode === 'v1') assert.equal(new Set(results.map((r) => r.header?.['id'])).size, results.length);
}

describe('every transport: pipelined requests, send + iteration, ping, close', () => {
  let s: StartedServer;
  let t: TlsServer;
  const dir = mkdtempSync(join(tmpdir(), 'echo-client-'));
  const unixPath = join(dir, 'echo.sock');
  before(async () => {
    s = await startServer({ unixPath });
    t = await startTlsServer();
  });
  after(async () => {
    await s.close();
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: [string, () => [ConnectTarget, ClientOptions]][] = [
    ['ws echo.v1', () => [s.wsUrl('/ws'), {}]],
    ['ws plain', () => [s.wsUrl('/ws'), { protocol: 'plain' }]],
    ['tcp', () => [`tcp://127.0.0.1:${s.tcpPort}`, {}]],
    ['unix', () => [`unix:${unixPath}`, {}]],
    ['in-process', () => [s.server, {}]],
    ['wss (CA)', () => [t.wssUrl('/ws'), { tls: { ca: t.ca as string } }]],
    ['tls (pinned)', () => [`tls://127.0.0.1:${t.tcpPort}`, { tls: { fingerprint256: t.server.tls?.fingerprint256 as string } }]],
  ];
  for (const [name, make] of cases) {
    test(name, async () => {
      const [target, options] = make();
      const c = await connect(target, options);
      assert.equal(c.readyState, 'open');
      if (c.mode === 'v1') assert.equal(c.instance, 'test');
      await pipelined(c);
      // A plain send is not taken by a request: it arrives through iteration.
      const it = c.messages();
      c.send('pushed');
      const first = (await it.next()).value as ReceivedMessage;
      assert.equal(first.data, 'pushed');
      await it.return?.();
      assert.ok((await c.ping()) >= 0);
      assert.deepEqual(await c.close(4000, 'done'), { code: 4000, reason: 'done' });
      assert.equal(c.readyState, 'closed');
      assert.equal(await errorCode(c.request('late')), 'ECHO_ERR_CLOSED');
    });
  }
});

describe('timeout, abort, headers', () => {
  let s: StartedServer;
  before(async () => {
    // Messages starting with "drop" get no echo.
    s = await startServer({ onMessage: (m) => (m.data.subarray(0, 4).toString() === 'drop' ? null : undefined) });
  });
  after(() => s.close());

  test('a request without echo times out; an aborted one rejects at once; others still match', async () => {
    const c = await connect(`tcp://127.0.0.1:${s.tcpPort}`);
    const slow = errorCode(c.request('drop-1', { timeout: 50 }));
    const ctl = new AbortController();
    const aborted = errorCode(c.request('drop-2', { signal: ctl.signal }));
    ctl.abort();
    assert.equal(await slow, 'ECHO_ERR_TIMEOUT');
    assert.equal(await aborted, 'ECHO_ERR_ABORTED');
    assert.equal(await errorCode(c.request('x', { signal: AbortSignal.abort() })), 'ECHO_ERR_ABORTED');
    assert.equal(await errorCode(c.ping({ signal: AbortSignal.abort() })), 'ECHO_ERR_ABORTED');
    const r = await c.request('ok', { header: { id: 'mine', route: 'eu' } });
    assert.deepEqual({ id: r.header?.['id'], route: r.header?.['route'] }, { id: 'mine', route: 'eu' });
    await c.close();
  });

  test('plain WebSocket: the late echo of a timed-out request is dropped, the next one still matches', async () => {
    // Every echo 60 ms late, in order.
    const late = await startServer({
      onMessage: (m, conn) => {
        setTimeout(() => conn.send(m.kind === 'text' ? m.data.toString() : m.data), 60);
        return null;
      },
    });
    const c = await connect(late.wsUrl('/ws'), { protocol: 'plain' });
    const stray: unknown[] = [];
    c.on('message', (m) => stray.push(m.data));
    assert.equal(await errorCode(c.request('a', { timeout: 20 })), 'ECHO_ERR_TIMEOUT');
    assert.equal((await c.request('b')).data, 'b');
    assert.deepEqual(stray, []);
    assert.throws(() => c.send('x', { id: '1' }), /echo\.v1/);
    await c.close();
    await late.close();
  });

  test('iteration stops on its AbortSignal', async () => {
    const c = await connect(s.server);
    const ctl = new AbortController();
    const reading = (async () => {
      for await (const _ of c.messages({ signal: ctl.signal })) ctl.abort();
    })();
    c.send('one');
    assert.equal(await errorCode(reading), 'ECHO_ERR_ABORTED');
    await c.close();
  });

  test('connect honours its AbortSignal and timeout', async () => {
    assert.equal(await errorCode(connect(s.wsUrl('/ws'), { signal: AbortSignal.abort() })), 'ECHO_ERR_ABORTED');
    // A listener that never answers the hello: the connect deadline fires.
    const mute = net.createServer();
    const sockets = new Set<net.Socket>();
    mute.on('connection', (sock) => sockets.add(sock));
    mute.listen(0, '127.0.0.1');
    await new Promise((resolve) => mute.once('listening', resolve));
    try {
      const port = (mute.address() as net.AddressInfo).port;
      assert.equal(await errorCode(connect(`tcp://127.0.0.1:${port}`, { connectTimeoutMs: 100 })), 'ECHO_ERR_TIMEOUT');
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((resolve) => mute.close(resolve));
    }
  });
});

describe('reconnect', () => {
  /** Starts a server, stops it, starts one on the same ports: queued sends arrive once. */
  for (const kind of ['tcp', 'ws'] as const) {
    test(`${kind}: after a restart on the same port, queued sends are delivered once, in order`, async () => {
      let seen: string[] = [];
      let onSeen: (() => void) | undefined;
      // The first server echoes nothing that starts with "drop"; the second echoes everything.
      const opts = (ports: { ws: number; tcp: number }, drop: boolean): EchoServerOptions => ({
        host: '127.0.0.1',
        wsPort: ports.ws,
        tcpPort: ports.tcp,
        insecure: true,
        instance: 'test',
        logLevel: 'silent',
        onMessage: (m) => {
          seen.push(m.data.toString());
          onSeen?.();
          return drop && m.data.subarray(0, 4).toString() === 'drop' ? null : undefined;
        },
      });
      let server: EchoServer = createEchoServer(opts({ ws: 0, tcp: 0 }, true));
      const addr = await server.listen();
      const ports = { ws: addr.ws?.port ?? 0, tcp: addr.tcp?.port ?? 0 };
      const url = kind === 'tcp' ? `tcp://127.0.0.1:${ports.tcp}` : `ws://127.0.0.1:${ports.ws}/ws`;
      const c = await connect(url, { reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
      try {
        // Written before the drop, not idempotent: fails clearly. Idempotent: sent again.
        const lost = errorCode(c.request('drop-lost'));
        const kept = c.request('drop-kept', { idempotent: true });
        await new Promise<void>((resolve) => {
          onSeen = () => seen.length >= 2 && resolve();
          onSeen();
        });
        const dropped = next(c, 'close');
        await server.close({ drainMs: 50 });
        const closeEvent = await dropped;
        assert.equal(closeEvent.code, 1001);
        assert.equal(closeEvent.reconnecting, true);
        assert.equal(await lost, 'ECHO_ERR_CONNECTION_LOST');
        for (let i = 0; i < 5; i++) c.send(`queued-${i}`);
        assert.deepEqual(c.queued.messages, 5 + 1); // the idempotent request waits with them
        seen = [];
        const it = c.messages();
        server = createEchoServer(opts(ports, false));
        await server.listen();
        const opened = await next(c, 'open');
        assert.equal(opened.reconnected, true);
        const got: string[] = [];
        for await (const m of it) {
          got.push(m.data as string);
          if (got.length === 5) break;
        }
        assert.deepEqual(
          got,
          [0, 1, 2, 3, 4].map((i) => `queued-${i}`),
        );
        assert.equal((await kept).data, 'drop-kept');
        assert.equal((await c.request('after')).data, 'after');
        // Each queued message reached the new server exactly once.
        assert.deepEqual(seen, ['drop-kept', ...[0, 1, 2, 3, 4].map((i) => `queued-${i}`), 'after']);
      } finally {
        await c.close();
        await server.close({ drainMs: 50 });
      }
    });
  }

  test('queueing off: a send while reconnecting fails at once; reconnect off: the client closes', async () => {
    const s = await startServer();
    const c = await connect(`tcp://127.0.0.1:${s.tcpPort}`, { queue: false, reconnect: { initialDelayMs: 5000 } });
    const d = await connect(s.server, { reconnect: false });
    const cClosed = next(c, 'close');
    await s.close();
    await cClosed;
    assert.throws(
      () => c.send('x'),
      (e: { code: string }) => e.code === 'ECHO_ERR_CONNECTION_LOST',
    );
    assert.equal((await d.closed).code, 1001);
    assert.equal(d.readyState, 'closed');
    await c.close();
  });

  test('backoff is capped exponential with full jitter', async () => {
    const s = await startServer();
    const port = s.tcpPort;
    const c = await connect(`tcp://127.0.0.1:${port}`, { reconnect: { initialDelayMs: 1, maxDelayMs: 4, maxAttempts: 6 } });
    const delays: { attempt: number; delayMs: number }[] = [];
    c.on('reconnecting', (e) => delays.push(e));
    await s.close();
    const final = await c.closed;
    assert.equal(delays.length, 6);
    delays.forEach((d, i) => {
      assert.equal(d.attempt, i + 1);
      assert.ok(d.delayMs >= 0 && d.delayMs < Math.min(4, 2 ** i), `attempt ${d.attempt}: ${d.delayMs}`);
    });
    assert.match(final.reason, /gave up after 6 reconnect attempts/);
  });
});

describe('TLS pinning and authentication', () => {
  let tok: TlsServer;
  let jwt: TlsServer;
  before(async () => {
    tok = await startTlsServer({ auth: 'token', authTokens: `alice:${TOKEN}` });
    jwt = await startTlsServer({ auth: 'jwt', jwtSecret: JWT_SECRET, jwtAudience: ['echo'] });
  });
  after(async () => {
    await tok.close();
    await jwt.close();
  });

  test('pin accepted over tls:// and wss://; a wrong pin is refused before any byte; no trust at all says how to fix it', async () => {
    const pin = tok.server.tls?.fingerprint256 as string;
    const wrong = pin.replace(/^../, pin.startsWith('00') ? '11' : '00');
    for (const url of [`tls://127.0.0.1:${tok.tcpPort}`, tok.wssUrl('/ws')]) {
      const c = await connect(url, { token: TOKEN, tls: { fingerprint256: pin.toLowerCase() } });
      assert.equal((await c.request('pinned')).data, 'pinned');
      await c.close();
      assert.equal(await errorCode(connect(url, { token: TOKEN, tls: { fingerprint256: wrong } })), 'ECHO_ERR_TLS_PIN');
      await assert.rejects(connect(url, { token: TOKEN }), /tls\.fingerprint256/);
    }
  });

  test('token: accepted on tls and wss; wrong or missing token refused (ECHO_ERR_AUTH), no reconnect loop', async () => {
    const tls = { ca: tok.ca as string };
    for (const url of [`tls://127.0.0.1:${tok.tcpPort}`, tok.wssUrl('/ws')]) {
      const c = await connect(url, { token: TOKEN, tls });
      assert.equal((await c.request('authed')).data, 'authed');
      await c.close();
      assert.equal(await errorCode(connect(url, { token: 'wrong-0123456789abcdefghijkl', tls })), 'ECHO_ERR_AUTH');
      assert.equal(await errorCode(connect(url, { tls })), 'ECHO_ERR_AUTH');
    }
  });

  test('JWT, also from a function called on each connect', async () => {
    const key = new TextEncoder().encode(JWT_SECRET);
    let calls = 0;
    const token = (): Promise<string> => {
      calls++;
      return new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('carol')
        .setAudience('echo')
        .setExpirationTime(Math.floor(Date.now() / 1000) + 60)
        .sign(key);
    };
    for (const url of [`tls://127.0.0.1:${jwt.tcpPort}`, jwt.wssUrl('/ws')]) {
      const c = await connect(url, { token, tls: { ca: jwt.ca as string } });
      assert.equal((await c.request('jwt')).data, 'jwt');
      await c.close();
    }
    assert.equal(calls, 2);
    const bad = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setAudience('other').setExpirationTime('1m').sign(key);
    assert.equal(
      await errorCode(connect(`tls://127.0.0.1:${jwt.tcpPort}`, { token: bad, tls: { ca: jwt.ca as string } })),
      'ECHO_ERR_AUTH',
    );
  });
});

test('every option is checked, and the error names it', async () => {
  const cases: [ConnectTarget, Record<string, unknown>, RegExp][] = [
    ['http://x:1', {}, /^url: unsupported scheme http:/],
    ['tcp://127.0.0.1', {}, /^url: tcp: URLs need a port/],
    ['not a url', {}, /^url: not a URL/],
    ['tcp://127.0.0.1:1', { reconnect: 'yes' }, /^reconnect: must be/],
    ['tcp://127.0.0.1:1', { reconnect: { maxDelayMs: -1 } }, /^reconnect\.maxDelayMs: must be/],
    ['tcp://127.0.0.1:1', { queue: { maxMessages: 0 } }, /^queue\.maxMessages: must be an integer >= 1/],
    ['tcp://127.0.0.1:1', { requestTimeoutMs: 'soon' }, /^requestTimeoutMs: must be a number/],
    ['tcp://127.0.0.1:1', { token: '' }, /^token: must be a non-empty string/],
    ['tcp://127.0.0.1:1', { protocol: 'plain' }, /^protocol: is for WebSocket URLs only/],
    ['tcp://127.0.0.1:1', { tls: { ca: 'x' } }, /^tls: is for tls:\/\//],
    ['tls://127.0.0.1:1', { tls: { fingerprint256: 'AB:CD' } }, /tls\.fingerprint256: must be a SHA-256 fingerprint/],
    ['tls://127.0.0.1:1', { tls: { cert: 'x' } }, /^tls\.key: tls\.cert and tls\.key go together/],
    ['ws://127.0.0.1:1/', { protocol: 'v2' }, /^protocol: must be 'echo\.v1' or 'plain'/],
    ['ws://127.0.0.1:1/', { retries: 3 }, /^retries: unknown option/],
  ];
  for (const [target, options, message] of cases) {
    await assert.rejects(
      connect(target, options as ClientOptions),
      (e: Error) => message.test(e.message),
      `${String(target)} ${JSON.stringify(options)}`,
    );
  }
  await assert.rejects(
    connect('tcp://127.0.0.1:1', { connectTimeoutMs: 2000 }),
    (e: { code: string; message: string }) => e.code === 'ECHO_ERR_CONNECT' && /ECONNREFUSED/.test(e.message),
  );
});
