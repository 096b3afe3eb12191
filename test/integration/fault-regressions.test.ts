/**
 * Fault tests of the defects the reliability work found, now fixed (see docs/RELIABILITY.md):
 * the plaintext WebSocket port has no deadline for a peer that never speaks; logs to a full disk
 * (stdout on /dev/full) stop the server from answering; a worker killed under --workers 2 is not
 * replaced. The rest of the faults, all passing, are in faults.test.ts.
 *
 * Faults, each a test: peers that reset mid-frame, half-open peers, peers that never speak,
 * a connection flood over the limit, descriptor exhaustion (see also security-limits.test.ts),
 * a worker killed under --workers 2, SIGTERM under load, and logs going nowhere. Servers that
 * could crash run as CLI child processes, so a crash is an exit the test sees.
 */
import { describe, test } from 'node:test';
import { assertGood, connectTcp, goodTraffic, withServers } from '../../test-helpers/faults.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { freePort, PLAIN_SERVE_ARGS, spawnCliInShell } from '../../test-helpers/cli.js';
import { spawnCli } from '../../test-helpers/cli-lines.js';

/** 30 connections, each one echo: every connection logs an open and a close line. */
async function serveAndEcho(port: number): Promise<void> {
  for (let i = 0; i < 30; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    await once(ws, 'open');
    const echoed = once(ws, 'message');
    ws.send(`m${i}`);
    assert.equal(String((await echoed)[0]), `m${i}`);
    ws.terminate();
  }
}

describe('a peer that connects and never speaks', () => {
  test(
    'closed at the handshake deadline on the WebSocket port and on the TLS ports, while a good client is served',
    { timeout: 30_000 },
    async () => {
      await withServers(['--handshake-timeout', '500ms'], async (s) => {
        const good = await goodTraffic(s.ports, 5, ['ws', 'wss', 'tls-len']);
        const silent = await Promise.all([s.ports.ws, s.ports.wss, s.ports.tlsLen].map((p) => connectTcp(p)));
        const closed = silent.map((sock) => once(sock, 'close'));
        for (let i = 0; i < 20; i++) for (const c of good) c.send(512);
        await Promise.all(good.map((c) => c.settle(10_000)));
        assertGood(good);
        // Bounded: a peer still open 5 s after a 500 ms deadline fails the test.
        const within = await Promise.race([Promise.all(closed).then(() => true), delay(5000).then(() => false)]);
        const open = silent.flatMap((sock, i) => (sock.closed ? [] : [['ws', 'wss', 'tls len'][i]]));
        for (const sock of silent) sock.destroy();
        assert.ok(within, `still open 5 s after the 500 ms handshake deadline: ${open.join(', ')}`);
        for (const sock of silent) assert.equal(sock.bytesRead, 0, 'nothing was sent to a peer that never spoke');
        await Promise.all(good.map((c) => c.close()));
      });
    },
  );
});

describe('logs that go nowhere', () => {
  test('logs to a full disk (stdout is /dev/full): the server keeps serving, and exits 0 on SIGTERM', { timeout: 30_000 }, async (t) => {
    const port = await freePort();
    const child = spawnCliInShell(t, 'exec "$0" "$@" > /dev/full', [...PLAIN_SERVE_ARGS, '--ws-port', String(port), '--tcp-port', 'off']);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // No log line can tell us it listens: poll /healthz (bounded).
    let up = false;
    for (let i = 0; i < 100 && !up && child.exitCode === null; i++) {
      up = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (!up) await delay(50);
    }
    assert.ok(up, `the server answers /healthz (exit ${child.exitCode}): ${stderr}`);
    await serveAndEcho(port);
    assert.equal(child.exitCode, null, stderr);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, stderr);
  });
});

describe('a worker killed under --workers 2', () => {
  test('is replaced, and the other worker’s clients are untouched', { timeout: 40_000 }, async () => {
    const port = await freePort();
    const cli = spawnCli([...PLAIN_SERVE_ARGS, '--ws-port', String(port), '--tcp-port', 'off', '--workers', '2']);
    try {
      const pids: number[] = [];
      for (const id of [1, 2])
        pids.push(
          (await cli.waitFor((x) => x['event'] === 'listening' && String(x['worker']) === String(id), `worker ${id}`))['pid'] as number,
        );
      // Connections until both workers hold some (the kernel spreads them).
      const clients: { ws: WebSocket; pid: number }[] = [];
      for (let i = 0; i < 40 && new Set(clients.map((c) => c.pid)).size < 2; i++) {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
        ws.on('error', () => undefined);
        await once(ws, 'open');
        // The server logs the peer's address: match it to this client's local port.
        const local = (ws as unknown as { _socket: net.Socket })._socket.localPort;
        const open = await cli.waitFor(
          (l) => l['event'] === 'connection.open' && String(l['peer']).endsWith(`:${local}`),
          'connection.open',
        );
        clients.push({ ws, pid: open['pid'] as number });
      }
      const [victim, survivor] = pids as [number, number];
      const survivors = clients.filter((c) => c.pid === survivor);
      assert.ok(survivors.length > 0 && survivors.length < clients.length, 'both workers hold clients');
      process.kill(victim, 'SIGKILL');
      // The survivor's clients keep echoing.
      for (const { ws } of survivors) {
        const echoed = once(ws, 'message');
        ws.send('after the kill');
        assert.equal(String((await echoed)[0]), 'after the kill');
      }
      // A replacement worker starts listening (a new pid).
      const replaced = await Promise.race([
        cli.waitFor((l) => l['event'] === 'listening' && typeof l['pid'] === 'number' && !pids.includes(l['pid']), 'a replacement worker'),
        delay(15_000).then(() => undefined),
      ]);
      assert.ok(replaced !== undefined, 'no replacement worker within 15 s of the kill');
      for (const { ws } of clients) ws.terminate();
      cli.child.kill('SIGTERM');
      assert.equal((await cli.exited).code, 0);
    } finally {
      cli.kill();
    }
  });
});
