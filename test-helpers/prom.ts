/**
 * Reading Prometheus text expositions in integration tests: a small parser (name, labels,
 * value), a lookup that fails loudly when a series is missing, and `promtool check metrics`
 * (Debian package `prometheus`; a missing binary is a test failure, never a skip: CI installs it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromExposition {
  samples: PromSample[];
  /** `# TYPE` lines: metric family → type. */
  types: Map<string, string>;
  /** `# HELP` lines: metric family → help text. */
  help: Map<string, string>;
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/** Parses text format 0.0.4; throws on a line it does not understand. */
export function parseExposition(text: string): PromExposition {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (name !== undefined && type !== undefined) types.set(name, type);
      continue;
    }
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const sp = rest.indexOf(' ');
      help.set(rest.slice(0, sp), rest.slice(sp + 1));
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE_RE.exec(line);
    if (m === null) throw new Error(`unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_RE)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
    samples.push({ name: m[1] as string, labels, value: parseValue(m[3] as string) });
  }
  return { samples, types, help };
}

/** Every sample of `name` whose labels include `labels`. */
export function findSamples(exp: PromExposition, name: string, labels: Record<string, string> = {}): PromSample[] {
  return exp.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of the one series `name{labels}` (labels given must match; others may exist). */
export function value(exp: PromExposition, name: string, labels: Record<string, string> = {}): number {
  const found = findSamples(exp, name, labels);
  assert.equal(found.length, 1, `expected exactly one series ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return (found[0] as PromSample).value;
}

/**
 * Runs `promtool check metrics` on `text`. Fails the test (does not skip) when promtool is
 * missing: the observability issue requires it, and CI installs the `prometheus` package.
 */
export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    assert.fail(
      code === 'ENOENT'
        ? 'promtool is not installed. It comes from the Debian package "prometheus", which CI installs ' +
            '(.ci/run); locally: apt-get install -y --no-install-recommends prometheus. This test never skips.'
        : `promtool failed to start: ${r.error.message}`,
    );
  }
  return { status: r.status, output: r.stdout + r.stderr };
}
