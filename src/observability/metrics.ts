/**
 * Prometheus metrics, pulled at scrape time (STYLE.md §9: observability is published, not
 * imported). The core never calls into this module: it keeps per-transport `TransportStats`
 * totals and every metric here reads them from `source.stats()` inside prom-client's
 * `collect()` hook, so the echo path pays nothing for metrics, and a scrape costs
 * O(transports × reasons).
 *
 * Naming (see docs/OBSERVABILITY.md, "Naming and promtool"): three of the four names the
 * design document promises break rules that `promtool check metrics` enforces whatever their
 * type (`messages_in`/`messages_out` counters without `_total`, `connection_count` with the
 * reserved `_count` suffix, `avg_latency_ms` with the abbreviated unit `ms`). So the main
 * exposition carries only lint-clean `echo_*` names, and the four design names live in a
 * second registry, served verbatim on their own path (`designNames: 'separate'`, the
 * default), or appended to the main exposition (`'inline'`), or not at all (`'off'`).
 */
import { performance } from 'node:perf_hooks';
import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { TransportStats } from '../core/types.js';
import { CLOSE_REASONS, LATENCY_BUCKETS_SECONDS } from '../core/types.js';

/** What the metrics read: in production the echo server (`server.stats()`). */
export interface StatsSource {
  stats(): Readonly<Record<string, TransportStats>>;
  /** Server-wide figures of the core (the partial-frame budget), when the source has them. */
  core?(): { partialFrameBytes: number; budgetPaused: number; budgetBytes: number; descriptorExhaustions?: number };
}

export interface MetricsOptions {
  /**
   * Also expose prom-client's Node process metrics (event-loop lag, heap, GC, CPU, fds).
   * @default true
   */
  collectDefault?: boolean;
  /** Prefix for every lint-clean metric name, the process metrics included. @default '' */
  prefix?: string;
  /**
   * Where the design-document names (`connection_count`, `messages_in`, `messages_out`,
   * `avg_latency_ms`) are exposed: `'separate'` in `designRegistry` / `renderDesign()`
   * (serve it on its own path, e.g. `/metrics/design`), `'inline'` appended to the main
   * exposition (which then fails `promtool check metrics` on exactly those names), `'off'`.
   * @default 'separate'
   */
  designNames?: 'separate' | 'inline' | 'off';
  /** Sliding window of `avg_latency_ms`, in milliseconds. @default 60000 */
  latencyWindowMs?: number;
  /** Monotonic clock in milliseconds (tests inject one). @default performance.now */
  now?: () => number;
}

export interface Metrics {
  /** Lint-clean metrics (and the design names when `designNames: 'inline'`). */
  readonly registry: Registry;
  /** The four design-document names, when `designNames: 'separate'`. */
  readonly designRegistry: Registry | undefined;
  /** `Content-Type` of both expositions (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /**
   * The main exposition: `registry` plus the `echo_latency_seconds` histogram, which is built
   * per scrape (see `latencyHistogram`), so serve this rather than `registry.metrics()`.
   */
  render(): Promise<string>;
  /** The design-names exposition ('' unless `designNames: 'separate'`). */
  renderDesign(): Promise<string>;
  /**
   * Either exposition as prom-client metric JSON, for {@link renderAggregate} in another
   * process (`--workers`: one answer for the whole cluster).
   */
  json(which: 'main' | 'design'): Promise<MetricsJson>;
  /** Unregisters everything; idempotent. */
  close(): void;
}

/** One process's metrics as `Registry.getMetricsAsJSON()` returns them. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/**
 * One exposition for several processes' metrics (prom-client's documented cluster
 * aggregation): counters and gauges are summed unless a metric sets another `aggregator`;
 * prom-client's process metrics carry their own.
 */
export function renderAggregate(perProcess: readonly MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate([...perProcess]).metrics();
}

/** Every `CloseReason` (the type is derived from this list), so each appears at 0 before it first happens. */
export { CLOSE_REASONS };

/** Kinds of `echo_injected_total` (each appears at 0 before it first happens). */
const INJECTED_KINDS = ['delay', 'drop', 'close', 'stall'] as const;

const DEFAULT_WINDOW_MS = 60_000;
/** Bound on latency snapshots kept per transport (one per window/16 at most). */
const MAX_SNAPSHOTS = 64;

/**
 * prom-client process metrics that are gauges ending in `_total`, which promtool rejects
 * ("non-counter metrics should not have _total suffix"). Each has a lint-clean twin without
 * the suffix (`nodejs_active_handles`, ...), so nothing is lost.
 */
