/**
 * `serve --workers 2`: both workers share the listeners and echo, each with its own id (in
 * `srv`, hello, `/info`, logs and metrics labels); `/metrics` answers for the whole cluster
 * whichever worker takes the scrape (src/cli/cluster-metrics.ts); a killed worker is replaced
 * while the other's connections stay open; `/readyz` is ready only when every worker is
 * (src/cli/supervisor.ts); SIGTERM to the primary drains the workers and exits 0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { V1Client, type ClientMessage } from '../../src/client/stream-client.js';
import { encodeV1Frame, V1Opcode } from '../../src/protocol/index.js';
import { freePort } from '../../test-helpers/cli.js';
import { spawnCli, type CliProcess, type LogLine } from '../../test-helpers/cli-lines.js';
import { findSamples, parseExposition } from '../../test-helpers/prom.js';
import { httpGet, openWs } from '../../test-helpers/server.js';

const GATE_HOOK = fileURLToPath(new URL('../../test-helpers/worker-gate.js', import.meta.url));

const listening = (id: string) => (l: LogLine) => l['event'] === 'listening' && l['worker'] === id;

function serveWorkers(port: number, tcpPort: number | 'off', env: Record<string, string> = {}): CliProcess {
  return spawnCli(
    ['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', String(port), '--tcp-port', String(tcpPort), '--workers', '2'],
    env,
  );
}

/** Sum of every worker's series `name{labels}`, and the set of worker labels seen. */
function total(text: string, name: string, labels: Record<string, string>): { sum: number; workers: Set<string> } {
  const found = findSamples(parseExposition(text), name, labels);
  return { sum: found.reduce((a, s) => a + s.value, 0), workers: new Set(found.map((s) => s.labels['worker'] ?? '')) };
}

/** A framing-v1 client on 127.0.0.1:port: its hello reply, and one echo with a header. */
async function v1Session(port: number): Promise<{ client: V1Client; hello: Record<string, unknown>; echo: ClientMessage }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const client = new V1Client(socket);
  const hello = once(client, 'hello');
  socket.write(encodeV1Frame(V1Opcode.HELLO, Buffer.from('{"v":1}')));
  const [h] = (await hello) as [Record<string, unknown>];
  const echoed = once(client, 'message');
  client.send('hi', { id: 'x' });
  const [echo] = (await echoed) as [ClientMessage];
  return { client, hello: h, echo };
}

