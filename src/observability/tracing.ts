/**
 * OpenTelemetry traces for echoed messages, fed by the core's `message` and `flush`
 * diagnostics channels (STYLE.md §9). One span `echo` per message: it starts when the read
 * carrying the message was received and ends when the echoes of that read were handed to the
 * kernel ("ack"). A W3C `traceparent` in the message's metadata header makes it a child of
 * the client's span.
 *
 * With no exporter and no OTLP endpoint configured, `attachTracing()` subscribes to nothing,
 * so the core does not even publish per-message events: tracing then costs nothing at all,
 * and the SDK and exporter are not even loaded (`createTracing` imports them on demand: they
 * are about 5 MB of heap that would otherwise live for the whole process, see
 * bench/RESULTS.md on the TLS garbage-collection cost of a larger old generation).
 * The provider is never registered globally: the library does not own the process
 * (STYLE.md §8).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { TextMapPropagator } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { channels, demandMessages, type ConnectionCloseEvent, type FlushEvent, type MessageEvent } from '../core/events.js';

export type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface TracingOptions {
  /**
   * Fraction of root traces (messages without a sampled `traceparent`) recorded, 0..1.
   * Messages whose `traceparent` says "sampled" are always recorded (ParentBased).
   */
  sampleRatio: number;
  /** Explicit exporter (tests pass an InMemorySpanExporter); wins over the environment. */
  exporter?: SpanExporter;
  /** `service.name` resource attribute. */
  serviceName: string;
  /** `service.instance.id` resource attribute (the server's instance id). */
  instance: string;
  /**
   * Environment read for `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
   * @default process.env
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** Bound on spans waiting for their flush, per connection. @default 1024 */
  maxPendingPerConnection?: number;
  /** Bound on spans waiting for their flush, in total. @default 65536 */
  maxPending?: number;
  /**
   * Ceiling on spans started per second (roots and children alike): 1% of 1.5 M messages/s is
   * 15,000 spans/s, whose export alone would cost a quarter of the server's CPU. Past the
   * ceiling, messages are not traced for the rest of that second. @default 1000 (spans/s)
   */
  maxSpansPerSecond?: number;
}

export interface Tracing {
  /** False when neither an exporter nor an OTLP endpoint was configured. */
  readonly enabled: boolean;
  readonly tracer: Tracer | undefined;
  /** W3C trace-context extraction for `traceparent`/`tracestate` headers (when enabled). */
  readonly propagator: TextMapPropagator | undefined;
  readonly sampleRatio: number;
  /** Where spans go, for logs: the OTLP URL, `'custom exporter'` or `undefined`. */
  readonly endpoint: string | undefined;
  readonly maxPendingPerConnection: number;
  readonly maxPending: number;
  readonly maxSpansPerSecond: number;
  /** Exports finished spans now. */
  forceFlush(): Promise<void>;
  /** Flushes and stops the exporter; idempotent. */
  shutdown(): Promise<void>;
}

const DEFAULT_MAX_PENDING_PER_CONNECTION = 1024;
const DEFAULT_MAX_SPANS_PER_SECOND = 1000;
const DEFAULT_MAX_PENDING = 65_536;
// service.instance.id is still "incubating" in semantic-conventions 1.29, whose docs advise
// copying incubating names rather than importing the unstable entry point.
const ATTR_SERVICE_INSTANCE_ID = 'service.instance.id';

/**
 * The OTLP/HTTP traces URL from the standard variables: the traces-specific one is used as
 * is, the generic one gets `/v1/traces` appended (OpenTelemetry exporter specification).
 */
export function otlpTracesUrl(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const specific = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim();
  if (specific) return specific;
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  if (base) return `${base.replace(/\/+$/, '')}/v1/traces`;
  return undefined;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * The tracing setup for `opts`. Async because the OpenTelemetry SDK and exporter are imported
 * only when an exporter or an OTLP endpoint is configured.
 */
export async function createTracing(opts: TracingOptions): Promise<Tracing> {
  const { sampleRatio } = opts;
  if (typeof sampleRatio !== 'number' || !(sampleRatio >= 0 && sampleRatio <= 1)) {
    throw new RangeError(`trace sample ratio must be a number in [0, 1], got ${String(sampleRatio)}`);
  }
  const maxPendingPerConnection = positiveInt(
    'maxPendingPerConnection',
    opts.maxPendingPerConnection ?? DEFAULT_MAX_PENDING_PER_CONNECTION,
  );
  const maxPending = positiveInt('maxPending', opts.maxPending ?? DEFAULT_MAX_PENDING);
  const maxSpansPerSecond = positiveInt('maxSpansPerSecond', opts.maxSpansPerSecond ?? DEFAULT_MAX_SPANS_PER_SECOND);

  const url = opts.exporter === undefined ? otlpTracesUrl(opts.env ?? process.env) : undefined;
  const exporter =
    opts.exporter ??
    (url === undefined ? undefined : new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({ url }));
  if (exporter === undefined) {
    return {
      enabled: false,
      tracer: undefined,
      propagator: undefined,
      sampleRatio,
      endpoint: undefined,
      maxPendingPerConnection,
      maxPending,
      maxSpansPerSecond,
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
  }

  const [{ W3CTraceContextPropagator }, { resourceFromAttributes }, sdk, { ATTR_SERVICE_NAME }] = await Promise.all([
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/semantic-conventions'),
  ]);
  const { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, AlwaysOnSampler } = sdk;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: opts.serviceName,
      [ATTR_SERVICE_INSTANCE_ID]: opts.instance,
    }),
    // Root decisions are taken in attachTracing before a span exists (a span per message, even
    // a non-recording one, cost most of the echo's throughput); children follow the client's
    // sampled flag.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    // Batching keeps export off the echo path: spans are queued, sent in the background.
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    tracer: provider.getTracer('echoserver'),
    propagator: new W3CTraceContextPropagator(),
    sampleRatio,
    endpoint: url ?? 'custom exporter',
    maxPendingPerConnection,
    maxPending,
    maxSpansPerSecond,
    forceFlush: () => provider.forceFlush(),
    shutdown(): Promise<void> {
      stopped ??= provider.shutdown();
      return stopped;
    },
  };
}

