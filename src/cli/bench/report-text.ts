/** The table `echoserver bench` prints at the end, and its live line. */
import type { LiveStatus } from './run.js';
import type { BenchResult } from './result.js';

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (n: number): string => (n >= 100 ? n.toFixed(1) : n >= 10 ? n.toFixed(2) : n.toFixed(3));
const bytes = (n: number): string => (n % 1048576 === 0 ? `${n / 1048576} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`);

export function formatTable(r: BenchResult): string {
  const mode = r.rate === null ? `window ${r.window}, closed loop` : `${int(r.rate)} msg/s fixed rate, window ${r.window}`;
  const lines = [
    `echoserver bench ${r.url}`,
    `  ${r.connected} of ${r.connections} connections, ${r.threads} thread${r.threads === 1 ? '' : 's'}, ${bytes(r.size)} ${r.framing === 'ws' ? 'messages' : `${r.framing} frames`}, ${mode}`,
    `  ${r.durationS} s measured after ${r.warmupS} s warm-up${r.interrupted ? ' (interrupted)' : ''}`,
    '',
    `  throughput   ${int(r.messagesPerS)} msg/s   ${r.mbPerS.toFixed(2)} MB/s   (${int(r.echoed)} of ${int(r.sent)} sent echoed and verified)`,
  ];
  const cols = ['p50', 'p90', 'p99', 'p99.9', 'max'];
  const l = r.latencyMs;
  const vals = [l.p50, l.p90, l.p99, l.p999, l.max].map((v) => `${ms(v)} ms`);
  const w = Math.max(...vals.map((v) => v.length)) + 2;
  lines.push(`  latency      ${cols.map((c) => c.padEnd(w)).join('')}(from the ${r.latencyFrom === 'send' ? 'actual' : 'intended'} send)`);
  lines.push(`               ${vals.map((v) => v.padEnd(w)).join('')}`.trimEnd());
  const c = r.connectMs;
  lines.push(
    c.count > 0 ? `  connect      p50 ${ms(c.p50)} ms   p99 ${ms(c.p99)} ms   max ${ms(c.max)} ms` : '  connect      no connection opened',
  );
  if (r.errors.total === 0) lines.push('  errors       0');
  else {
    lines.push(`  errors       ${int(r.errors.total)}`);
    for (const [kind, n] of Object.entries(r.errors.counts)) {
      lines.push(
        `    ${kind.padEnd(11)}${int(n ?? 0).padStart(9)}   e.g. ${r.errors.samples[kind as keyof typeof r.errors.samples] ?? ''}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

export function formatLive(s: LiveStatus): string {
  return `${s.phase.padEnd(9)} ${s.elapsedS.toFixed(0).padStart(4)} s  ${int(s.messagesPerS).padStart(11)} msg/s  errors ${int(s.errors)}  p99 ${s.p99 > 0 ? `${ms(s.p99)} ms` : '-'}`;
}
