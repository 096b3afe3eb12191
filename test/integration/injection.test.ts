/**
 * Latency and fault injection over real sockets (issue 12): delayed echoes while an undelayed
 * connection on the same server stays fast, order under delay and jitter, the `srv.delay`
 * stamp, the --max-delay cap, faults refused without --fault-injection (403 before the upgrade,
 * close 1008 for header fields) and obeyed with it (close after N, drop, stall), the fault
 * metric and event, drain with delayed echoes pending, and the whoami view in the hello reply.
 * Timing assertions are relative (this before that) or lower bounds, never tight upper bounds.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket from 'ws';
import http from 'node:http';
import { attach, V1Client } from '../../src/index.js';
import { encodeBody, parseBody, V1Opcode } from '../../src/protocol/v1.js';
import { FAULT_CHANNEL, type FaultEvent } from '../../src/core/injection.js';
import { request } from '../../test-helpers/http.js';
import { httpGet, openWs, refusedUpgradeStatus, startServer, wsClosed, type StartedServer } from '../../test-helpers/server.js';

type Header = Record<string, unknown>;

/** An echo.v1 message: a v1 text body with an optional header. */
function v1(text: string, header?: Header): Buffer {
  return encodeBody(V1Opcode.TEXT, Buffer.from(text), header === undefined ? undefined : Buffer.from(JSON.stringify(header)));
}

interface V1Echo {
  opcode: number;
  text: string;
  header: Header | undefined;
  at: number;
}

function parseV1(data: Buffer): V1Echo {
  const p = parseBody(data, 0, data.length, { maxFrameBytes: 1 << 24, maxHeaderBytes: 65535 });
  return {
    opcode: p.opcode,
    text: data.toString('utf8', p.payloadStart, data.length),
    header: p.headerStart >= 0 ? (JSON.parse(data.toString('utf8', p.headerStart, p.headerEnd)) as Header) : undefined,
    at: performance.now(),
  };
}

/** Collects every message of a `ws` client, with its arrival time; `wait(n)` resolves at n. */
function collect(ws: WebSocket): { all: { data: Buffer; at: number }[]; wait(n: number): Promise<{ data: Buffer; at: number }[]> } {
  const all: { data: Buffer; at: number }[] = [];
  const waiters: { n: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  ws.on('message', (data: Buffer) => {
    all.push({ data, at: performance.now() });
    for (const w of waiters.filter((x) => all.length >= x.n)) w.resolve();
  });
  ws.once('close', (code: number) => {
    for (const w of waiters) if (all.length < w.n) w.reject(new Error(`closed (${code}) after ${all.length} of ${w.n} messages`));
  });
  return {
    all,
    async wait(n) {
      if (all.length < n) await new Promise<void>((resolve, reject) => waiters.push({ n, resolve, reject }));
      return all.slice(0, n);
    },
  };
}

async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = once(ws, 'close');
  ws.close();
  await closed;
}

/** The status and body of a refused upgrade. */
async function refusal(url: string, protocols?: string): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url, protocols);
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('upgrade accepted'));
    });
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
      });
    });
    ws.once('error', () => undefined);
  });
}

