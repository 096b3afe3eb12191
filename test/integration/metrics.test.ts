/**
 * /metrics and /metrics/design against a real server after known traffic: exact counters per
 * transport, the open-connections gauge following connections up and down, closes and
 * rejections by reason, the latency histogram and `avg_latency_ms`, `promtool check metrics`
 * on the live output, and the admin port (`adminPort` / `--admin-port`) taking the metrics off
 * the WebSocket listener. Real sockets on port 0; every wait is on an event.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { Socket } from 'node:net';
import { connectV1, type V1Client } from '../../src/index.js';
import { V1Opcode } from '../../src/protocol/v1.js';
import { startCli } from '../../test-helpers/cli.js';
import { findSamples, parseExposition, promtoolCheckMetrics, value, type PromExposition } from '../../test-helpers/prom.js';
import { parseV1Frames, RawSocket } from '../../test-helpers/raw.js';
import { httpGet, nextClose, nextOpen, openWs, refusedUpgradeStatus, startServer, type StartedServer } from '../../test-helpers/server.js';

const TRANSPORTS = ['ws', 'tcp', 'unix', 'raw', 'inproc'] as const;
const REASONS = [
  'normal',
  'shutdown',
  'malformed',
  'invalid-utf8',
  'too-big',
  'policy',
  'auth',
  'rate',
  'replay',
  'limit',
  'idle',
  'keepalive',
  'backpressure',
  'handshake',
  'error',
  'internal',
] as const;

/** Size on the wire of a masked client WebSocket frame / an unmasked server frame. */
const wsLen = (payload: number, masked: boolean): number => (payload < 126 ? 2 : payload < 65536 ? 4 : 10) + (masked ? 4 : 0) + payload;

async function scrape(port: number, path: '/metrics' | '/metrics/design'): Promise<{ text: string; exp: PromExposition }> {
  const r = await httpGet(port, path);
  assert.equal(r.status, 200, `GET ${path}: ${r.body}`);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return { text: r.body, exp: parseExposition(r.body) };
}

/** Asserts both gauges (lint-clean and design name) for every transport. */
async function assertOpen(port: number, expected: Partial<Record<(typeof TRANSPORTS)[number], number>>, when: string): Promise<void> {
  const main = (await scrape(port, '/metrics')).exp;
  const design = (await scrape(port, '/metrics/design')).exp;
  for (const transport of TRANSPORTS) {
    const want = expected[transport] ?? 0;
    assert.equal(value(main, 'echo_connections_open', { transport }), want, `echo_connections_open{transport="${transport}"} ${when}`);
    assert.equal(value(design, 'connection_count', { transport }), want, `connection_count{transport="${transport}"} ${when}`);
  }
}

/** Every (transport, reason) series of a by-reason counter, with the expected non-zero ones. */
function assertByReason(exp: PromExposition, name: string, nonZero: Record<string, number>): void {
  for (const transport of TRANSPORTS) {
    for (const reason of REASONS) {
      const want = nonZero[`${transport}/${reason}`] ?? 0;
      assert.equal(value(exp, name, { transport, reason }), want, `${name}{transport="${transport}",reason="${reason}"}`);
    }
  }
}

