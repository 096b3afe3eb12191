/**
 * Latency histograms for `echoserver bench` (hdr-histogram-js, values in microseconds).
 *
 * We use the library's plain JavaScript implementation, not its WebAssembly one: the wasm
 * build has to be initialised asynchronously in every worker thread before the first
 * histogram, and its histograms live in wasm memory that is freed only by an explicit
 * `destroy()` (a leak for every interval histogram we decode and forget), while the JS ones
 * are typed arrays the garbage collector reclaims. Recording costs tens of nanoseconds either
 * way, far below a message's cost. Threads exchange histograms in HdrHistogram's standard
 * compressed base64 form, which the main thread decodes and adds up.
 */
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

/** Highest value tracked exactly, µs (one hour); larger values are clamped to it. */
export const MAX_TRACKABLE_US = 3_600_000_000;

export function newHistogram(): Histogram {
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_TRACKABLE_US,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
    useWebAssembly: false,
  });
}

/** Records a duration in ms (from performance.now() differences) as whole µs, at least 1. */
export function recordMs(h: Histogram, ms: number): void {
  const us = Math.round(ms * 1000);
  h.recordValue(us < 1 ? 1 : us > MAX_TRACKABLE_US ? MAX_TRACKABLE_US : us);
}

export function encode(h: Histogram): string {
  return encodeIntoCompressedBase64(h);
}

/** Adds an encoded histogram (from a worker) into `into`. */
export function addEncoded(into: Histogram, encoded: string): Histogram {
  const h = decodeFromCompressedBase64(encoded, 32, false);
  into.add(h);
  return h;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  count: number;
}

/** Percentiles in ms (3 decimals: µs resolution); all 0 for an empty histogram. */
export function percentilesMs(h: Histogram): Percentiles {
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0, count: 0 };
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: Math.round(h.mean) / 1000,
    count: h.totalCount,
  };
}

/**
 * Points of the percentile plot: percentiles spaced evenly on a log scale of 1/(1-p) (the
 * HdrHistogram plot's axis), from p0 up to the resolution the sample count supports, plus max.
 */
export function percentileCurveMs(h: Histogram): { percentile: number; ms: number }[] {
  if (h.totalCount === 0) return [];
  const points: { percentile: number; ms: number }[] = [];
  const nines = Math.min(6, Math.log10(h.totalCount));
  for (let x = 0; x <= nines + 1e-9; x += 0.1) {
    const p = 100 * (1 - 10 ** -x);
    points.push({ percentile: Math.round(p * 10_000) / 10_000, ms: h.getValueAtPercentile(p) / 1000 });
  }
  points.push({ percentile: 100, ms: h.maxValue / 1000 });
  return points;
}