describe('latency injection (no --fault-injection)', () => {
  let s: StartedServer;
  before(async () => {
    s = await startServer({ maxDelayMs: 2000 });
  });
  after(() => s.close());

  test('?delay delays every echo of that connection; an undelayed connection stays fast', async () => {
    const slow = await openWs(s.wsUrl('/ws?delay=400'));
    const fast = await openWs(s.wsUrl('/ws'));
    const slowIn = collect(slow);
    const fastIn = collect(fast);
    const t0 = performance.now();
    slow.send('slow');
    fast.send('fast');
    const [f] = await fastIn.wait(1);
    const [sl] = await slowIn.wait(1);
    assert.equal(f?.data.toString(), 'fast');
    assert.equal(sl?.data.toString(), 'slow');
    assert.ok((f?.at ?? 0) < (sl?.at ?? 0), 'the undelayed echo came first');
    assert.ok((sl?.at ?? 0) - t0 >= 390, `delayed by at least 400 ms, got ${(sl?.at ?? 0) - t0}`);
    // Many round trips on the fast connection fit inside one delay of the slow one.
    slow.send('slow 2');
    let fastTrips = 0;
    for (; fastTrips < 20; fastTrips++) {
      fast.send(`f${fastTrips}`);
      await fastIn.wait(fastTrips + 2);
    }
    assert.equal(slowIn.all.length, 1, 'the second delayed echo is still pending after 20 fast round trips');
    await slowIn.wait(2);
    await closeWs(slow);
    await closeWs(fast);
  });

  test('jitter (?delay=0-60): echoes keep their order', async () => {
    const ws = await openWs(s.wsUrl('/ws?delay=0-60'));
    const got = collect(ws);
    const n = 30;
    for (let i = 0; i < n; i++) ws.send(String(i));
    const all = await got.wait(n);
    assert.deepEqual(
      all.map((m) => m.data.toString()),
      Array.from({ length: n }, (_, i) => String(i)),
    );
    await closeWs(ws);
  });

  test('echo.v1 header delay: that message is delayed, later ones wait behind it, srv.delay reports it', async () => {
    const ws = await openWs(s.wsUrl('/ws'), 'echo.v1');
    const got = collect(ws);
    const t0 = performance.now();
    ws.send(v1('a', { id: 'a', delay: 300 }));
    ws.send(v1('b', { id: 'b' }));
    ws.send(v1('c'));
    const [a, b, c] = (await got.wait(3)).map((m) => parseV1(m.data));
    assert.deepEqual([a?.text, b?.text, c?.text], ['a', 'b', 'c'], 'order per connection holds');
    assert.ok((a?.at ?? 0) - t0 >= 290);
    const srvA = a?.header?.['srv'] as Header;
    assert.equal(a?.header?.['delay'], 300, 'the client field comes back unchanged');
    assert.equal(srvA['delay'], 300);
    assert.ok((srvA['tx'] as number) - (srvA['rx'] as number) >= 290, 'tx - rx covers the delay');
    const srvB = b?.header?.['srv'] as Header;
    assert.ok((srvB['delay'] as number) > 0, 'b waited behind a: its applied delay is reported');
    await closeWs(ws);
  });

  test('--max-delay: a larger request is refused (400 before the upgrade, close 1008 for a header)', async () => {
    const r = await refusal(s.wsUrl('/ws?delay=2001'));
    assert.equal(r.status, 400);
    assert.match(r.body, /over --max-delay \(2000 ms\)/);
    assert.equal((await refusal(s.wsUrl('/ws?delay=abc'))).status, 400);
    const ws = await openWs(s.wsUrl('/ws'), 'echo.v1');
    const closed = wsClosed(ws);
    ws.send(v1('x', { delay: '100-5000' }));
    const c = await closed;
    assert.equal(c.code, 1008);
    assert.match(c.reason, /over --max-delay/);
  });

  test('faults are refused without --fault-injection: 403 before the upgrade, 1008 for header fields', async () => {
    for (const q of ['drop=1', 'close=4000&after=1', 'stall=100', 'delay=10&drop=0.5']) {
      const r = await refusal(s.wsUrl(`/ws?${q}`));
      assert.equal(r.status, 403, q);
      assert.match(r.body, /--fault-injection/);
    }
    for (const h of [{ close: 4000 }, { drop: 1 }]) {
      const ws = await openWs(s.wsUrl('/ws'), 'echo.v1');
      const closed = wsClosed(ws);
      ws.send(v1('x', h));
      const c = await closed;
      assert.equal(c.code, 1008, JSON.stringify(h));
      assert.match(c.reason, /fault injection is off/);
    }
    // Framing v1 over TCP refuses the same way.
    const socket = net.connect(s.tcpPort, '127.0.0.1');
    const client = new V1Client(socket);
    await once(socket, 'connect');
    const closed = once(client, 'close') as Promise<[{ code: number; reason: string }]>;
    client.send('x', { drop: 1 });
    const [info] = await closed;
    assert.equal(info.code, 1008);
    assert.match(info.reason, /fault injection is off/);
  });

  test('framing v1 over TCP: header delay keeps order and is stamped', async () => {
    const socket = net.connect(s.tcpPort, '127.0.0.1');
    const client = new V1Client(socket);
    await once(socket, 'connect');
    const got: { text: string; header: Header | undefined }[] = [];
    const all = new Promise<void>((resolve) =>
      client.on('message', (m) => {
        got.push({ text: m.data.toString(), header: m.header });
        if (got.length === 2) resolve();
      }),
    );
    client.send('first', { delay: 200 });
    client.send('second');
    await all;
    assert.deepEqual(
      got.map((g) => g.text),
      ['first', 'second'],
    );
    assert.equal((got[0]?.header?.['srv'] as Header)['delay'], 200);
    socket.destroy();
  });
});

