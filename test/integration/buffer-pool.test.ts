// Frames that span reads are collected into pooled buffers, returned once their echo is
// flushed: the pool is reused and never holds more than its cap, whatever the traffic.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { it } from 'node:test';
import type WebSocket from 'ws';
import { pooledBuffers } from '../../src/transports/ws.js';
import { openWs, startServer } from '../../test-helpers/server.js';

const POOL_MAX = 32;

it('pooled receive buffers are reused and capped, echoes intact', async (t) => {
  const s = await startServer();
  t.after(() => s.close());
  const clients: WebSocket[] = await Promise.all(Array.from({ length: 8 }, () => openWs(s.wsUrl())));
  // 8 clients × 10 messages of 64 KiB in flight at once: more buffers than the pool keeps.
  const payloads = clients.map(() => Array.from({ length: 10 }, () => randomBytes(64 * 1024)));
  await Promise.all(
    clients.map(async (ws, i) => {
      const mine = payloads[i] ?? [];
      const got: Buffer[] = [];
      const all = new Promise<void>((resolve) =>
        ws.on('message', (d: Buffer) => {
          got.push(d);
          if (got.length === mine.length) resolve();
        }),
      );
      for (const p of mine) ws.send(p);
      await all;
      got.forEach((d, k) => assert.ok(d.equals(mine[k] as Buffer), `client ${i} echo ${k}`));
    }),
  );
  assert.ok(pooledBuffers() > 0, 'flushed echoes returned their buffers');
  assert.ok(pooledBuffers() <= POOL_MAX, `pool holds ${pooledBuffers()} > ${POOL_MAX}`);
  await Promise.all(
    clients.map(async (ws) => {
      ws.close();
      await once(ws, 'close');
    }),
  );
});
