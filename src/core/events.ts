/**
 * Observability is published, not imported (STYLE.md §9): the core publishes on these
 * `diagnostics_channel` channels; logs and traces subscribe. With no subscriber the hot path
 * pays one `hasSubscribers` check. Counters are not events: metrics read `server.stats()`.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { CloseReason, ConnectionInfo, MessageKind, TransportName } from './types.js';

export interface ConnectionOpenEvent {
  readonly connection: ConnectionInfo;
  readonly instance: string;
}
export interface ConnectionCloseEvent {
  readonly connection: ConnectionInfo;
  readonly instance: string;
  /** Close code sent or received (1006 when the socket just went away). */
  readonly code: number;
  readonly reason: CloseReason;
  /** Human-readable detail (close reason text, error message). */
  readonly detail: string;
  readonly durationMs: number;
}
export interface RejectEvent {
  readonly transport: TransportName;
  readonly reason: CloseReason;
  readonly peer: string;
  readonly detail: string;
}
/** One message received (published only when subscribed). */
export interface MessageEvent {
  readonly connection: ConnectionInfo;
  /** Message id: the metadata header's `id`, else a generated `<conn>-<seq>`. */
  readonly id: string;
  readonly kind: MessageKind;
  readonly size: number;
  /** Parsed metadata header (echo.v1 / v1 framing), when present. */
  readonly header: Readonly<Record<string, unknown>> | undefined;
  /** `performance.now()` when the read carrying it was received. */
  readonly receivedAt: number;
  /**
   * Probability with which this message was published: 1 for messages with a metadata header
   * (their `traceparent` must be seen), `messageSampleRatio()` for the others.
   */
  readonly sampleRatio: number;
}
/** The echoes of one read batch were handed to the kernel (published only when subscribed). */
export interface FlushEvent {
  readonly connection: ConnectionInfo;
  readonly messages: number;
  /** `performance.now()`. */
  readonly flushedAt: number;
}
export interface ErrorEvent {
  readonly connection: ConnectionInfo | undefined;
  readonly error: Error;
}

export const channels = {
  open: diagnosticsChannel.channel('echoserver:connection:open'),
  close: diagnosticsChannel.channel('echoserver:connection:close'),
  reject: diagnosticsChannel.channel('echoserver:reject'),
  message: diagnosticsChannel.channel('echoserver:message'),
  flush: diagnosticsChannel.channel('echoserver:flush'),
  error: diagnosticsChannel.channel('echoserver:error'),
} as const;

/**
 * How many header-less messages subscribers of `message` need. A per-message event costs an
 * object and an id string; tracing at 1% needs 1 in 100, debug logs need all. Each subscriber
 * declares its ratio with `demandMessages()`; the core publishes a header-less message with
 * the largest ratio declared (all of them when a subscriber declared nothing).
 */
const demands = new Set<{ readonly ratio: number }>();
let sampleRatio = 1;

export function demandMessages(ratio: number): () => void {
  const d = { ratio: Math.min(1, Math.max(0, ratio)) };
  demands.add(d);
  recompute();
  return function releaseDemand(): void {
    if (demands.delete(d)) recompute();
  };
}

function recompute(): void {
  let r = demands.size === 0 ? 1 : 0;
  for (const d of demands) r = Math.max(r, d.ratio);
  sampleRatio = r;
}

/** The ratio at which header-less messages are published now (see `demandMessages`). */
export function messageSampleRatio(): number {
  return sampleRatio;
}

/** The per-message decision for a header-less message (one comparison when everything is wanted). */
export function sampleMessage(): boolean {
  return sampleRatio >= 1 || (sampleRatio > 0 && Math.random() < sampleRatio);
}