describe('serve --workers 2', () => {
  it('echoes on both workers, with distinct ids in srv, hello, /info, logs and metrics', { timeout: 30_000 }, async () => {
    const [port, tcpPort] = [await freePort(), await freePort()];
    const cli = serveWorkers(port, tcpPort);
    const clients: V1Client[] = [];
    try {
      const pids = new Map<string, unknown>();
      for (const id of ['1', '2']) pids.set(id, (await cli.waitFor(listening(id), `worker ${id} listening`))['pid']);
      assert.notEqual(pids.get('1'), pids.get('2'));
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
      // Logs: every line of a worker names it; the connections were spread over both.
      const opened = cli.lines.filter((l) => l['event'] === 'connection.open');
      assert.deepEqual(new Set(opened.map((l) => l['worker'])), new Set(['1', '2']), 'connections logged by both workers');
      for (const l of opened) assert.equal(l['pid'], pids.get(String(l['worker'])), 'worker id and pid agree');
      // srv and hello on framing v1: the same id, and both ids appear across connections.
      const seen = new Set<string>();
      for (let i = 0; i < 6 && seen.size < 2; i++) {
        const s = await v1Session(tcpPort);
        clients.push(s.client);
        const srv = s.echo.header?.['srv'] as Record<string, unknown> | undefined;
        assert.equal(typeof s.hello['worker'], 'string');
        assert.equal(srv?.['worker'], s.hello['worker'], 'srv and hello name the same worker');
        seen.add(String(s.hello['worker']));
      }
      assert.deepEqual(seen, new Set(['1', '2']), 'hello/srv from both workers');
      // /info: each answer names its worker; over fresh connections both answer.
      const infoIds = new Set<unknown>();
      for (let i = 0; i < 8 && infoIds.size < 2; i++)
        infoIds.add((JSON.parse((await httpGet(port, '/info')).body) as Record<string, unknown>)['worker']);
      assert.deepEqual(infoIds, new Set(['1', '2']));
      // Every scrape, whichever worker answers it, shows the cluster: one series per worker.
      for (let i = 0; i < 4; i++) {
        const r = await httpGet(port, '/metrics');
        assert.equal(r.status, 200, r.body);
        for (const name of ['echo_connections_opened_total', 'echo_messages_in_total', 'echo_latency_seconds_count']) {
          const t = total(r.body, name, { transport: 'ws' });
          assert.equal(t.sum, N, `${name}, scrape ${i}`);
          assert.deepEqual(t.workers, new Set(['1', '2']), `${name} labelled per worker`);
        }
        assert.equal(total(r.body, 'echo_worker_crashes_total', {}).sum, 0);
        assert.equal(total(r.body, 'echo_workers_listening', {}).sum, 2);
      }
      const design = (await httpGet(port, '/metrics/design')).body;
      assert.equal(total(design, 'messages_in', { transport: 'ws' }).sum, N);
      for (const c of clients) c.stream.destroy();
      cli.child.kill('SIGTERM');
      assert.deepEqual(await cli.exited, { code: 0, signal: null });
    } finally {
      for (const c of clients) c.stream.destroy();
      cli.kill();
    }
  });

  it(
    'a killed worker is replaced (logged, counted) while the other keeps its connections; /readyz follows the workers',
    { timeout: 30_000 },
    async () => {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'echo-workers-'));
      const gate = join(dir, 'hold');
      // The replacement waits at start while `gate` exists: "one worker down" lasts until we lift it.
      const cli = serveWorkers(port, 'off', { NODE_OPTIONS: `--import ${GATE_HOOK}`, TEST_WORKER_GATE: gate });
      const sockets: Awaited<ReturnType<typeof openWs>>[] = [];
      try {
        const first = await cli.waitFor(listening('1'), 'worker 1 listening');
        await cli.waitFor(listening('2'), 'worker 2 listening');
        await cli.waitFor((l) => l['event'] === 'workers.ready' && l['ready'] === true, 'every worker ready');
        for (let i = 0; i < 4; i++) assert.equal((await httpGet(port, '/readyz')).status, 200, 'ready: both workers listen');
        // Open connections until some are on worker 2 (their opens are logged with the worker id).
        for (let i = 0; i < 8; i++) sockets.push(await openWs(`ws://127.0.0.1:${port}/`));
        const opens = (id: string): number => cli.lines.filter((l) => l['event'] === 'connection.open' && l['worker'] === id).length;
        await cli.waitFor(() => opens('1') + opens('2') === sockets.length, 'every connection logged');
        const [on1, on2] = [opens('1'), opens('2')];
        assert.ok(on1 > 0 && on2 > 0, `connections on both workers (${on1}, ${on2})`);
        let closed = 0;
        const worker1Gone = new Promise<void>((resolve) => {
          for (const ws of sockets) ws.once('close', () => ++closed === on1 && resolve());
        });
        writeFileSync(gate, '');
        process.kill(first['pid'] as number, 'SIGKILL');
        const crash = await cli.waitFor((l) => l['event'] === 'worker.crash', 'the crash logged');
        assert.equal(crash['worker'], '1');
        assert.equal(crash['signal'], 'SIGKILL');
        assert.equal(crash['replaced'], true);
        await cli.waitFor((l) => l['event'] === 'workers.ready' && l['ready'] === false, 'not ready logged');
        // Only worker 2 serves now, and it is not ready: one worker of two is down.
        for (let i = 0; i < 4; i++) {
          const r = await httpGet(port, '/readyz');
          assert.equal(r.status, 503, r.body);
        }
        await worker1Gone;
        const alive = sockets.filter((ws) => ws.readyState === ws.OPEN);
        assert.equal(alive.length, on2, "worker 2's connections stay open");
        for (const ws of alive) {
          const echoed = once(ws, 'message');
          ws.send('still here');
          assert.equal(String((await echoed)[0]), 'still here');
        }
        // Lift the gate: the replacement (worker id 1 again, a new pid) starts and all are ready.
        rmSync(gate);
        const replacement = await cli.waitFor((l) => listening('1')(l) && l['pid'] !== first['pid'], 'the replacement listening');
        assert.notEqual(replacement['pid'], first['pid']);
        await cli.waitFor(
          (l) => l['event'] === 'workers.ready' && l['ready'] === true && cli.lines.indexOf(l) > cli.lines.indexOf(crash),
          'ready again',
        );
        for (let i = 0; i < 4; i++) assert.equal((await httpGet(port, '/readyz')).status, 200);
        for (const ws of alive) assert.equal(ws.readyState, ws.OPEN, 'no connection of worker 2 was dropped');
        const metrics = await httpGet(port, '/metrics');
        assert.equal(total(metrics.body, 'echo_worker_crashes_total', {}).sum, 1, 'the crash is counted');
        for (const ws of sockets) ws.terminate();
        cli.child.kill('SIGTERM');
        assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.stderr());
      } finally {
        for (const ws of sockets) ws.terminate();
        cli.kill();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('SIGTERM drains every worker: open connections get 1001, both stop cleanly, exit 0', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const cli = serveWorkers(port, 'off');
    const sockets: Awaited<ReturnType<typeof openWs>>[] = [];
    try {
      for (const id of ['1', '2']) await cli.waitFor(listening(id), `worker ${id} listening`);
      for (let i = 0; i < 6; i++) sockets.push(await openWs(`ws://127.0.0.1:${port}/`));
      const onWorkers = new Set(cli.lines.filter((l) => l['event'] === 'connection.open').map((l) => l['worker']));
      const closes = sockets.map((ws) => once(ws, 'close') as Promise<[number, Buffer]>);
      cli.child.kill('SIGTERM');
      const codes = (await Promise.all(closes)).map(([code]) => code);
      assert.deepEqual(new Set(codes), new Set([1001]), 'every connection closed with 1001 (going away)');
      assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.stderr());
      const stopped = cli.lines.filter((l) => l['event'] === 'stopped' && l['clean'] === true).map((l) => l['worker']);
      assert.deepEqual(new Set(stopped), new Set(['1', '2']), 'both workers drained cleanly');
      assert.ok(onWorkers.size >= 1);
    } finally {
      for (const ws of sockets) ws.terminate();
      cli.kill();
    }
  });

  it('SIGTERM to the whole process group (primary and workers at once) drains every worker and exits 0', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const cli = serveWorkers(port, 'off');
    try {
      const pids: number[] = [];
      for (const id of ['1', '2']) pids.push((await cli.waitFor(listening(id), `worker ${id} listening`))['pid'] as number);
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

  it('a worker that cannot start (port taken) stops the server with exit 1, not a half-served port', { timeout: 30_000 }, async () => {
    const taken = net.createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const cli = serveWorkers((taken.address() as net.AddressInfo).port, 'off');
      try {
        assert.deepEqual(await cli.exited, { code: 1, signal: null });
        assert.ok(
          cli.lines.some((l) => l['event'] === 'worker.failed'),
          cli.stdout(),
        );
      } finally {
        cli.kill();
      }
    } finally {
      taken.close();
    }
  });

  it('--workers auto starts one worker per CPU; --worker-id with --workers is refused', { timeout: 30_000 }, async () => {
    const { availableParallelism } = await import('node:os');
    const { loadSettings } = await import('../../src/config/index.js');
    assert.equal(loadSettings(['--workers', 'auto'], {}).settings.workers, Math.min(64, availableParallelism()));
    assert.equal(loadSettings([], { ECHO_WORKERS: 'AUTO' }).settings.workers, Math.min(64, availableParallelism()));
    const auto = spawnCli(['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', '0', '--tcp-port', 'off', '--workers', 'auto']);
    try {
      for (let id = 1; id <= Math.min(64, availableParallelism()); id++) await auto.waitFor(listening(String(id)), `worker ${id}`);
      auto.child.kill('SIGTERM');
      assert.deepEqual(await auto.exited, { code: 0, signal: null });
    } finally {
      auto.kill();
    }
    const bad = spawnCli(['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', '0', '--workers', '2', '--worker-id', 'x']);
    const exit = await bad.exited;
    assert.equal(exit.code, 2);
    assert.match(bad.stderr(), /--worker-id .* set by the --workers primary/);
  });
});