describe('metrics after known traffic', () => {
  let srv: StartedServer;
  before(async () => {
    // Two connections at most (to provoke a limit rejection); idle closes after 2 s.
    srv = await startServer({ maxConnections: 2, idleTimeoutMs: 2000 });
  });
  after(() => srv.close());

  it('counts exactly, per transport, and the gauge follows connections', async () => {
    const port = srv.wsPort;
    await assertOpen(port, {}, 'before any connection');

    // ---- A: WebSocket, 37 text messages of 1..37 bytes
    const openedA = nextOpen((e) => e.connection.transport === 'ws');
    const a = await openWs(srv.wsUrl());
    await openedA;
    await assertOpen(port, { ws: 1 }, 'after the WebSocket opened');

    // ---- B: TCP framing v1, 11 binary messages of 10..20 bytes
    const openedB = nextOpen((e) => e.connection.transport === 'tcp');
    const b: V1Client = await connectV1({ port: srv.tcpPort });
    await openedB;
    await assertOpen(port, { ws: 1, tcp: 1 }, 'after the TCP connection opened');

    // ---- the limit (2) is reached: one refused upgrade and one refused TCP connection
    assert.equal(await refusedUpgradeStatus(srv.wsUrl()), 503);
    const refused = await RawSocket.connect({ port: srv.tcpPort });
    await refused.waitClose();
    const [closeFrame] = parseV1Frames(refused.data()).frames;
    assert.equal(closeFrame?.opcode, V1Opcode.CLOSE);
    assert.equal(closeFrame?.payload.readUInt16BE(0), 1013);
    await assertOpen(port, { ws: 1, tcp: 1 }, 'after the refusals');

    const wsEchoes = new Promise<void>((resolve) => {
      let n = 0;
      a.on('message', () => {
        if (++n === 37) resolve();
      });
    });
    for (let i = 1; i <= 37; i++) {
      a.send('w'.repeat(i));
    }
    await wsEchoes;

    let tcpPayload = 0;
    const tcpEchoes = new Promise<void>((resolve) => {
      let n = 0;
      b.on('message', () => {
        if (++n === 11) resolve();
      });
    });
    for (let i = 10; i <= 20; i++) {
      b.send(Buffer.alloc(i, i));
      tcpPayload += i;
    }
    await tcpEchoes;

    // Peer-initiated normal closes.
    const closedA = nextClose((e) => e.connection.transport === 'ws');
    a.close(1000);
    assert.equal((await closedA).reason, 'normal');
    await assertOpen(port, { tcp: 1 }, 'after the WebSocket closed');
    const closedB = nextClose((e) => e.connection.transport === 'tcp');
    await b.close(1000);
    assert.equal((await closedB).reason, 'normal');
    await assertOpen(port, {}, 'after the TCP connection closed');

    // ---- C: one malformed v1 frame (unknown opcode 0x5) → close 1002, reason malformed
    const closedC = nextClose((e) => e.connection.transport === 'tcp');
    const c = await RawSocket.connect({ port: srv.tcpPort });
    const bad = Buffer.from([0, 0, 0, 1, 0x05]);
    await c.write(bad);
    await c.waitClose();
    assert.equal((await closedC).reason, 'malformed');
    const [cClose] = parseV1Frames(c.data()).frames;
    assert.equal(cClose?.payload.readUInt16BE(0), 1002);

    // ---- D: a WebSocket that says nothing → idle close (1001 "idle timeout")
    const closedD = nextClose((e) => e.connection.transport === 'ws');
    const d = await openWs(srv.wsUrl());
    const [dCode, dReason] = (await once(d, 'close')) as [number, Buffer];
    assert.equal(dCode, 1001);
    assert.equal((await closedD).reason, 'idle');
    await assertOpen(port, {}, 'after every connection closed');

    // ---- the totals
    const { text, exp } = await scrape(port, '/metrics');
    const design = (await scrape(port, '/metrics/design')).exp;
    const expected = {
      ws: { opened: 2, closed: 2, in: 37, out: 37 },
      tcp: { opened: 2, closed: 2, in: 11, out: 11 },
    } as const;
    for (const transport of TRANSPORTS) {
      const e = transport === 'ws' || transport === 'tcp' ? expected[transport] : { opened: 0, closed: 0, in: 0, out: 0 };
      assert.equal(value(exp, 'echo_messages_in_total', { transport }), e.in, `echo_messages_in_total{transport="${transport}"}`);
      assert.equal(value(exp, 'echo_messages_out_total', { transport }), e.out, `echo_messages_out_total{transport="${transport}"}`);
      assert.equal(value(design, 'messages_in', { transport }), e.in, `messages_in{transport="${transport}"}`);
      assert.equal(value(design, 'messages_out', { transport }), e.out, `messages_out{transport="${transport}"}`);
      assert.equal(value(exp, 'echo_connections_opened_total', { transport }), e.opened, `opened{transport="${transport}"}`);
      const closed = findSamples(exp, 'echo_connections_closed_total', { transport }).reduce((n, s) => n + s.value, 0);
      assert.equal(closed, e.closed, `sum of echo_connections_closed_total{transport="${transport}"}`);
    }
    assertByReason(exp, 'echo_connections_closed_total', { 'ws/normal': 1, 'ws/idle': 1, 'tcp/normal': 1, 'tcp/malformed': 1 });
    assertByReason(exp, 'echo_rejections_total', { 'ws/limit': 1, 'tcp/limit': 1 });

    // Bytes are counted on the wire (framing, masks and close frames included), as the core
    // counts every read and write. WebSocket: 37 masked data frames + A's close (1000) + D's
    // echo of our close (1001 "idle timeout"); out: 37 unmasked echoes + our close replies.
    const idleClose = 2 + Buffer.byteLength(dReason);
    assert.equal(dReason.toString(), 'idle timeout');
    let wsIn = wsLen(2, true) + wsLen(idleClose, true);
    let wsOut = wsLen(2, false) + wsLen(idleClose, false);
    for (let i = 1; i <= 37; i++) {
      wsIn += wsLen(i, true);
      wsOut += wsLen(i, false);
    }
    assert.equal(wsIn - wsOut, 37 * 4 + 8, 'sanity: only the masks differ');
    assert.equal(value(exp, 'echo_bytes_in_total', { transport: 'ws' }), wsIn, 'echo_bytes_in_total{transport="ws"}');
    assert.equal(value(exp, 'echo_bytes_out_total', { transport: 'ws' }), wsOut, 'echo_bytes_out_total{transport="ws"}');
    // TCP: exactly what the clients' sockets wrote and read.
    const bSock = b.stream as Socket;
    const tcpIn = bSock.bytesWritten + c.socket.bytesWritten;
    const tcpOut = bSock.bytesRead + c.socket.bytesRead;
    assert.equal(tcpIn, 11 * 5 + tcpPayload + 7 + bad.length, 'sanity: v1 frames are 5 bytes + payload, close 7');
    assert.equal(value(exp, 'echo_bytes_in_total', { transport: 'tcp' }), tcpIn, 'echo_bytes_in_total{transport="tcp"}');
    assert.equal(value(exp, 'echo_bytes_out_total', { transport: 'tcp' }), tcpOut, 'echo_bytes_out_total{transport="tcp"}');

    // Nothing queued once everything closed.
    for (const transport of TRANSPORTS) assert.equal(value(exp, 'echo_send_queue_bytes', { transport }), 0);

    // Latency histogram: observations for both transports, cumulative buckets, +Inf = count.
    assert.equal(exp.types.get('echo_latency_seconds'), 'histogram');
    for (const transport of ['ws', 'tcp'] as const) {
      const count = value(exp, 'echo_latency_seconds_count', { transport });
      assert.ok(count > 0, `echo_latency_seconds_count{transport="${transport}"} = ${count}`);
      assert.ok(value(exp, 'echo_latency_seconds_sum', { transport }) > 0);
      const buckets = findSamples(exp, 'echo_latency_seconds_bucket', { transport });
      assert.equal(buckets.length, 14, '13 bounds + +Inf');
      for (let i = 1; i < buckets.length; i++)
        assert.ok((buckets[i] as { value: number }).value >= (buckets[i - 1] as { value: number }).value, 'cumulative');
      assert.equal(value(exp, 'echo_latency_seconds_bucket', { transport, le: '+Inf' }), count);
      // Design name: present, a finite positive mean in milliseconds.
      const avg = value(design, 'avg_latency_ms', { transport });
      assert.ok(Number.isFinite(avg) && avg > 0, `avg_latency_ms{transport="${transport}"} = ${avg}`);
    }
    assert.equal(design.types.get('avg_latency_ms'), 'gauge');
    assert.equal(design.types.get('connection_count'), 'gauge');
    assert.equal(design.types.get('messages_in'), 'counter');
    assert.equal(design.types.get('messages_out'), 'counter');
    // Process metrics ride along.
    assert.ok(findSamples(exp, 'nodejs_eventloop_lag_seconds').length === 1, 'event-loop lag');
    assert.ok(findSamples(exp, 'nodejs_heap_size_used_bytes').length === 1, 'heap');

    // The live exposition passes promtool with no complaint at all.
    const lint = promtoolCheckMetrics(text);
    assert.equal(lint.output, '', 'promtool check metrics reported problems');
    assert.equal(lint.status, 0);
  });
});

