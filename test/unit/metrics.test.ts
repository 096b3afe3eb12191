import { emptyStats } from '../../src/core/core.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { TransportStats } from '../../src/core/types.js';
import { LATENCY_BUCKETS_SECONDS } from '../../src/core/types.js';
import { CLOSE_REASONS, createMetrics } from '../../src/observability/metrics.js';

function stats(over: Partial<TransportStats> = {}): TransportStats {
  return { ...emptyStats(), ...over };
}

/** The sample value of `series` (exact line prefix up to the value), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

function promtool(input: string): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input, encoding: 'utf8' });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    assert.fail(
      code === 'ENOENT'
        ? 'promtool is not installed: CI installs it (Debian package "prometheus"); locally run ' +
            '`apt-get install -y prometheus`. This test does not skip, so CI cannot pass without it.'
        : `promtool failed to start: ${r.error.message}`,
    );
  }
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('createMetrics', () => {
  const buckets = new Array<number>(LATENCY_BUCKETS_SECONDS.length + 1).fill(0);
  buckets[0] = 2; // <= 50 µs
  buckets[4] = 3; // <= 1 ms
  buckets[LATENCY_BUCKETS_SECONDS.length] = 1; // +Inf
  const ws = stats({
    connectionsOpen: 3,
    connectionsOpened: 7,
    connectionsClosed: 4,
    messagesIn: 1234,
    messagesOut: 1230,
    bytesIn: 56789,
    bytesOut: 56700,
    queuedBytes: 512,
    latencySumSeconds: 2.5,
    latencyCount: 6,
    latencyBuckets: buckets,
    rejects: { auth: 2, rate: 5 },
    closes: { normal: 3, idle: 1 },
  });
  const tcp = stats({ messagesIn: 9, messagesOut: 9 });

  it('exposes the totals of stats() exactly, labelled by transport', async () => {
    const m = createMetrics({ stats: () => ({ ws, tcp }) }, { collectDefault: false });
    try {
      const text = await m.render();
      assert.equal(sample(text, 'echo_connections_open{transport="ws"}'), 3);
      assert.equal(sample(text, 'echo_connections_opened_total{transport="ws"}'), 7);
      assert.equal(sample(text, 'echo_messages_in_total{transport="ws"}'), 1234);
      assert.equal(sample(text, 'echo_messages_out_total{transport="ws"}'), 1230);
      assert.equal(sample(text, 'echo_messages_in_total{transport="tcp"}'), 9);
      assert.equal(sample(text, 'echo_bytes_in_total{transport="ws"}'), 56789);
      assert.equal(sample(text, 'echo_bytes_out_total{transport="ws"}'), 56700);
      assert.equal(sample(text, 'echo_send_queue_bytes{transport="ws"}'), 512);
      assert.equal(sample(text, 'echo_rejections_total{transport="ws",reason="auth"}'), 2);
      assert.equal(sample(text, 'echo_rejections_total{transport="ws",reason="rate"}'), 5);
      assert.equal(sample(text, 'echo_connections_closed_total{transport="ws",reason="normal"}'), 3);
      assert.equal(sample(text, 'echo_connections_closed_total{transport="ws",reason="idle"}'), 1);
      // Histogram: non-cumulative stats buckets become cumulative `le` buckets.
      assert.equal(sample(text, 'echo_latency_seconds_bucket{le="0.00005",transport="ws"}'), 2);
      assert.equal(sample(text, 'echo_latency_seconds_bucket{le="0.0005",transport="ws"}'), 2);
      assert.equal(sample(text, 'echo_latency_seconds_bucket{le="0.001",transport="ws"}'), 5);
      assert.equal(sample(text, 'echo_latency_seconds_bucket{le="1",transport="ws"}'), 5);
      assert.equal(sample(text, 'echo_latency_seconds_bucket{le="+Inf",transport="ws"}'), 6);
      assert.equal(sample(text, 'echo_latency_seconds_sum{transport="ws"}'), 2.5);
      assert.equal(sample(text, 'echo_latency_seconds_count{transport="ws"}'), 6);
      assert.match(text, /# TYPE echo_latency_seconds histogram/);
      assert.match(text, /# TYPE echo_messages_in_total counter/);
      // The design names are not on the lint-clean exposition by default...
      assert.equal(sample(text, 'messages_in{transport="ws"}'), undefined);
      // ...but verbatim on the design exposition.
      const design = await m.renderDesign();
      assert.equal(sample(design, 'connection_count{transport="ws"}'), 3);
      assert.equal(sample(design, 'messages_in{transport="ws"}'), 1234);
      assert.equal(sample(design, 'messages_out{transport="ws"}'), 1230);
      assert.equal(sample(design, 'messages_in{transport="tcp"}'), 9);
      // First scrape: mean since start = 2.5 s / 6 = 416.67 ms.
      const avg = sample(design, 'avg_latency_ms{transport="ws"}');
      assert.ok(avg !== undefined && Math.abs(avg - 2500 / 6) < 1e-9, `avg_latency_ms ${avg}`);
      assert.equal(m.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    } finally {
      m.close();
    }
  });

  it('calls stats() once per scrape', async () => {
    let calls = 0;
    const m = createMetrics(
      {
        stats() {
          calls++;
          return { ws };
        },
      },
      { collectDefault: false, designNames: 'inline' },
    );
    await m.render();
    assert.equal(calls, 1);
    await m.render();
    assert.equal(calls, 2);
    m.close();
  });

  it('follows gauges up and down and counters up', async () => {
    const live = stats();
    const m = createMetrics({ stats: () => ({ ws: live }) }, { collectDefault: false, designNames: 'inline' });
    const open = async (): Promise<number | undefined> => sample(await m.render(), 'echo_connections_open{transport="ws"}');
    assert.equal(await open(), 0);
    live.connectionsOpen = 2;
    live.queuedBytes = 100;
    assert.equal(await open(), 2);
    live.connectionsOpen = 5;
    assert.equal(await open(), 5);
    live.connectionsOpen = 1;
    live.queuedBytes = 0;
    const text = await m.render();
    assert.equal(sample(text, 'echo_connections_open{transport="ws"}'), 1);
    assert.equal(sample(text, 'connection_count{transport="ws"}'), 1);
    assert.equal(sample(text, 'echo_send_queue_bytes{transport="ws"}'), 0);
    live.messagesIn = 10;
    assert.equal(sample(await m.render(), 'messages_in{transport="ws"}'), 10);
    live.messagesIn = 25;
    assert.equal(sample(await m.render(), 'messages_in{transport="ws"}'), 25);
    m.close();
  });

  it('shows every close and reject reason, at 0 before it happens', async () => {
    const m = createMetrics({ stats: () => ({ ws: stats(), unix: stats() }) }, { collectDefault: false });
    const text = await m.render();
    assert.equal(CLOSE_REASONS.length, 17);
    for (const transport of ['ws', 'unix']) {
      for (const reason of CLOSE_REASONS) {
        assert.equal(sample(text, `echo_rejections_total{transport="${transport}",reason="${reason}"}`), 0, reason);
        assert.equal(sample(text, `echo_connections_closed_total{transport="${transport}",reason="${reason}"}`), 0, reason);
      }
    }
    m.close();
  });

  it('counts injected latency and faults by transport and kind, each at 0 before it happens', async () => {
    const m = createMetrics(
      { stats: () => ({ ws: stats({ injected: { delay: 5, close: 1 } }), tcp: stats() }) },
      { collectDefault: false },
    );
    const text = await m.render();
    assert.equal(sample(text, 'echo_injected_total{transport="ws",kind="delay"}'), 5);
    assert.equal(sample(text, 'echo_injected_total{transport="ws",kind="close"}'), 1);
    assert.equal(sample(text, 'echo_injected_total{transport="ws",kind="drop"}'), 0);
    assert.equal(sample(text, 'echo_injected_total{transport="tcp",kind="stall"}'), 0);
    m.close();
  });

  it('computes avg_latency_ms over a sliding window', async () => {
    let t = 0;
    const live = stats();
    const m = createMetrics({ stats: () => ({ ws: live }) }, { collectDefault: false, latencyWindowMs: 1000, now: () => t });
    const avg = async (): Promise<number | undefined> => sample(await m.renderDesign(), 'avg_latency_ms{transport="ws"}');
    assert.equal(await avg(), 0); // nothing flushed yet
    t = 500;
    live.latencySumSeconds = 0.01; // 10 batches of 1 ms
    live.latencyCount = 10;
    assert.equal(await avg(), 1); // window [0, 500]: 10 ms / 10
    t = 1600;
    live.latencySumSeconds = 0.01 + 0.05; // 10 more batches of 5 ms
    live.latencyCount = 20;
    // Baseline = newest snapshot at least 1 s old (t=500): only the 5 ms batches count.
    assert.equal(await avg(), 5);
    t = 5000; // idle for a whole window
    assert.equal(await avg(), 0);
    m.close();
  });

  it('is accepted by `promtool check metrics` without complaint', async () => {
    const m = createMetrics({ stats: () => ({ ws, tcp }) }); // with Node process metrics
    try {
      const text = await m.render();
      assert.match(text, /nodejs_eventloop_lag_seconds/);
      assert.match(text, /nodejs_heap_size_used_bytes/);
      assert.match(text, /nodejs_gc_duration_seconds/);
      const r = promtool(text);
      assert.equal(r.stderr + r.stdout, '', 'promtool reported problems');
      assert.equal(r.status, 0);
    } finally {
      m.close();
    }
  });

  it('documents why the design names are kept apart: promtool rejects three of them', async () => {
    const m = createMetrics({ stats: () => ({ ws }) }, { collectDefault: false });
    const r = promtool(await m.renderDesign());
    assert.notEqual(r.status, 0);
    const problems = (r.stderr + r.stdout).trim().split('\n').sort();
    assert.deepEqual(problems, [
      'avg_latency_ms metric names should not contain abbreviated units',
      'connection_count non-histogram and non-summary metrics should not have "_count" suffix',
      'messages_in counter metrics should have "_total" suffix',
      'messages_out counter metrics should have "_total" suffix',
    ]);
    m.close();
  });

  it('honours prefix and designNames off, and closes idempotently', async () => {
    const m = createMetrics({ stats: () => ({ ws }) }, { collectDefault: false, prefix: 'svc_', designNames: 'off' });
    const text = await m.render();
    assert.equal(sample(text, 'svc_echo_messages_in_total{transport="ws"}'), 1234);
    assert.equal(sample(text, 'svc_echo_latency_seconds_count{transport="ws"}'), 6);
    assert.equal(m.designRegistry, undefined);
    assert.equal(await m.renderDesign(), '');
    m.close();
    m.close();
    assert.throws(() => createMetrics({ stats: () => ({}) }, { latencyWindowMs: 0 }), /latencyWindowMs/);
  });
});
