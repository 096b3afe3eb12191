/**
 * Runs a bench: starts the load threads, waits until every connection was tried, starts them
 * all at one absolute time (warm-up, then the measured window), merges their per-second ticks
 * into the totals, the timeline and one HDR histogram, and reports a live status once a second.
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Histogram } from 'hdr-histogram-js';
import { addEncoded, newHistogram, percentileCurveMs, percentilesMs } from './histogram.js';
import {
  emptyErrors,
  mergeErrors,
  totalErrors,
  type FromWorker,
  type ReadyMessage,
  type TickMessage,
  type WorkerConfig,
} from './messages.js';
import type { BenchOptions } from './options.js';
import type { BenchResult, TimelinePoint } from './result.js';

/** Time after the run for echoes still in flight before they count as lost, ms. */
const DRAIN_MS = 2000;
/** Lead time so that every thread has the start message before the start, ms. */
const START_LEAD_MS = 50;

export interface LiveStatus {
  phase: 'warm-up' | 'measuring' | 'draining';
  elapsedS: number;
  messagesPerS: number;
  errors: number;
  /** p99 of the measured window so far, ms (0 before it). */
  p99: number;
}

export interface RunHooks {
  /** Called about once a second while the load runs. */
  onLive?: (status: LiveStatus) => void;
  /** Aborting ends the measured window now (e.g. Ctrl-C); the result is still produced. */
  signal?: AbortSignal;
}

interface Bin {
  echoed: number;
  errors: number;
  histogram: Histogram;
}

const now = (): number => performance.timeOrigin + performance.now();

