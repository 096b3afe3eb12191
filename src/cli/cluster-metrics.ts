/**
 * `/metrics` for `--workers N`: every worker's listeners are shared (cluster), so a scrape
 * lands on any one worker; that worker asks the primary, the primary asks every worker for
 * its metrics as JSON and returns one exposition aggregated with prom-client's cluster
 * aggregation (`renderAggregate`). A scrape then sees the whole server, whichever worker
 * answers it; without this, counters would jump between the workers' values.
 *
 * Bounded: at most MAX_PENDING scrapes in flight in the primary and in each worker (more are
 * refused), and each fails after TIMEOUT_MS if a worker does not answer: a partial sum would
 * look like a counter reset, so a failed scrape (HTTP 500, "metrics unavailable") is the
 * honest answer.
 *
 * Each worker labels its series `worker="<id>"` (the same id as in `srv`, hello and `/info`), so
 * the aggregate keeps one series per worker (`sum by` gives the total); a replaced worker keeps
 * its id, so its counters reset like any restarted process's. The primary adds its own series
 * (`extra`, e.g. crashed workers).
 */
import cluster, { type Worker } from 'node:cluster';
import { renderAggregate, type Metrics, type MetricsJson } from '../observability/metrics.js';
import type { MetricsSource } from '../server/http-routes.js';

type Which = 'main' | 'design';
/** worker → primary: render the cluster's exposition for me. */
interface RenderRequest {
  type: 'echoserver:metrics-render';
  id: number;
  which: Which;
}
/** primary → worker: the exposition, or why there is none. */
interface RenderReply {
  type: 'echoserver:metrics-rendered';
  id: number;
  text?: string;
  error?: string;
}
/** primary → every worker: your metrics as JSON. */
interface CollectRequest {
  type: 'echoserver:metrics-collect';
  id: number;
  which: Which;
}
/** worker → primary: my metrics as JSON. */
interface CollectReply {
  type: 'echoserver:metrics-collected';
  id: number;
  json: MetricsJson;
}

const TIMEOUT_MS = 5_000;
/** Scrapes in flight at once (primary, and each worker); exported for the tests. */
export const MAX_PENDING = 32;

function isMessage<T extends { type: string }>(m: unknown, type: T['type']): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;
}

/** Adds `labels` to every value of `json` (a worker's series, before they are aggregated). */
export function withLabels(json: MetricsJson, labels: Readonly<Record<string, string>>): MetricsJson {
  return json.map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, ...labels } })) })) as MetricsJson;
}

/**
 * In the primary: answers the workers' render requests. Returns a function that stops it.
 * `extra` adds the primary's own series to the main exposition.
 */
export function serveClusterMetrics(timeoutMs = TIMEOUT_MS, extra?: () => Promise<MetricsJson>): () => void {
  let nextId = 0;
  const pending = new Map<number, { parts: MetricsJson[]; expected: number; done: (error?: string) => void }>();

  function onMessage(worker: Worker, m: unknown): void {
    if (isMessage<CollectReply>(m, 'echoserver:metrics-collected')) {
      const p = pending.get(m.id);
      if (p === undefined) return; // timed out already
      p.parts.push(m.json);
      if (p.parts.length === p.expected) p.done();
      return;
    }
    if (!isMessage<RenderRequest>(m, 'echoserver:metrics-render')) return;
    const reply = (r: Omit<RenderReply, 'type' | 'id'>): void => {
      if (worker.isConnected()) worker.send({ type: 'echoserver:metrics-rendered', id: m.id, ...r } satisfies RenderReply);
    };
    if (pending.size >= MAX_PENDING) return reply({ error: 'too many metrics scrapes in flight' });
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    if (workers.length === 0) return reply({ error: 'no worker is connected' });
    const id = ++nextId;
    const parts: MetricsJson[] = [];
    const timer = setTimeout(() => done(`a worker did not answer within ${timeoutMs} ms`), timeoutMs);
    const done = (error?: string): void => {
      clearTimeout(timer);
      pending.delete(id);
      if (error !== undefined) return reply({ error });
      (m.which === 'main' && extra !== undefined ? extra().then((own) => [...parts, own]) : Promise.resolve(parts))
        .then(renderAggregate)
        .then(
          (text) => reply({ text }),
          (err: unknown) => reply({ error: err instanceof Error ? err.message : String(err) }),
        );
    };
    pending.set(id, { parts, expected: workers.length, done });
    for (const w of workers) w.send({ type: 'echoserver:metrics-collect', id, which: m.which } satisfies CollectRequest);
  }

  cluster.on('message', onMessage);
  return () => {
    cluster.off('message', onMessage);
    for (const p of pending.values()) p.done('shutting down');
  };
}

/**
 * In a worker: `/metrics` as the whole cluster's (pass as `metricsView` to createEchoServer).
 * `labels` (e.g. `{ worker: '2' }`) are added to this worker's series.
 */
export function clusterMetricsView(own: Metrics, timeoutMs = TIMEOUT_MS, labels: Readonly<Record<string, string>> = {}): MetricsSource {
  let nextId = 0;
  const waiting = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();

  function onMessage(m: unknown): void {
    if (isMessage<CollectRequest>(m, 'echoserver:metrics-collect')) {
      own.json(m.which).then(
        (json) => process.send?.({ type: 'echoserver:metrics-collected', id: m.id, json: withLabels(json, labels) } satisfies CollectReply),
        () => {}, // no answer: the primary's timeout reports it
      );
      return;
    }
    if (!isMessage<RenderReply>(m, 'echoserver:metrics-rendered')) return;
    const w = waiting.get(m.id);
    if (w === undefined) return;
    waiting.delete(m.id);
    if (m.text !== undefined) w.resolve(m.text);
    else w.reject(new Error(m.error ?? 'no metrics'));
  }
  process.on('message', onMessage);

  function render(which: Which): Promise<string> {
    if (process.send === undefined) return Promise.reject(new Error('not a cluster worker'));
    if (waiting.size >= MAX_PENDING) return Promise.reject(new Error('too many metrics scrapes in flight'));
    const id = ++nextId;
    return new Promise<string>((resolve, reject) => {
      // The primary bounds its own wait; this one only covers a primary that is gone.
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error('the primary did not answer'));
      }, timeoutMs * 2);
      waiting.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      process.send?.({ type: 'echoserver:metrics-render', id, which } satisfies RenderRequest);
    });
  }

  return {
    contentType: own.contentType,
    render: () => render('main'),
    renderDesign: () => render('design'),
    close(): void {
      process.off('message', onMessage);
      for (const w of waiting.values()) w.reject(new Error('metrics closed'));
      waiting.clear();
      own.close();
    },
  };
}
