/**
 * `--html FILE`: a self-contained report (no script, no CDN): the summary table, a
 * latency-over-time chart, a throughput-over-time chart and a percentile plot drawn as inline
 * SVG, and the full result as JSON in a <script type="application/json"> element for tools.
 */
import type { BenchResult } from './result.js';

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (n: number): string =>
  Number.isInteger(n) ? n.toLocaleString('en-US') : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n >= 1 ? n.toFixed(2) : n.toFixed(3);

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

const W = 720;
const H = 280;
const PAD = { left: 64, right: 16, top: 16, bottom: 40 };

/** A "nice" upper bound for an axis (1, 2, 2.5, 5 × 10^k). */
function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function lineChart(
  title: string,
  series: Series[],
  x: { min: number; max: number; label: string; ticks: [number, string][] },
  yLabel: string,
): string {
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map(([, y]) => y))));
  const px = (v: number): number => PAD.left + ((v - x.min) / Math.max(1e-9, x.max - x.min)) * (W - PAD.left - PAD.right);
  const py = (v: number): number => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${py(v)}" y2="${py(v)}"/>`);
    parts.push(`<text class="tick" x="${PAD.left - 6}" y="${py(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const [v, label] of x.ticks) {
    parts.push(`<line class="grid" x1="${px(v)}" x2="${px(v)}" y1="${PAD.top}" y2="${H - PAD.bottom}"/>`);
    parts.push(`<text class="tick" x="${px(v)}" y="${H - PAD.bottom + 16}" text-anchor="middle">${esc(label)}</text>`);
  }
  parts.push(`<text class="axis" x="${(W + PAD.left) / 2}" y="${H - 6}" text-anchor="middle">${esc(x.label)}</text>`);
  parts.push(
    `<text class="axis" transform="translate(14 ${(H - PAD.bottom) / 2 + PAD.top}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([a, b], j) => `${j === 0 ? 'M' : 'L'}${px(a).toFixed(1)},${py(b).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    for (const [a, b] of s.points)
      parts.push(
        `<circle cx="${px(a).toFixed(1)}" cy="${py(b).toFixed(1)}" r="2.5" fill="${s.color}"><title>${esc(s.name)}: ${fmt(b)}</title></circle>`,
      );
    parts.push(`<rect x="${PAD.left + 10 + i * 90}" y="${PAD.top + 2}" width="12" height="3" fill="${s.color}"/>`);
    parts.push(`<text class="legend" x="${PAD.left + 26 + i * 90}" y="${PAD.top + 8}">${esc(s.name)}</text>`);
  });
  return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg></figure>`;
}

export function renderHtml(r: BenchResult): string {
  const end = Math.max(r.durationS, ...r.timeline.map((p) => p.t), 1);
  const timeTicks: [number, string][] = [];
  const step = niceMax(end / 8);
  for (let t = 0; t <= end + 1e-9; t += step) timeTicks.push([t, `${fmt(t)}`]);
  const latencyOverTime = lineChart(
    'Latency over time (per second)',
    [
      { name: 'p50', color: '#2f7ed8', points: r.timeline.map((p) => [p.t, p.p50]) },
      { name: 'p99', color: '#e4572e', points: r.timeline.map((p) => [p.t, p.p99]) },
      { name: 'max', color: '#8e6bbf', points: r.timeline.map((p) => [p.t, p.max]) },
    ],
    { min: 0, max: end, label: 'seconds since measuring began', ticks: timeTicks },
    'latency (ms)',
  );
  const throughput = lineChart(
    'Throughput over time',
    [{ name: 'msg/s', color: '#3a9d5d', points: r.timeline.map((p) => [p.t, p.messagesPerS]) }],
    { min: 0, max: end, label: 'seconds since measuring began', ticks: timeTicks },
    'messages/s',
  );
  // Percentile plot: x = log10(1 / (1 - p)), so 90%, 99%, 99.9% are evenly spaced; max at the right.
  const curve = r.percentiles.filter((p) => p.percentile < 100);
  const nines = Math.max(1, Math.ceil(Math.max(0, ...curve.map((p) => -Math.log10(1 - p.percentile / 100)))));
  const maxPoint = r.percentiles.find((p) => p.percentile === 100);
  const pts: [number, number][] = curve.map((p) => [-Math.log10(1 - p.percentile / 100), p.ms]);
  if (maxPoint !== undefined) pts.push([nines + 0.5, maxPoint.ms]);
  const pTicks: [number, string][] = [[0, '0%']];
  for (let k = 1; k <= nines; k++) pTicks.push([k, `${(100 - 10 ** (2 - k)).toFixed(Math.max(0, k - 2))}%`]);
  pTicks.push([nines + 0.5, 'max']);
  const percentilePlot = lineChart(
    'Latency by percentile',
    [{ name: 'latency', color: '#e4572e', points: pts }],
    { min: 0, max: nines + 0.5, label: 'percentile', ticks: pTicks },
    'latency (ms)',
  );
  const l = r.latencyMs;
  const c = r.connectMs;
  const rows: [string, string][] = [
    ['URL', r.url],
    ['connections', `${r.connected} of ${r.connections} (${r.threads} thread${r.threads === 1 ? '' : 's'})`],
    ['message', `${r.size} bytes, ${r.framing === 'ws' ? 'WebSocket binary' : `${r.framing} framing`}`],
    ['load', r.rate === null ? `closed loop, window ${r.window}` : `${r.rate} msg/s fixed rate, window ${r.window}`],
    ['measured', `${r.durationS} s after ${r.warmupS} s warm-up, started ${r.startedAt}${r.interrupted ? ' (interrupted)' : ''}`],
    [
      'throughput',
      `${Math.round(r.messagesPerS).toLocaleString('en-US')} msg/s, ${r.mbPerS.toFixed(2)} MB/s (${r.echoed} of ${r.sent} sent echoed and verified)`,
    ],
    [
      `latency (from the ${r.latencyFrom === 'send' ? 'actual' : 'intended'} send)`,
      `p50 ${l.p50} ms, p90 ${l.p90} ms, p99 ${l.p99} ms, p99.9 ${l.p999} ms, max ${l.max} ms`,
    ],
    ['connect', c.count > 0 ? `p50 ${c.p50} ms, p99 ${c.p99} ms, max ${c.max} ms` : 'no connection opened'],
    [
      'errors',
      r.errors.total === 0
        ? '0'
        : `${r.errors.total}: ` +
          Object.entries(r.errors.counts)
            .map(([k, n]) => `${k} ${n} (e.g. ${r.errors.samples[k as keyof typeof r.errors.samples] ?? ''})`)
            .join('; '),
    ],
  ];
  // `<` escaped so that no string in the data can close the script element.
  const data = JSON.stringify(r).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>echoserver bench ${esc(r.url)}</title>
<style>
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #fbfcfe; --card: #ffffff; --grid: #e3e7ee; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #9aa3b2; --bg: #14171d; --card: #1c2028; --grid: #2c323d; } }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; padding: 24px; }
main { max-width: 780px; margin: 0 auto; }
h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; background: var(--card); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 6px 12px; border-bottom: 1px solid var(--grid); vertical-align: top; }
th { color: var(--muted); font-weight: 500; white-space: nowrap; width: 1%; }
figure { background: var(--card); border-radius: 8px; margin: 16px 0; padding: 12px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg { width: 100%; height: auto; display: block; }
.grid { stroke: var(--grid); } .tick, .legend { fill: var(--muted); font-size: 11px; } .axis { fill: var(--muted); font-size: 12px; }
.ok { color: #3a9d5d; } .bad { color: #e4572e; }
</style>
</head>
<body>
<main>
<h1>echoserver bench</h1>
<p class="sub">${esc(r.url)} · <span class="${r.errors.total === 0 ? 'ok' : 'bad'}">${r.errors.total === 0 ? 'every echo verified' : `${r.errors.total} errors`}</span></p>
<table>
${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('\n')}
</table>
${latencyOverTime}
${throughput}
${percentilePlot}
</main>
<script type="application/json" id="bench-data">${data}</script>
</body>
</html>
`;
}