describe('echo latency', () => {
  it('is observed once per read that carried messages, not for reads of close frames', async (t) => {
    const srv = await startServer({ tcpPort: null });
    t.after(() => srv.close());
    for (let i = 0; i < 5; i++) {
      const ws = await openWs(srv.wsUrl());
      const echoed = once(ws, 'message');
      ws.send('x');
      await echoed;
      const closed = once(ws, 'close');
      ws.close(); // a read with only a close frame
      await closed;
    }
    const { exp } = await scrape(srv.wsPort, '/metrics');
    assert.equal(value(exp, 'echo_messages_in_total', { transport: 'ws' }), 5);
    assert.equal(value(exp, 'echo_latency_seconds_count', { transport: 'ws' }), 5);
  });
});

describe('admin port', () => {
  it('library adminPort: 0 serves the metrics there, and the WebSocket port answers 404', async (t) => {
    const srv = await startServer({ adminPort: 0 });
    t.after(() => srv.close());
    const admin = srv.addr.admin;
    assert.ok(admin !== undefined && admin.port > 0, 'admin listener bound');
    assert.notEqual(admin.port, srv.wsPort);
    // Some traffic, so the admin listener shows the WebSocket listener's totals.
    const ws = await openWs(srv.wsUrl());
    const echoed = once(ws, 'message');
    ws.send('x');
    await echoed;
    const main = await scrape(admin.port, '/metrics');
    assert.equal(value(main.exp, 'echo_messages_in_total', { transport: 'ws' }), 1);
    assert.equal(value(main.exp, 'echo_connections_open', { transport: 'ws' }), 1);
    const design = await scrape(admin.port, '/metrics/design');
    assert.equal(value(design.exp, 'messages_in', { transport: 'ws' }), 1);
    for (const path of ['/metrics', '/metrics/design']) {
      const r = await httpGet(srv.wsPort, path);
      assert.equal(r.status, 404, `GET ${path} on the WebSocket port`);
      assert.doesNotMatch(r.body, /echo_|messages_in/);
    }
    const closed = once(ws, 'close');
    ws.close();
    await closed;
  });

  it('metrics: false serves no metrics at all', async (t) => {
    const srv = await startServer({ metrics: false });
    t.after(() => srv.close());
    assert.equal((await httpGet(srv.wsPort, '/metrics')).status, 404);
    assert.equal((await httpGet(srv.wsPort, '/metrics/design')).status, 404);
  });

  it('CLI --admin-port 0 binds an admin listener that serves /metrics', async (t) => {
    const cli = await startCli([
      'serve',
      '--insecure',
      '--host',
      '127.0.0.1',
      '--ws-port',
      '0',
      '--tcp-port',
      'off',
      '--admin-port',
      '0',
      '--log-format',
      'json',
    ]);
    t.after(() => cli.kill());
    const listeners = cli.listening.listeners as { ws?: { port: number }; admin?: { port: number } };
    assert.ok(listeners.admin !== undefined, `listening line has an admin listener: ${JSON.stringify(listeners)}`);
    assert.ok(listeners.ws !== undefined);
    const main = await scrape(listeners.admin.port, '/metrics');
    assert.equal(value(main.exp, 'echo_messages_in_total', { transport: 'ws' }), 0);
    assert.equal((await httpGet(listeners.ws.port, '/metrics')).status, 404);
    cli.child.kill('SIGTERM');
    assert.equal((await cli.exited).code, 0);
  });
});
