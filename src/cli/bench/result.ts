/** The result of a bench run: what the table, `--json` and the HTML report show. */
import type { ErrorCounts } from './messages.js';
import type { Percentiles } from './histogram.js';

export interface TimelinePoint {
  /** End of the interval, seconds since measuring began. */
  t: number;
  messagesPerS: number;
  /** Latency of the messages echoed in this interval, ms. */
  p50: number;
  p99: number;
  max: number;
  errors: number;
}

export interface BenchResult {
  url: string;
  transport: 'ws' | 'wss' | 'tcp' | 'tls' | 'unix';
  framing: 'ws' | 'v1' | 'len';
  connections: number;
  connected: number;
  threads: number;
  /** Payload bytes per message. */
  size: number;
  window: number;
  /** Target total rate, messages/s; null in closed-loop mode. */
  rate: number | null;
  /** Where latency is measured from: the actual send (closed loop) or the intended send time (--rate). */
  latencyFrom: 'send' | 'intended';
  startedAt: string;
  warmupS: number;
  /** Length of the measured window, s (shorter than --duration when interrupted). */
  durationS: number;
  /** Messages whose (intended) send time fell in the measured window, and their verified echoes. */
  sent: number;
  echoed: number;
  messagesPerS: number;
  /** Payload bytes echoed per second, one way, 10^6 B/s. */
  mbPerS: number;
  latencyMs: Percentiles;
  connectMs: Percentiles;
  errors: { total: number } & ErrorCounts;
  timeline: TimelinePoint[];
  /** The latency distribution: points of the percentile plot. */
  percentiles: { percentile: number; ms: number }[];
  interrupted: boolean;
}
