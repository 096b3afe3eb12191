/**
 * `serve --workers 2`: both workers share the listeners and echo, `/metrics` answers for the
 * whole cluster whichever worker takes the scrape (src/cli/cluster-metrics.ts), and SIGTERM
 * to the primary drains the workers and exits 0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { freePort } from '../../test-helpers/cli.js';
import { spawnCli } from '../../test-helpers/cli-lines.js';
import { parseExposition, value } from '../../test-helpers/prom.js';
import { httpGet, openWs } from '../../test-helpers/server.js';

describe('serve --workers 2', () => {
  it('echoes on both workers and serves one /metrics for the cluster', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const cli = spawnCli(['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', String(port), '--tcp-port', 'off', '--workers', '2']);
    try {
      await cli.waitFor((l) => l['event'] === 'listening' && l['worker'] === 1, 'worker 1 listening');
      await cli.waitFor((l) => l['event'] === 'listening' && l['worker'] === 2, 'worker 2 listening');
      const N = 6;
      for (let i = 0; i < N; i++) {
        const ws = await openWs(`ws://127.0.0.1:${port}/`);
        const echoed = once(ws, 'message');
        ws.send(`m${i}`);
        assert.equal(String((await echoed)[0]), `m${i}`);
        const closed = once(ws, 'close');
        ws.close();
        await closed;
      }
      // Precondition: the connections were spread over both workers (else this proves nothing).
      const pids = new Set(cli.lines.filter((l) => l['event'] === 'connection.open').map((l) => l['pid']));
      assert.equal(pids.size, 2, `connections opened on ${pids.size} worker(s)`);
      // Every scrape, whichever worker answers it, shows the cluster's totals.
      for (let i = 0; i < 4; i++) {
        const r = await httpGet(port, '/metrics');
        assert.equal(r.status, 200, r.body);
        const exp = parseExposition(r.body);
        assert.equal(value(exp, 'echo_connections_opened_total', { transport: 'ws' }), N, `scrape ${i}`);
        assert.equal(value(exp, 'echo_messages_in_total', { transport: 'ws' }), N, `scrape ${i}`);
        assert.equal(value(exp, 'echo_latency_seconds_count', { transport: 'ws' }), N, `scrape ${i}`);
      }
      const design = parseExposition((await httpGet(port, '/metrics/design')).body);
      assert.equal(value(design, 'messages_in', { transport: 'ws' }), N);
      cli.child.kill('SIGTERM');
      assert.deepEqual(await cli.exited, { code: 0, signal: null });
    } finally {
      cli.kill();
    }
  });

  it('SIGTERM to the whole process group (primary and workers at once) drains every worker and exits 0', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const cli = spawnCli(['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', String(port), '--tcp-port', 'off', '--workers', '2']);
    try {
      const pids: number[] = [];
      for (const id of [1, 2]) {
        const l = await cli.waitFor((x) => x['event'] === 'listening' && x['worker'] === id, `worker ${id} listening`);
        pids.push(l['pid'] as number);
      }
      // As systemd's default KillMode does: every process of the group gets the signal.
      cli.child.kill('SIGTERM');
      for (const pid of pids) process.kill(pid, 'SIGTERM');
      assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.stderr());
      assert.equal(cli.lines.filter((l) => l['event'] === 'stopped' && l['clean'] === true).length, 2, 'both workers drained');
      assert.equal(
        cli.lines.some((l) => String(l['msg']).startsWith('second signal')),
        false,
        'no worker took the primary for a second signal',
      );
    } finally {
      cli.kill();
    }
  });
});
