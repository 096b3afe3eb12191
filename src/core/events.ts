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
