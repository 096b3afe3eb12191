/** What the main thread and the load threads of `echoserver bench` tell each other. */
import type { BenchTlsOptions } from './options.js';
import type { Target } from './target.js';

/** Kinds of error a bench counts (the report lists each with its count and a first example). */
export const ErrorKind = {
  /** A connection could not be opened (refused, TLS, timeout, upgrade refused). */
  CONNECT: 'connect',
  /** The server refused the token (hello answered with close, or HTTP 401/403). */
  AUTH: 'auth',
  /** An echo's bytes differ from what was sent for that message. */
  MISMATCH: 'mismatch',
  /** An echo arrived with no message in flight, or of the wrong kind (text, ping, hello...). */
  UNEXPECTED: 'unexpected',
  /** The server's bytes did not parse (bad frame, over the size limit). */
  PROTOCOL: 'protocol',
  /** The server closed an open connection during the run (with its close code when it sent one). */
  CLOSED: 'closed',
  /** A socket error on an open connection (reset...). */
  SOCKET: 'socket',
  /** No echo by the end of the drain after the run. */
  LOST: 'lost',
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

export interface ErrorCounts {
  /** Count per kind (only kinds that occurred). */
  counts: Partial<Record<ErrorKind, number>>;
  /** The first message seen per kind, to show the user what went wrong. */
  samples: Partial<Record<ErrorKind, string>>;
}

/** `workerData` of one load thread. */
export interface WorkerConfig {
  readonly threadIndex: number;
  readonly target: Target;
  readonly tls: BenchTlsOptions;
  readonly token: string | undefined;
  readonly wsClient: 'own' | 'ws';
  /** This thread's share of the connections. */
  readonly connections: number;
  /** Index of this thread's first connection (for messages naming a connection). */
  readonly firstConnection: number;
  readonly size: number;
  readonly window: number;
  /** This thread's share of the rate, messages/s; undefined: closed loop. */
  readonly rate: number | undefined;
  readonly connectTimeoutMs: number;
  /** Time allowed after the run for echoes still in flight, ms. */
  readonly drainMs: number;
}

/** Main → worker: start loading; times are absolute (performance.timeOrigin + now(), ms). */
export interface StartMessage {
  readonly type: 'start';
  readonly startAt: number;
  readonly measureAt: number;
  readonly endAt: number;
}
/** Main → worker: stop now (Ctrl-C): the measured window ends here. */
export interface StopMessage {
  readonly type: 'stop';
  readonly at: number;
}
export type ToWorker = StartMessage | StopMessage;

/** Worker → main: every connection was tried. */
export interface ReadyMessage {
  readonly type: 'ready';
  readonly connected: number;
  /** Encoded histogram of connect times (µs). */
  readonly connectHistogram: string;
  readonly errors: ErrorCounts;
}

/** Worker → main, about once a second and once at the end: what happened since the last one. */
export interface TickMessage {
  readonly type: 'tick';
  /** End of the interval, absolute ms. */
  readonly at: number;
  /** Echoes verified in this interval, warm-up included (for the live line). */
  readonly echoedAll: number;
  /** Measured messages sent and echoed (verified) in this interval. */
  readonly sent: number;
  readonly echoed: number;
  /** Encoded histogram of this interval's measured latencies (µs); '' when empty. */
  readonly histogram: string;
  readonly errors: ErrorCounts;
  /** True on the last tick (after the drain); the worker then exits. */
  readonly final: boolean;
}
export type FromWorker = ReadyMessage | TickMessage;

export function emptyErrors(): ErrorCounts {
  return { counts: {}, samples: {} };
}

export function countError(e: ErrorCounts, kind: ErrorKind, message: string, n = 1): void {
  e.counts[kind] = (e.counts[kind] ?? 0) + n;
  if (e.samples[kind] === undefined) e.samples[kind] = message;
}

export function mergeErrors(into: ErrorCounts, from: ErrorCounts): void {
  for (const [k, n] of Object.entries(from.counts) as [ErrorKind, number][]) {
    into.counts[k] = (into.counts[k] ?? 0) + n;
    if (into.samples[k] === undefined && from.samples[k] !== undefined) into.samples[k] = from.samples[k];
  }
}

export function totalErrors(e: ErrorCounts): number {
  let n = 0;
  for (const c of Object.values(e.counts)) n += c ?? 0;
  return n;
}