describe('fault injection (--fault-injection)', () => {
  let s: StartedServer;
  const events: FaultEvent[] = [];
  const onFault = (e: unknown): void => {
    events.push(e as FaultEvent);
  };
  before(async () => {
    diagnosticsChannel.subscribe(FAULT_CHANNEL, onFault);
    s = await startServer({ faultInjection: true, maxDelayMs: 2000 });
  });
  after(async () => {
    diagnosticsChannel.unsubscribe(FAULT_CHANNEL, onFault);
    await s.close();
  });

  test('?close=CODE&after=N closes with that code after N echoes', async () => {
    const ws = await openWs(s.wsUrl('/ws?close=4001&after=2'));
    const got = collect(ws);
    const closed = wsClosed(ws);
    for (const m of ['1', '2', '3']) ws.send(m);
    const c = await closed;
    assert.equal(c.code, 4001);
    assert.deepEqual(
      got.all.map((m) => m.data.toString()),
      ['1', '2'],
    );
    assert.ok(events.some((e) => e.fault === 'close' && e.code === 4001));
  });

  test('?close=CODE without after closes at once', async () => {
    const ws = new WebSocket(s.wsUrl('/?close=4002'));
    const [code] = (await once(ws, 'close')) as [number];
    assert.equal(code, 4002);
  });

  test('?drop=1 drops every echo; a header drop: 0 lets one through; a header close closes after its echo', async () => {
    const ws = await openWs(s.wsUrl('/ws?drop=1'), 'echo.v1');
    const got = collect(ws);
    ws.send(v1('lost 1'));
    ws.send(v1('lost 2'));
    ws.send(v1('kept', { drop: 0 }));
    const [first] = await got.wait(1);
    assert.equal(parseV1(first?.data as Buffer).text, 'kept', 'the dropped echoes never came');
    const closed = wsClosed(ws);
    ws.send(v1('last', { drop: 0, close: 4003 }));
    const c = await closed;
    assert.equal(c.code, 4003);
    assert.equal(parseV1(got.all[1]?.data as Buffer).text, 'last', 'echoed, then closed');
    assert.ok(events.filter((e) => e.fault === 'drop').length >= 2);
  });

  test('?stall=MS: the server reads nothing for MS; another connection is unaffected', async () => {
    const t0 = performance.now();
    const stalled = await openWs(s.wsUrl('/ws?stall=300'));
    const other = await openWs(s.wsUrl('/ws'));
    const sIn = collect(stalled);
    const oIn = collect(other);
    stalled.send('late');
    other.send('now');
    const [o] = await oIn.wait(1);
    const [l] = await sIn.wait(1);
    assert.ok((o?.at ?? 0) < (l?.at ?? 0));
    assert.ok((l?.at ?? 0) - t0 >= 290);
    assert.ok(events.some((e) => e.fault === 'stall'));
    await closeWs(stalled);
    await closeWs(other);
  });

  test('framing v1: header drop and close work on TCP too', async () => {
    const socket = net.connect(s.tcpPort, '127.0.0.1');
    const client = new V1Client(socket);
    await once(socket, 'connect');
    const got: string[] = [];
    client.on('message', (m) => got.push(m.data.toString()));
    const closed = once(client, 'close') as Promise<[{ code: number; reason: string }]>;
    client.send('dropped', { drop: 1 });
    client.send('kept');
    client.send('bye', { close: 4004 });
    const [info] = await closed;
    assert.equal(info.code, 4004);
    assert.deepEqual(got, ['kept', 'bye']);
  });

  test('every injected fault is counted in /metrics', async () => {
    const m = await httpGet(s.wsPort, '/metrics');
    const line = (kind: string, transport: string): number => {
      const re = new RegExp(`^echo_injected_total\\{transport="${transport}",kind="${kind}"\\} (\\d+)$`, 'm');
      return Number(re.exec(m.body)?.[1] ?? -1);
    };
    assert.ok(
      line('drop', 'ws') >= 2,
      m.body
        .split('\n')
        .filter((l) => l.includes('injected'))
        .join('\n'),
    );
    assert.ok(line('close', 'ws') >= 2);
    assert.ok(line('stall', 'ws') >= 1);
    assert.ok(line('drop', 'tcp') >= 1);
  });
});

