/**
 * The primary's side of `--workers` metrics (src/cli/cluster-metrics.ts), driven in-process
 * with fake workers: aggregation of the workers' answers, and its bounds (no worker, a worker
 * that never answers, too many scrapes in flight). The real cluster path is in
 * test/integration/workers.test.ts.
 */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { Counter, Registry } from 'prom-client';
import { MAX_PENDING, serveClusterMetrics } from '../../src/cli/cluster-metrics.js';

interface Sent {
  type: string;
  id: number;
  text?: string;
  error?: string;
}

/** A fake worker: records what the primary sends it; `answer` replies to collect requests. */
function fakeWorker(answer?: (id: number) => Promise<unknown>): Worker & { sent: Sent[]; next(): Promise<Sent> } {
  const sent: Sent[] = [];
  const waiters: ((m: Sent) => void)[] = [];
  const w = {
    sent,
    isConnected: () => true,
    send(m: Sent): boolean {
      sent.push(m);
      waiters.shift()?.(m);
      if (m.type === 'echoserver:metrics-collect' && answer !== undefined)
        void answer(m.id).then((json) => cluster.emit('message', w, { type: 'echoserver:metrics-collected', id: m.id, json }));
      return true;
    },
    next: () => new Promise<Sent>((resolve) => waiters.push(resolve)),
  };
  return w as unknown as Worker & { sent: Sent[]; next(): Promise<Sent> };
}

const workers = (): Record<string, Worker | undefined> => cluster.workers as Record<string, Worker | undefined>;
const render = (from: Worker, id: number): boolean =>
  cluster.emit('message', from, { type: 'echoserver:metrics-render', id, which: 'main' });

async function countingRegistry(value: number): Promise<unknown> {
  const r = new Registry();
  new Counter({ name: 'echo_messages_in_total', help: 'h', registers: [r] }).inc(value);
  return r.getMetricsAsJSON();
}

describe('cluster metrics (primary side)', () => {
  let stop: (() => void) | undefined;
  afterEach(() => {
    stop?.();
    for (const k of Object.keys(workers())) if (k.startsWith('test-')) delete workers()[k];
  });

  it('sums every worker’s answer into one exposition for the asking worker', async () => {
    stop = serveClusterMetrics(5_000);
    const a = fakeWorker(() => countingRegistry(3));
    const b = fakeWorker(() => countingRegistry(4));
    workers()['test-a'] = a;
    workers()['test-b'] = b;
    const reply = a.next().then(() => a.next()); // first the collect request, then the result
    render(a, 7);
    const r = await reply;
    assert.equal(r.type, 'echoserver:metrics-rendered');
    assert.equal(r.id, 7);
    assert.match(r.text ?? '', /^echo_messages_in_total 7$/m);
  });

  it('fails at once when no worker is connected', async () => {
    stop = serveClusterMetrics(5_000);
    const asker = fakeWorker();
    const reply = asker.next();
    render(asker, 1);
    assert.match((await reply).error ?? '', /no worker/);
  });

  it('fails the scrape when a worker does not answer in time (no partial sum)', async () => {
    stop = serveClusterMetrics(50);
    const silent = fakeWorker();
    const answering = fakeWorker(() => countingRegistry(1));
    workers()['test-silent'] = silent;
    workers()['test-answering'] = answering;
    const reply = answering.next().then(() => answering.next());
    render(answering, 2);
    const r = await reply;
    assert.equal(r.text, undefined);
    assert.match(r.error ?? '', /did not answer within 50 ms/);
  });

  it(`refuses more than ${MAX_PENDING} scrapes in flight, and ends them all when stopped`, async () => {
    stop = serveClusterMetrics(60_000);
    const silent = fakeWorker();
    workers()['test-silent'] = silent;
    const asker = fakeWorker();
    for (let i = 1; i <= MAX_PENDING; i++) render(asker, i);
    assert.equal(asker.sent.length, 0, 'all still in flight');
    const refused = asker.next();
    render(asker, MAX_PENDING + 1);
    const r = await refused;
    assert.equal(r.id, MAX_PENDING + 1);
    assert.match(r.error ?? '', /too many/);
    stop();
    stop = undefined;
    assert.equal(asker.sent.length, MAX_PENDING + 1, 'stopping answered every pending scrape');
    assert.ok(asker.sent.slice(1).every((m) => /shutting down/.test(m.error ?? '')));
  });
});
