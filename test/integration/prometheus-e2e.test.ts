/**
 * End to end with a real Prometheus server (Debian package `prometheus`, /usr/bin/prometheus):
 * our server on 127.0.0.1:0, a generated config with two jobs (/metrics and /metrics/design on
 * the same target, as deploy/prometheus.yml does), Prometheus on a free loopback port, and
 * PromQL through its HTTP API sees exactly the messages the test sent. Waiting is on events:
 * /-/ready answering, then the query returning a sample (Prometheus scrapes every second),
 * bounded at 30 s each; the interval between two polls of Prometheus' API is not a
 * synchronisation sleep, it paces the polling of an external process.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { it } from 'node:test';
import WebSocket from 'ws';
import { startServer } from '../../test-helpers/server.js';

const PROMETHEUS = '/usr/bin/prometheus';
const N = 53;
const WAIT_MS = 30_000;
const POLL_MS = 200;

/** A loopback port that was free a moment ago: listen on port 0, read it, close. */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  srv.close();
  await once(srv, 'close');
  return port;
}

/** GET on 127.0.0.1 that resolves with status and body, or undefined when nothing listens yet. */
function tryGet(port: number, path: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
  });
}

interface QueryResult {
  status: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

/**
 * Polls `until` (every POLL_MS, at most WAIT_MS) while Prometheus is alive; rejects early with
 * its stderr if it exits. Returns the first non-undefined answer.
 */
async function poll<T>(what: string, prom: ChildProcess, stderr: () => string, until: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (prom.exitCode !== null || prom.signalCode !== null) {
      assert.fail(`prometheus exited (${prom.exitCode ?? prom.signalCode}) while waiting for ${what}:\n${stderr()}`);
    }
    const r = await until();
    if (r !== undefined) return r;
    if (Date.now() > deadline) assert.fail(`timed out after ${WAIT_MS} ms waiting for ${what}\n${stderr()}`);
    await delay(POLL_MS);
  }
}

async function instantQuery(port: number, query: string): Promise<QueryResult | undefined> {
  const r = await tryGet(port, `/api/v1/query?query=${encodeURIComponent(query)}`);
  if (r === undefined || r.status !== 200) return undefined;
  const body = JSON.parse(r.body) as QueryResult;
  return body.data.result.length > 0 ? body : undefined;
}

it('a real Prometheus scrapes both expositions and PromQL sees what was sent', { timeout: 60_000 }, async (t) => {
  try {
    accessSync(PROMETHEUS, constants.X_OK);
  } catch {
    assert.fail(
      `${PROMETHEUS} not found: this test needs the Debian package "prometheus", which CI installs (.ci/run); ` +
        'locally: apt-get install -y --no-install-recommends prometheus. It never skips.',
    );
  }

  // ---- our server, with known traffic finished before Prometheus starts
  const srv = await startServer({ tcpPort: null });
  t.after(() => srv.close());
  const ws = new WebSocket(srv.wsUrl());
  await once(ws, 'open');
  const echoed = new Promise<void>((resolve) => {
    let n = 0;
    ws.on('message', () => {
      if (++n === N) resolve();
    });
  });
  for (let i = 0; i < N; i++) ws.send(`message ${i}`);
  await echoed;

  // ---- Prometheus, on a generated config in a temp dir
  const dir = await mkdtemp(join(tmpdir(), 'echoserver-prom-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = `127.0.0.1:${srv.wsPort}`;
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    '  - job_name: echoserver',
    '    metrics_path: /metrics',
    `    static_configs: [{ targets: ['${target}'] }]`,
    '  - job_name: echoserver-design',
    '    metrics_path: /metrics/design',
    `    static_configs: [{ targets: ['${target}'] }]`,
    '',
  ].join('\n');
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, config);
  const promPort = await freePort();
  const prom = spawn(
    PROMETHEUS,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  prom.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const promExited = once(prom, 'exit');
  // Registered after the temp-dir cleanup, so it runs first (t.after hooks run in reverse).
  t.after(async () => {
    if (prom.exitCode === null && prom.signalCode === null) {
      prom.kill('SIGTERM');
      const killer = setTimeout(() => prom.kill('SIGKILL'), 10_000);
      await promExited;
      clearTimeout(killer);
    }
  });
  const getStderr = (): string => stderr;

  await poll('/-/ready', prom, getStderr, async () => ((await tryGet(promPort, '/-/ready'))?.status === 200 ? true : undefined));

  // Both jobs up (each target scraped successfully at least once).
  const up = await poll('up == 1 for both jobs', prom, getStderr, async () => {
    const r = await instantQuery(promPort, 'up == 1');
    return r !== undefined && r.data.result.length === 2 ? r : undefined;
  });
  assert.deepEqual(up.data.result.map((s) => s.metric['job']).sort(), ['echoserver', 'echoserver-design']);

  // The design name, exactly as the design document spells it.
  const design = await poll('sum(messages_in)', prom, getStderr, () => instantQuery(promPort, 'sum(messages_in)'));
  assert.equal(Number(design.data.result[0]?.value[1]), N, 'sum(messages_in)');
  const designWs = await poll('messages_in{transport="ws"}', prom, getStderr, () => instantQuery(promPort, 'messages_in{transport="ws"}'));
  assert.equal(designWs.data.result[0]?.metric['job'], 'echoserver-design');
  assert.equal(Number(designWs.data.result[0]?.value[1]), N);

  // The lint-clean name.
  const main = await poll('sum(echo_messages_in_total)', prom, getStderr, () => instantQuery(promPort, 'sum(echo_messages_in_total)'));
  assert.equal(Number(main.data.result[0]?.value[1]), N, 'sum(echo_messages_in_total)');
  const out = await poll('sum(messages_out)', prom, getStderr, () => instantQuery(promPort, 'sum(messages_out)'));
  assert.equal(Number(out.data.result[0]?.value[1]), N, 'sum(messages_out)');
  const open = await poll('connection_count', prom, getStderr, () => instantQuery(promPort, 'sum(connection_count)'));
  assert.equal(Number(open.data.result[0]?.value[1]), 1, 'sum(connection_count) with one client connected');

  // Prometheus recorded the promised types for the design names.
  const meta = await tryGet(promPort, '/api/v1/metadata?metric=messages_in');
  assert.equal(meta?.status, 200);
  const types = (JSON.parse(meta?.body ?? '{}') as { data?: Record<string, Array<{ type: string }>> }).data?.['messages_in'];
  assert.equal(types?.[0]?.type, 'counter', `metadata of messages_in: ${meta?.body}`);

  const closed = once(ws, 'close');
  ws.close();
  await closed;
});
