/**
 * Shared by the fault tests (faults.test.ts, fault-regressions.test.ts): the fuzzer's two CLI
 * servers around a test, good traffic on every transport, and a TCP connect that never hangs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GoodClient, Rng, startServers, TRANSPORTS, type Servers } from '../bench/fuzz/common.js';

/** Opens one good client per transport and has them echo `n` messages each. */
export async function goodTraffic(ports: Servers['ports'], n: number, transports = TRANSPORTS): Promise<GoodClient[]> {
  const rng = new Rng(7);
  const clients = await Promise.all(transports.map((t) => GoodClient.open(t, ports, rng)));
  for (let i = 0; i < n; i++) for (const c of clients) c.send(512);
  await Promise.all(clients.map((c) => c.settle(10_000)));
  return clients;
}

export function assertGood(clients: GoodClient[]): void {
  for (const c of clients) {
    assert.deepEqual(c.stats.failures, [], c.transport);
    assert.equal(c.stats.echoed, c.stats.sent, c.transport);
  }
}

/** Runs `fn` with the plain and TLS CLI servers (extra flags for both), then stops them. */
export async function withServers(extra: string[], fn: (s: Servers) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'echo-faults-'));
  const servers = await startServers(join(dir, 'echo.sock'), extra);
  try {
    await fn(servers);
  } finally {
    servers.plain.kill();
    servers.secure.kill();
    await Promise.all([servers.plain.exited, servers.secure.exited]);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Connects and resolves on 'connect' or 'error' (a dead server must not hang the test). */
export function connectTcp(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  return new Promise((resolve) => {
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(s));
  });
}
