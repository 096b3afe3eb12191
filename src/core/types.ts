/** Public, transport-independent types of the echo core. */

export type TransportName = 'ws' | 'tcp' | 'unix' | 'raw' | 'inproc';
export type MessageKind = 'text' | 'binary';

/** Why a connection was refused or closed; the same labels feed logs and metrics. */
export const CLOSE_REASONS = [
  'normal', // the peer closed cleanly
  'shutdown', // server draining (1001)
  'malformed', // 1002
  'invalid-utf8', // 1007
  'too-big', // 1009
  'policy', // 1008 (generic)
  'auth',
  'rate',
  'replay',
  'limit', // connection limit (503 / 1013)
  'idle', // idle timeout
  'keepalive', // no answer to keepalive pings
  'backpressure', // send queue stalled above its limit too long
  'handshake', // handshake / hello timeout or failure
  'error', // socket error (reset, EPIPE, ...)
  'internal', // 1011
  'fault', // a close asked for with --fault-injection (?close=, header close)
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** Minimal metadata of one connection. Counters are live. */
export interface ConnectionInfo {
  /** Process-unique id, e.g. `c1a2b3-17`. */
  readonly id: string;
  readonly transport: TransportName;
  /** Remote address and port (`ip:port`), the socket path for unix, `inproc` in-process. */
  readonly peer: string;
  /** Authenticated identity (token name, JWT subject, certificate subject), if any. */
  readonly identity: string | undefined;
  /** Epoch milliseconds. */
  readonly connectedAt: number;
  readonly messagesIn: number;
  readonly messagesOut: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Bytes queued for the peer and not yet handed to the kernel. */
  readonly queuedBytes: number;
}

/** Per-transport totals, read by metrics at scrape time (no per-message metric calls). */
export interface TransportStats {
  connectionsOpen: number;
  connectionsOpened: number;
  connectionsClosed: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Current bytes queued across open connections of this transport (updated at sample time). */
  queuedBytes: number;
  /** Receive → echo flushed, per read batch: sum and count in seconds, and bucket counts. */
  latencySumSeconds: number;
  latencyCount: number;
  /** Non-cumulative counts, `latencyBuckets[i]` for values <= LATENCY_BUCKETS_SECONDS[i], last = +Inf. */
  latencyBuckets: number[];
  rejects: Partial<Record<CloseReason, number>>;
  closes: Partial<Record<CloseReason, number>>;
  /** Latency and faults injected on request (docs/PROTOCOL.md §1.10): delayed echoes, drops, closes, stalls. */
  injected?: Partial<Record<'delay' | 'drop' | 'close' | 'stall', number>>;
}

export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
]);
