/**
 * Nothing lost: thousands of messages on every transport (ws, ws echo.v1, wss, TCP v1, Unix v1,
 * raw, TLS len) under a per-connection rate limit, a 1 KiB send-queue high water (backpressure)
 * and readers that pause: each message is echoed exactly once, in order, byte for byte
 * (GoodClient checks each echo against the oldest message not yet echoed), and the count of
 * echoes equals the count sent and the server's own count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { GoodClient, Rng, startServers, TRANSPORTS } from '../../bench/fuzz/common.js';

const PER_CLIENT = 2000;

test(
  `${PER_CLIENT} messages per transport under rate limiting, backpressure and slow readers: each echoed once, in order`,
  { timeout: 120_000 },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'echo-lost-'));
    // 3000 messages/s with a 100 ms burst: the clients send faster, so the server throttles them;
    // a 1 KiB queue high water: the server stops reading whenever a paused client's echoes pile up.
    const servers = await startServers(join(dir, 'echo.sock'), [
      '--rate-messages',
      '3000',
      '--rate-burst',
      '100ms',
      '--max-queue-bytes',
      '1KiB',
      '--stall-timeout',
      '0',
    ]);
    try {
      const rng = new Rng(42);
      const clients = await Promise.all(TRANSPORTS.map((t) => GoodClient.open(t, servers.ports, rng)));
      // Send in bursts of 500; after each burst the reader pauses for 150 ms, then catches up.
      for (let sent = 0; sent < PER_CLIENT; sent += 500) {
        for (const c of clients) c.setPaused(true);
        for (const c of clients) for (let i = 0; i < 500; i++) c.send(2048);
        await delay(150);
        for (const c of clients) c.setPaused(false);
      }
      await Promise.all(clients.map((c) => c.settle(60_000)));
      // Every transport's outcome at once (one failing transport does not hide the others).
      assert.deepEqual(
        clients.map((c) => `${c.transport}: ${c.stats.echoed}/${c.stats.sent} ${c.stats.failures.join('; ')}`.trim()),
        clients.map((c) => `${c.transport}: ${PER_CLIENT}/${PER_CLIENT}`),
      );
      const res = await fetch(`http://127.0.0.1:${servers.ports.ws}/metrics`);
      const text = await res.text();
      const m = /^echo_messages_out_total\{transport="tcp"\} (\d+)/m.exec(text);
      assert.equal(Number(m?.[1]), PER_CLIENT, 'the server counted as many TCP echoes');
      await Promise.all(clients.map((c) => c.close()));
      const codes = await servers.stop();
      assert.deepEqual(codes, { plain: 0, secure: 0 });
    } finally {
      servers.plain.kill();
      servers.secure.kill();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