export async function runBench(options: BenchOptions, hooks: RunHooks = {}): Promise<BenchResult> {
  const { target } = options;
  const threads: Worker[] = [];
  let first = 0;
  for (let i = 0; i < options.threads; i++) {
    const connections = Math.floor(options.connections / options.threads) + (i < options.connections % options.threads ? 1 : 0);
    const config: WorkerConfig = {
      threadIndex: i,
      target,
      tls: options.tls,
      token: options.token,
      wsClient: options.wsClient,
      connections,
      firstConnection: first,
      size: options.size,
      window: options.window,
      rate: options.rate === undefined ? undefined : (options.rate * connections) / options.connections,
      connectTimeoutMs: options.connectTimeoutMs,
      drainMs: DRAIN_MS,
    };
    first += connections;
    threads.push(new Worker(new URL('./worker.js', import.meta.url), { workerData: config }));
  }

  const errors = emptyErrors();
  const connect = newHistogram();
  const total = newHistogram();
  const bins = new Map<number, Bin>();
  let sent = 0;
  let echoed = 0;
  let echoedAll = 0;
  let measureAt = Infinity;
  let endAt = Infinity;
  const durationS = options.durationMs / 1000;

  const early = (w: Worker, reject: (err: Error) => void): void => {
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`a load thread exited early (code ${code})`)));
  };
  const readies = threads.map(
    (w) =>
      new Promise<ReadyMessage>((resolve, reject) => {
        w.on('message', (m: FromWorker) => m.type === 'ready' && resolve(m));
        early(w, reject);
      }),
  );
  const finals = threads.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.on('message', (m: FromWorker) => {
          if (m.type !== 'tick') return;
          onTick(m);
          if (m.final) resolve();
        });
        early(w, reject);
      }),
  );
  // A rejected `finals` entry must not count as unhandled while the readies are awaited.
  for (const f of finals) f.catch(() => {});

  function onTick(m: TickMessage): void {
    mergeErrors(errors, m.errors);
    sent += m.sent;
    echoed += m.echoed;
    echoedAll += m.echoedAll;
    const h = m.histogram === '' ? undefined : addEncoded(total, m.histogram);
    if (m.at <= measureAt + START_LEAD_MS) return; // warm-up: no measured data
    // Ticks fire at measureAt + k s; the last one (after the drain) joins the last interval.
    const lastKey = Math.ceil((endAt - measureAt) / 1000 - 0.05);
    const key = Math.max(1, Math.min(Math.ceil((m.at - measureAt) / 1000 - 0.05), lastKey));
    let bin = bins.get(key);
    if (bin === undefined) bins.set(key, (bin = { echoed: 0, errors: 0, histogram: newHistogram() }));
    bin.echoed += m.echoed;
    bin.errors += totalErrors(m.errors);
    if (h !== undefined) bin.histogram.add(h);
  }

  const stopAll = (): void => {
    const at = now();
    if (at < endAt) endAt = Math.max(at, measureAt);
    for (const w of threads) w.postMessage({ type: 'stop', at });
  };

  let readyAll: ReadyMessage[];
  try {
    readyAll = await Promise.all(readies);
  } catch (err) {
    await Promise.all(threads.map((w) => w.terminate()));
    throw err;
  }
  let connected = 0;
  for (const r of readyAll) {
    connected += r.connected;
    addEncoded(connect, r.connectHistogram);
    mergeErrors(errors, r.errors);
  }

  const startedAt = new Date();
  const startAt = now() + START_LEAD_MS;
  measureAt = startAt + options.warmupMs;
  endAt = measureAt + options.durationMs;
  let live: NodeJS.Timeout | undefined;
  let interrupted = false;
  const onAbort = (): void => {
    interrupted = true;
    stopAll();
  };
  if (connected === 0) {
    stopAll();
    endAt = measureAt;
  } else {
    for (const w of threads) w.postMessage({ type: 'start', startAt, measureAt, endAt });
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (hooks.onLive !== undefined) {
      const onLive = hooks.onLive;
      let lastAt = startAt;
      let lastEchoed = 0;
      live = setInterval(() => {
        const t = now();
        onLive({
          phase: t < measureAt ? 'warm-up' : t < endAt ? 'measuring' : 'draining',
          elapsedS: Math.max(0, (t - startAt) / 1000),
          messagesPerS: ((echoedAll - lastEchoed) * 1000) / Math.max(1, t - lastAt),
          errors: totalErrors(errors),
          p99: total.totalCount > 0 ? total.getValueAtPercentile(99) / 1000 : 0,
        });
        lastAt = t;
        lastEchoed = echoedAll;
      }, 1000);
    }
  }
  try {
    await Promise.all(finals);
  } finally {
    clearInterval(live);
    hooks.signal?.removeEventListener('abort', onAbort);
    // The threads exit by themselves once their sockets have closed (each has a deadline).
    await Promise.all(
      threads.map(async (w) => {
        w.removeAllListeners('exit');
        const timer = setTimeout(() => void w.terminate(), 3000);
        if (w.threadId !== -1) await once(w, 'exit').catch(() => undefined);
        clearTimeout(timer);
      }),
    );
  }

  const measuredS = connected === 0 ? 0 : Math.max(0, Math.min(durationS, (endAt - measureAt) / 1000));
  const timeline: TimelinePoint[] = [...bins.entries()]
    .sort(([a], [b]) => a - b)
    .map(([k, bin]) => {
      const length = Math.max(0.001, Math.min(k, measuredS) - (k - 1));
      const p = percentilesMs(bin.histogram);
      return {
        t: Math.min(k, measuredS),
        messagesPerS: Math.round(bin.echoed / length),
        p50: p.p50,
        p99: p.p99,
        max: p.max,
        errors: bin.errors,
      };
    });
  const scheme = target.scheme.slice(0, -1) as BenchResult['transport'];
  return {
    url: target.url,
    transport: scheme,
    framing: target.framing,
    connections: options.connections,
    connected,
    threads: options.threads,
    size: options.size,
    window: options.window,
    rate: options.rate ?? null,
    latencyFrom: options.rate === undefined ? 'send' : 'intended',
    startedAt: startedAt.toISOString(),
    warmupS: options.warmupMs / 1000,
    durationS: Math.round(measuredS * 1000) / 1000,
    sent,
    echoed,
    messagesPerS: measuredS > 0 ? Math.round(echoed / measuredS) : 0,
    mbPerS: measuredS > 0 ? Math.round((echoed * options.size) / measuredS / 1e4) / 100 : 0,
    latencyMs: percentilesMs(total),
    connectMs: percentilesMs(connect),
    errors: { total: totalErrors(errors), ...errors },
    timeline,
    percentiles: percentileCurveMs(total),
    interrupted,
  };
}
