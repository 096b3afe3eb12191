/**
 * Graceful shutdown over real sockets: every message the server received is echoed before
 * close 1001 (library and CLI with SIGTERM), close() is idempotent, listeners stop accepting,
 * and the drain deadline drops peers that never answer the close.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket from 'ws';
import { connectV1, type V1Client } from '../../src/index.js';
import { encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { startCli, PLAIN_SERVE_ARGS } from '../../test-helpers/cli.js';
import { closeCode, clientFrame, parseV1Frames, parseWsFrames, RawSocket, readV1Frames, wsHandshake } from '../../test-helpers/raw.js';
import { httpGet, openWs, refusedUpgradeStatus, startServer } from '../../test-helpers/server.js';

const WINDOW = 64;

/** A client that keeps WINDOW messages in flight until the connection closes. */
interface Driver {
  transport: 'ws' | 'tcp';
  /** Echoes received. */
  received: number;
  /** Resolves once `n` echoes arrived. */
  warmedUp: Promise<void>;
  /** Resolves with the close code. */
  closed: Promise<number>;
}

function driveWs(ws: WebSocket, warmup: number): Driver {
  const d: Driver = { transport: 'ws', received: 0, warmedUp: Promise.resolve(), closed: Promise.resolve(0) };
  let warm: () => void = () => {};
  d.warmedUp = new Promise((r) => (warm = r));
  let n = 0;
  const send = (): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(n++ % 2 === 0 ? `msg ${n}` : Buffer.from(`bin ${n}`));
  };
  ws.on('message', () => {
    if (++d.received === warmup) warm();
    send();
  });
  d.closed = new Promise((resolve) => ws.once('close', (code: number) => resolve(code)));
  for (let i = 0; i < WINDOW; i++) send();
  return d;
}

function driveV1(client: V1Client, warmup: number): Driver {
  const d: Driver = { transport: 'tcp', received: 0, warmedUp: Promise.resolve(), closed: Promise.resolve(0) };
  let warm: () => void = () => {};
  d.warmedUp = new Promise((r) => (warm = r));
  let n = 0;
  let closing = false;
  const send = (): void => {
    if (!closing && client.stream.writable)
      client.send(n++ % 2 === 0 ? `msg ${n}` : Buffer.from(`bin ${n}`), n % 5 === 0 ? { id: `m${n}` } : undefined);
  };
  client.on('error', () => {});
  client.on('message', () => {
    if (++d.received === warmup) warm();
    send();
  });
  d.closed = new Promise((resolve) =>
    client.once('close', (info) => {
      closing = true;
      resolve(info.code);
    }),
  );
  for (let i = 0; i < WINDOW; i++) send();
  return d;
}

const sum = (drivers: Driver[], transport: 'ws' | 'tcp'): number =>
  drivers.filter((d) => d.transport === transport).reduce((n, d) => n + d.received, 0);

describe('library close({ drainMs })', () => {
  test('under traffic: every received message is echoed, clients get 1001, close() is idempotent', { timeout: 15_000 }, async () => {
    const s = await startServer();
    const drivers: Driver[] = [];
    for (let i = 0; i < 2; i++) drivers.push(driveWs(await openWs(s.wsUrl('/')), 300));
    for (let i = 0; i < 2; i++) drivers.push(driveV1(await connectV1({ port: s.tcpPort }), 300));
    await Promise.all(drivers.map((d) => d.warmedUp));

    const first = s.server.close({ drainMs: 2000 });
    const second = s.server.close({ drainMs: 1 });
    assert.equal(second, first, 'the second call returns the same promise');
    const codes = await Promise.all(drivers.map((d) => d.closed));
    const result = await first;
    assert.deepEqual(result, { clean: true });
    assert.deepEqual(await s.server.close(), result);
    assert.deepEqual(codes, [1001, 1001, 1001, 1001]);

    const stats = s.server.stats();
    assert.equal(stats.ws.messagesIn, sum(drivers, 'ws'), 'ws: echoes received = messages the server counted');
    assert.equal(stats.tcp.messagesIn, sum(drivers, 'tcp'), 'tcp: echoes received = messages the server counted');
    assert.equal(stats.ws.messagesOut, stats.ws.messagesIn);
    assert.equal(stats.tcp.messagesOut, stats.tcp.messagesIn);
    assert.equal(s.server.connections.size, 0);
    assert.equal(s.server.ready, false);
    await assert.rejects(s.server.listen(), /closed/);
  });

  test(
    'while draining: TCP stops accepting; the HTTP listener answers /readyz 503 and refuses upgrades with 503',
    { timeout: 10_000 },
    async () => {
      const s = await startServer();
      // A peer that never answers the close keeps the drain open.
      const hold = await RawSocket.connect({ port: s.tcpPort });
      await hold.write(encodeFrame(V1Opcode.PING, Buffer.alloc(0)));
      await readV1Frames(hold, 1);
      const closing = s.server.close({ drainMs: 1000 });
      const [close] = await readV1Frames(hold, 1);
      assert.equal(close?.opcode, V1Opcode.CLOSE);
      assert.equal(close?.payload.readUInt16BE(0), 1001);
      const sock = net.connect(s.tcpPort, '127.0.0.1');
      const [err] = (await once(sock, 'error')) as [NodeJS.ErrnoException];
      assert.equal(err.code, 'ECONNREFUSED', 'the TCP port still accepts');
      // Probes keep reaching the HTTP side until the drain ends, so they see "not ready".
      assert.equal((await httpGet(s.wsPort, '/readyz')).status, 503);
      assert.equal(await refusedUpgradeStatus(`ws://127.0.0.1:${s.wsPort}/`), 503);
      // The peer now answers: the drain completes cleanly.
      await hold.write(encodeFrame(V1Opcode.CLOSE, close?.payload ?? Buffer.alloc(0)));
      await hold.waitClose();
      assert.deepEqual(await closing, { clean: true });
    },
  );

  test('drain deadline: peers that never answer the close frame → { clean: false } and they are gone', { timeout: 10_000 }, async () => {
    const s = await startServer();
    const { raw: wsPeer } = await wsHandshake(s.wsPort, '/');
    await wsPeer.write(clientFrame(0x1, 'hi'));
    await wsPeer.waitUntil(() => parseWsFrames(wsPeer.data()).frames.length >= 1);
    const tcpPeer = await RawSocket.connect({ port: s.tcpPort });
    await tcpPeer.write(encodeFrame(V1Opcode.TEXT, Buffer.from('hi')));
    await tcpPeer.waitUntil(() => parseV1Frames(tcpPeer.data()).frames.length >= 1);
    assert.equal(s.server.connections.size, 2);

    const result = await s.server.close({ drainMs: 300 });
    assert.deepEqual(result, { clean: false });
    assert.equal(s.server.connections.size, 0);
    await Promise.all([wsPeer.waitClose(), tcpPeer.waitClose()]);
    // Both got the echo, then close 1001, before being dropped.
    const wsFrames = parseWsFrames(wsPeer.data()).frames;
    assert.deepEqual(
      wsFrames.map((f) => f.opcode),
      [0x1, 0x8],
    );
    assert.equal(closeCode(wsFrames[1]?.payload ?? Buffer.alloc(0)), 1001);
    const v1Frames = parseV1Frames(tcpPeer.data()).frames;
    assert.deepEqual(
      v1Frames.map((f) => f.opcode),
      [V1Opcode.TEXT, V1Opcode.CLOSE],
    );
    assert.equal(v1Frames[1]?.payload.readUInt16BE(0), 1001);
  });
});