const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

interface Snapshot {
  t: number;
  sum: number;
  count: number;
}

type TransportLabel = 'transport';

/**
 * Sets a counter to absolute totals. prom-client counters only `inc()`, so in `collect()` we
 * `reset()` (public API) and `inc()` each series by its total: the exposition then equals the
 * core's totals exactly, with no state kept here and no drift between two scrapers.
 */
function setCounter<L extends string>(counter: Counter<L>, rows: Iterable<[Partial<Record<L, string>>, number]>): void {
  counter.reset();
  for (const [labels, value] of rows) counter.inc(labels, value);
}

export function createMetrics(source: StatsSource, opts: MetricsOptions = {}): Metrics {
  const prefix = opts.prefix ?? '';
  const designMode = opts.designNames ?? 'separate';
  const windowMs = opts.latencyWindowMs ?? DEFAULT_WINDOW_MS;
  if (!(windowMs > 0) || !Number.isFinite(windowMs)) {
    throw new RangeError(`latencyWindowMs must be a positive number of milliseconds, got ${windowMs}`);
  }
  const now = opts.now ?? (() => performance.now());

  const registry = new Registry();
  const designRegistry = designMode === 'separate' ? new Registry() : designMode === 'inline' ? registry : undefined;

  // One stats() call per scrape: registry.metrics() runs every collect() in the same
  // synchronous turn, so the snapshot is cached until the next microtask. All series of one
  // scrape are thus consistent with each other.
  let cached: Readonly<Record<string, TransportStats>> | undefined;
  function clearCache(): void {
    cached = undefined;
  }
  function read(): Array<[string, TransportStats]> {
    if (cached === undefined) {
      cached = source.stats();
      queueMicrotask(clearCache);
    }
    return Object.entries(cached);
  }

  const name = (n: string): string => prefix + n;
  const registers = [registry];

  // ---- lint-clean metrics -------------------------------------------------------------
  const coreSource = source.core?.bind(source);
  if (coreSource !== undefined) {
    new Gauge({
      name: name('echo_partial_frame_bytes'),
      help: 'Bytes held in partly received frames, all connections (counted against --max-buffered-bytes).',
      registers,
      collect() {
        this.set(coreSource().partialFrameBytes);
      },
    });
    new Gauge({
      name: name('echo_partial_frame_budget_bytes'),
      help: 'The server-wide budget for partly received frames (--max-buffered-bytes).',
      registers,
      collect() {
        this.set(coreSource().budgetBytes);
      },
    });
    new Counter({
      name: name('echo_descriptor_exhaustions_total'),
      help: 'Times the process ran out of open files (new connections refused by the OS with EMFILE until descriptors freed up).',
      registers,
      collect() {
        this.reset();
        this.inc(coreSource().descriptorExhaustions ?? 0);
      },
    });
    new Gauge({
      name: name('echo_budget_paused_connections'),
      help: 'Connections not read because the partial-frame budget is spent.',
      registers,
      collect() {
        this.set(coreSource().budgetPaused);
      },
    });
  }
  new Gauge<TransportLabel>({
    name: name('echo_connections_open'),
    help: 'Connections currently open.',
    labelNames: ['transport'],
    registers,
    collect() {
      this.reset();
      for (const [transport, s] of read()) this.set({ transport }, s.connectionsOpen);
    },
  });
  new Counter<TransportLabel>({
    name: name('echo_connections_opened_total'),
    help: 'Connections accepted since start.',
    labelNames: ['transport'],
    registers,
    collect() {
      setCounter(
        this,
        perTransport(read(), (s) => s.connectionsOpened),
      );
    },
  });
  new Counter<TransportLabel | 'reason'>({
    name: name('echo_connections_closed_total'),
    help: 'Connections closed since start, by close reason.',
    labelNames: ['transport', 'reason'],
    registers,
    collect() {
      setCounter(this, byReason(read(), 'closes'));
    },
  });
  new Counter<TransportLabel | 'reason'>({
    name: name('echo_rejections_total'),
    help: 'Connections refused before they were established, by reason.',
    labelNames: ['transport', 'reason'],
    registers,
    collect() {
      setCounter(this, byReason(read(), 'rejects'));
    },
  });
  new Counter<TransportLabel | 'kind'>({
    name: name('echo_injected_total'),
    help: 'Latency and faults injected on request (--max-delay, --fault-injection), by kind: delay, drop, close, stall.',
    labelNames: ['transport', 'kind'],
    registers,
    collect() {
      const rows: Array<[{ transport: string; kind: string }, number]> = [];
      for (const [transport, s] of read()) for (const kind of INJECTED_KINDS) rows.push([{ transport, kind }, s.injected?.[kind] ?? 0]);
      setCounter(this, rows);
    },
  });
  new Counter<TransportLabel>({
    name: name('echo_messages_in_total'),
    help: 'Messages received since start.',
    labelNames: ['transport'],
    registers,
    collect() {
      setCounter(
        this,
        perTransport(read(), (s) => s.messagesIn),
      );
    },
  });
  new Counter<TransportLabel>({
    name: name('echo_messages_out_total'),
    help: 'Messages echoed (handed to the kernel) since start.',
    labelNames: ['transport'],
    registers,
    collect() {
      setCounter(
        this,
        perTransport(read(), (s) => s.messagesOut),
      );
    },
  });
  new Counter<TransportLabel>({
    name: name('echo_bytes_in_total'),
    help: 'Bytes received from peers since start, as read from the socket (framing and control frames included).',
    labelNames: ['transport'],
    registers,
    collect() {
      setCounter(
        this,
        perTransport(read(), (s) => s.bytesIn),
      );
    },
  });
  new Counter<TransportLabel>({
    name: name('echo_bytes_out_total'),
    help: 'Bytes written to peers since start, as handed to the socket (framing and control frames included).',
    labelNames: ['transport'],
    registers,
    collect() {
      setCounter(
        this,
        perTransport(read(), (s) => s.bytesOut),
      );
    },
  });
  new Gauge<TransportLabel>({
    name: name('echo_send_queue_bytes'),
    help: 'Bytes queued for peers and not yet handed to the kernel.',
    labelNames: ['transport'],
    registers,
    collect() {
      this.reset();
      for (const [transport, s] of read()) this.set({ transport }, s.queuedBytes);
    },
  });

  if (opts.collectDefault ?? true) {
    collectDefaultMetrics({ register: registry, prefix });
    // removeSingleMetric is the documented way to drop a metric from a registry.
    for (const n of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(prefix + n);
  }

  // ---- design-document names ------------------------------------------------------------
  const snapshots = new Map<string, Snapshot[]>();
  if (designRegistry !== undefined) {
    const designRegisters = [designRegistry];
    new Gauge<TransportLabel>({
      name: 'connection_count',
      help: 'Connections currently open (design-document name; same value as echo_connections_open).',
      labelNames: ['transport'],
      registers: designRegisters,
      collect() {
        this.reset();
        for (const [transport, s] of read()) this.set({ transport }, s.connectionsOpen);
      },
    });
    new Counter<TransportLabel>({
      name: 'messages_in',
      help: 'Messages received since start (design-document name; same value as echo_messages_in_total).',
      labelNames: ['transport'],
      registers: designRegisters,
      collect() {
        setCounter(
          this,
          perTransport(read(), (s) => s.messagesIn),
        );
      },
    });
    new Counter<TransportLabel>({
      name: 'messages_out',
      help: 'Messages echoed since start (design-document name; same value as echo_messages_out_total).',
      labelNames: ['transport'],
      registers: designRegisters,
      collect() {
        setCounter(
          this,
          perTransport(read(), (s) => s.messagesOut),
        );
      },
    });
    new Gauge<TransportLabel>({
      name: 'avg_latency_ms',
      help: `Mean receive-to-flush latency in milliseconds over the last ${windowMs / 1000} s (design-document name).`,
      labelNames: ['transport'],
      // Across --workers: the mean of the workers' means (not weighted by message counts).
      aggregator: 'average',
      registers: designRegisters,
      collect() {
        this.reset();
        const t = now();
        for (const [transport, s] of read()) {
          this.set({ transport }, windowMean(snapshots, transport, s, t, windowMs) * 1000);
        }
      },
    });
  }

  function histogramRegistry(): Registry {
    return AggregatorRegistry.aggregate([[latencyHistogram(prefix, read())]]);
  }

  let closed = false;
  return {
    registry,
    designRegistry: designMode === 'separate' ? designRegistry : undefined,
    contentType: registry.contentType,
    render(): Promise<string> {
      return Registry.merge([registry, histogramRegistry()]).metrics();
    },
    renderDesign(): Promise<string> {
      if (designMode !== 'separate' || designRegistry === undefined || closed) {
        return Promise.resolve('');
      }
      return designRegistry.metrics();
    },
    json(which: 'main' | 'design'): Promise<MetricsJson> {
      if (which === 'main') return Registry.merge([registry, histogramRegistry()]).getMetricsAsJSON();
      if (designMode !== 'separate' || designRegistry === undefined || closed) return Promise.resolve([]);
      return designRegistry.getMetricsAsJSON();
    },
    close(): void {
      if (closed) return;
      closed = true;
      registry.clear();
      designRegistry?.clear();
      snapshots.clear();
    },
  };
}

function perTransport(rows: Array<[string, TransportStats]>, pick: (s: TransportStats) => number): Array<[{ transport: string }, number]> {
  return rows.map(([transport, s]) => [{ transport }, pick(s)]);
}

function byReason(
  rows: Array<[string, TransportStats]>,
  field: 'closes' | 'rejects',
): Array<[{ transport: string; reason: string }, number]> {
  const out: Array<[{ transport: string; reason: string }, number]> = [];
  for (const [transport, s] of rows) {
    const counts = s[field];
    for (const reason of CLOSE_REASONS) out.push([{ transport, reason }, counts[reason] ?? 0]);
  }
  return out;
}

/**
 * Mean latency (seconds) over a sliding window: the difference between the current totals
 * and the newest snapshot at least `windowMs` old (or the oldest one kept; before any
 * snapshot, since start). Snapshots are taken at scrape time, at most one per window/16, so
 * the window does not depend on how many scrapers there are. 0 when nothing was flushed in
 * the window.
 */
function windowMean(
  store: Map<string, Snapshot[]>,
  key: string,
  s: Pick<TransportStats, 'latencySumSeconds' | 'latencyCount'>,
  t: number,
  windowMs: number,
): number {
  let list = store.get(key);
  if (list === undefined) {
    list = [];
    store.set(key, list);
  }
  // Drop snapshots older than the newest one that already covers the window.
  let base = -1;
  for (let i = list.length - 1; i >= 0; i--) {
    const snap = list[i];
    if (snap !== undefined && t - snap.t >= windowMs) {
      base = i;
      break;
    }
  }
  if (base > 0) list.splice(0, base);
  const baseline = list[0] ?? { t: 0, sum: 0, count: 0 };
  const dCount = s.latencyCount - baseline.count;
  const dSum = s.latencySumSeconds - baseline.sum;
  const last = list[list.length - 1];
  if (last === undefined || t - last.t >= windowMs / 16) {
    list.push({ t, sum: s.latencySumSeconds, count: s.latencyCount });
    if (list.length > MAX_SNAPSHOTS) list.shift();
  }
  // A source that restarted (counts went down) has no meaningful delta.
  return dCount > 0 && dSum >= 0 ? dSum / dCount : 0;
}

interface JsonValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * The `echo_latency_seconds` histogram as prom-client metric JSON (the shape
 * `Registry.getMetricsAsJSON()` returns), turned into a registry with the documented
 * `AggregatorRegistry.aggregate()`. prom-client's `Histogram` can only `observe()` one value
 * at a time and has no API to set bucket counts, while the core keeps pre-bucketed totals
 * (non-cumulative; last bucket +Inf). Replaying them through `observe()` would cost one call
 * per latency batch per scrape and lose the exact sum; aggregate() is the public way to build
 * a metric from values, and it is how prom-client itself exposes histograms from other
 * processes. Buckets are made cumulative here, and `_count` equals the +Inf bucket.
 */
export function latencyHistogram(prefix: string, rows: Array<[string, TransportStats]>): object {
  const n = prefix + 'echo_latency_seconds';
  const values: JsonValue[] = [];
  for (const [transport, s] of rows) {
    let cumulative = 0;
    for (let i = 0; i < LATENCY_BUCKETS_SECONDS.length; i++) {
      cumulative += s.latencyBuckets[i] ?? 0;
      values.push({
        metricName: `${n}_bucket`,
        labels: { le: LATENCY_BUCKETS_SECONDS[i] ?? 0, transport },
        value: cumulative,
      });
    }
    cumulative += s.latencyBuckets[LATENCY_BUCKETS_SECONDS.length] ?? 0;
    values.push({ metricName: `${n}_bucket`, labels: { le: '+Inf', transport }, value: cumulative });
    values.push({ metricName: `${n}_sum`, labels: { transport }, value: s.latencySumSeconds });
    values.push({ metricName: `${n}_count`, labels: { transport }, value: cumulative });
  }
  return {
    name: n,
    help: 'Receive-to-flush latency of echoed read batches, in seconds.',
    type: 'histogram',
    aggregator: 'sum',
    values,
  };
}