/** `performance.now()` → epoch milliseconds, the clock spans are stamped with. */
export function perfToEpochMs(t: number): number {
  return performance.timeOrigin + t;
}

/** The parent context from a metadata header's `traceparent`/`tracestate`, if any. */
function parentContext(propagator: TextMapPropagator, header: Readonly<Record<string, unknown>> | undefined): Context | undefined {
  const traceparent = header?.['traceparent'];
  if (typeof traceparent !== 'string') return undefined;
  const tracestate = header?.['tracestate'];
  const carrier: Record<string, string> = typeof tracestate === 'string' ? { traceparent, tracestate } : { traceparent };
  return propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
}

/**
 * Subscribes to `message`, `flush` and connection `close`; returns an idempotent detach that
 * also ends every pending span. A no-op (no subscription) when tracing is disabled.
 */
export function attachTracing(tracing: Tracing): () => void {
  const { tracer: maybeTracer, propagator: maybePropagator } = tracing;
  if (!tracing.enabled || maybeTracer === undefined || maybePropagator === undefined) return function detachNothing(): void {};
  const tracer: Tracer = maybeTracer;
  const propagator: TextMapPropagator = maybePropagator;

  const { sampleRatio, maxPendingPerConnection, maxPending, maxSpansPerSecond } = tracing;
  // Spans started in the current one-second window (the ceiling on export cost).
  let windowStart = 0;
  let windowSpans = 0;
  /** Recording spans per connection id, oldest first, waiting for the flush of their read. */
  const pending = new Map<string, Span[]>();
  let pendingTotal = 0;

  function onMessage(raw: unknown): void {
    const e = raw as MessageEvent;
    const parent = parentContext(propagator, e.header);
    if (parent === undefined) {
      // Root decision, made here and cheaply: the core already published this message with
      // probability e.sampleRatio (header-less messages are pre-sampled for us), so keep it with
      // sampleRatio / e.sampleRatio for an overall sampleRatio, before any span is created.
      const keep = sampleRatio / (e.sampleRatio ?? 1);
      if (keep <= 0 || (keep < 1 && Math.random() >= keep)) return;
    }
    if (e.receivedAt - windowStart >= 1000) {
      windowStart = e.receivedAt;
      windowSpans = 0;
    }
    if (++windowSpans > maxSpansPerSecond) return;
    const c = e.connection;
    const span = tracer.startSpan(
      'echo',
      {
        kind: SpanKind.SERVER,
        startTime: perfToEpochMs(e.receivedAt),
        attributes: {
          'echo.transport': c.transport,
          'echo.connection.id': c.id,
          'echo.message.id': e.id,
          'echo.message.size': e.size,
          'echo.message.kind': e.kind,
        },
      },
      parent ?? ROOT_CONTEXT,
    );
    // Unsampled spans are non-recording: nothing to end later, nothing to keep.
    if (!span.isRecording()) return;
    let list = pending.get(c.id);
    if (list === undefined) {
      list = [];
      pending.set(c.id, list);
    }
    if (list.length >= maxPendingPerConnection || pendingTotal >= maxPending) {
      // Bounds before bytes: the span is not kept waiting for a flush we may never see.
      span.setAttribute('echo.incomplete', 'pending-limit');
      span.end();
      return;
    }
    list.push(span);
    pendingTotal++;
  }

  function onFlush(raw: unknown): void {
    const e = raw as FlushEvent;
    const list = pending.get(e.connection.id);
    if (list === undefined) return;
    // A flush acknowledges the echoes of one read: the oldest `messages` pending spans.
    const n = e.messages > 0 ? Math.min(e.messages, list.length) : list.length;
    const end = perfToEpochMs(e.flushedAt);
    for (let i = 0; i < n; i++) list[i]?.end(end);
    pendingTotal -= n;
    if (n === list.length) pending.delete(e.connection.id);
    else list.splice(0, n);
  }

  function onClose(raw: unknown): void {
    const e = raw as ConnectionCloseEvent;
    const list = pending.get(e.connection.id);
    if (list === undefined) return;
    pending.delete(e.connection.id);
    pendingTotal -= list.length;
    for (const span of list) {
      span.setAttribute('echo.incomplete', `closed:${e.reason}`);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `connection closed before flush (${e.reason})` });
      span.end();
    }
  }

  // Header-less messages are published only at our ratio; with a header, always (traceparent).
  const releaseDemand = demandMessages(sampleRatio);
  diagnosticsChannel.subscribe(channels.message.name, onMessage);
  diagnosticsChannel.subscribe(channels.flush.name, onFlush);
  diagnosticsChannel.subscribe(channels.close.name, onClose);

  let detached = false;
  return function detachTracing(): void {
    if (detached) return;
    detached = true;
    releaseDemand();
    diagnosticsChannel.unsubscribe(channels.message.name, onMessage);
    diagnosticsChannel.unsubscribe(channels.flush.name, onFlush);
    diagnosticsChannel.unsubscribe(channels.close.name, onClose);
    for (const list of pending.values()) {
      for (const span of list) {
        span.setAttribute('echo.incomplete', 'detached');
        span.end();
      }
    }
    pending.clear();
    pendingTotal = 0;
  };
}