describe('drain and whoami on the wire', () => {
  test('drain flushes delayed echoes before close 1001', async () => {
    const s = await startServer({ maxDelayMs: 30_000 });
    const ws = await openWs(s.wsUrl('/ws?delay=20000'));
    const got = collect(ws);
    const closed = wsClosed(ws);
    ws.send('pending');
    // The message has reached the server when its connection counts it.
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if ([...s.server.connections].some((c) => c.messagesIn === 1)) resolve();
        else setImmediate(check);
      };
      check();
    });
    const result = await s.server.close({ drainMs: 5000 });
    const c = await closed;
    assert.equal(c.code, 1001);
    assert.deepEqual(
      got.all.map((m) => m.data.toString()),
      ['pending'],
    );
    assert.equal(result.clean, true);
  });

  test('the hello reply carries the whoami view (echo.v1 and framing v1), redacted', async () => {
    const s = await startServer({ trustedProxies: ['127.0.0.1'] });
    try {
      const ws = await openWs(s.wsUrl('/ws?token=secret-in-url-0123'), 'echo.v1', {
        headers: { cookie: 'sid=cookie-secret', 'x-forwarded-for': '198.51.100.4' },
      });
      const got = collect(ws);
      ws.send(encodeBody(V1Opcode.HELLO, Buffer.from('{"v":1}')));
      const [m] = await got.wait(1);
      const raw = (m?.data as Buffer).toString();
      assert.ok(!raw.includes('secret-in-url') && !raw.includes('cookie-secret'), raw);
      const p = parseBody(m?.data as Buffer, 0, (m?.data as Buffer).length, { maxFrameBytes: 1 << 20, maxHeaderBytes: 4096 });
      assert.equal(p.opcode, V1Opcode.HELLO);
      const hello = JSON.parse((m?.data as Buffer).toString('utf8', p.payloadStart)) as Header;
      const who = hello['whoami'] as Header;
      assert.equal((who['forwarded'] as Header)['client'], '198.51.100.4');
      assert.equal(((who['request'] as Header)['headers'] as Header)['cookie'], '[REDACTED]');
      assert.equal((who['remote'] as Header)['address'], '127.0.0.1');
      await closeWs(ws);

      const socket = net.connect(s.tcpPort, '127.0.0.1');
      const client = new V1Client(socket);
      await once(socket, 'connect');
      const reply = await client.hello({ v: 1 });
      const tcpWho = reply['whoami'] as Header;
      assert.equal((tcpWho['remote'] as Header)['address'], '127.0.0.1');
      assert.equal(tcpWho['request'], null);
      assert.equal(tcpWho['instance'], 'test');
      socket.destroy();
    } finally {
      await s.close();
    }
  });

  test('unrelated query parameters and plain upgrades are untouched', async () => {
    const s = await startServer();
    try {
      assert.equal(await refusedUpgradeStatus(s.wsUrl('/ws?foo=bar')), 101);
      assert.equal((await request(s.wsPort, { path: '/healthz' })).status, 200);
    } finally {
      await s.close();
    }
  });
});

describe('attach()', () => {
  test('an attached endpoint takes ?delay, refuses faults by default, and obeys them with faultInjection', async () => {
    const app = http.createServer((_req, res) => res.end('app'));
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const port = (app.address() as net.AddressInfo).port;
    const plain = attach(app, { path: '/echo-ws', maxDelayMs: 1000 });
    try {
      assert.equal((await refusal(`ws://127.0.0.1:${port}/echo-ws?drop=1`)).status, 403);
      assert.equal((await refusal(`ws://127.0.0.1:${port}/echo-ws?delay=1001`)).status, 400);
      const ws = await openWs(`ws://127.0.0.1:${port}/echo-ws?delay=50`);
      const got = collect(ws);
      ws.send('hi');
      assert.equal((await got.wait(1))[0]?.data.toString(), 'hi');
      await closeWs(ws);
    } finally {
      await plain.close({ drainMs: 500 });
    }
    const faulty = attach(app, { path: '/echo-ws', faultInjection: true });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/echo-ws?close=4005`);
      const [code] = (await once(ws, 'close')) as [number];
      assert.equal(code, 4005);
    } finally {
      await faulty.close({ drainMs: 500 });
      app.close();
      await once(app, 'close');
    }
  });
});