describe('CLI: SIGTERM during traffic', () => {
  test('exits 0 and the "stopped" totals equal the echoes the clients received', { timeout: 20_000 }, async () => {
    const cli = await startCli([...PLAIN_SERVE_ARGS, '--drain-timeout', '5s']);
    try {
      const wsPort = cli.listening.listeners.ws?.port;
      const tcpPort = cli.listening.listeners.tcp?.port;
      assert.ok(wsPort && tcpPort);
      const drivers = [
        driveWs(await openWs(`ws://127.0.0.1:${wsPort}/`), 300),
        driveWs(await openWs(`ws://127.0.0.1:${wsPort}/ws`), 300),
        driveV1(await connectV1({ port: tcpPort }), 300),
      ];
      await Promise.all(drivers.map((d) => d.warmedUp));
      cli.child.kill('SIGTERM');
      const codes = await Promise.all(drivers.map((d) => d.closed));
      const { code, signal } = await cli.exited;
      assert.equal(signal, null);
      assert.equal(code, 0, `exit code; stderr: ${cli.stderr()}`);
      assert.deepEqual(codes, [1001, 1001, 1001]);
      const stopped = cli.lines.find((l) => l['event'] === 'stopped') as
        { clean: boolean; totals: { transport: string; messagesIn: number; messagesOut: number }[] } | undefined;
      assert.ok(stopped, 'a "stopped" log line');
      assert.equal(stopped.clean, true);
      const byTransport = Object.fromEntries(stopped.totals.map((t) => [t.transport, t]));
      assert.equal(byTransport['ws']?.messagesIn, sum(drivers, 'ws'));
      assert.equal(byTransport['tcp']?.messagesIn, sum(drivers, 'tcp'));
      assert.equal(byTransport['ws']?.messagesOut, byTransport['ws']?.messagesIn);
      assert.equal(byTransport['tcp']?.messagesOut, byTransport['tcp']?.messagesIn);
    } finally {
      cli.kill();
    }
  });

  test('SIGTERM / SIGINT right after the "listening" line: drained, exit 0', { timeout: 15_000 }, async () => {
    // A supervisor may signal as soon as the server says it is listening: the handlers must
    // already be installed by then (otherwise the default action kills the process).
    const results: string[] = [];
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGINT', 'SIGTERM'] as const) {
      const cli = await startCli(['--insecure', '--host', '127.0.0.1', '--ws-port', '0', '--tcp-port', '0', '--log-format', 'json']);
      try {
        cli.child.kill(signal);
        const { code, signal: killedBy } = await cli.exited;
        const stopped = cli.lines.some((l) => l['event'] === 'stopped');
        results.push(`${signal}: code ${code} signal ${killedBy} stopped-line ${stopped}`);
      } finally {
        cli.kill();
      }
    }
    assert.deepEqual(
      results,
      results.map((r) => r.replace(/code .*$/, 'code 0 signal null stopped-line true')),
    );
  });
});
