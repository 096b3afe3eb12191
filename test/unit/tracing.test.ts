import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { channels } from '../../src/core/events.js';
import type { ConnectionCloseEvent, FlushEvent, MessageEvent } from '../../src/core/events.js';
import type { ConnectionInfo } from '../../src/core/types.js';
import { attachTracing, createTracing, otlpTracesUrl } from '../../src/observability/tracing.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';

function conn(id: string): ConnectionInfo {
  return {
    id,
    transport: 'tcp',
    peer: '127.0.0.1:4000',
    identity: undefined,
    connectedAt: Date.now(),
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    queuedBytes: 0,
  };
}

function message(c: ConnectionInfo, id: string, header?: Record<string, unknown>, receivedAt = performance.now()): MessageEvent {
  return { connection: c, id, kind: 'text', size: 5, header, receivedAt, sampleRatio: 1 };
}

async function inMemory(sampleRatio: number, extra: { maxPendingPerConnection?: number; maxSpansPerSecond?: number } = {}) {
  const exporter = new InMemorySpanExporter();
  const tracing = await createTracing({ sampleRatio, exporter, serviceName: 'echoserver', instance: 'i-7', ...extra });
  return { exporter, tracing, detach: attachTracing(tracing) };
}

describe('tracing', () => {
  it('makes a span per message, child of the header traceparent, ended by the flush', async () => {
    const { exporter, tracing, detach } = await inMemory(1);
    try {
      const c = conn('c-1');
      const receivedAt = performance.now();
      channels.message.publish(
        message(c, 'msg-1', { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`, tracestate: 'vendor=x' }, receivedAt),
      );
      await tracing.forceFlush();
      assert.equal(exporter.getFinishedSpans().length, 0, 'not ended before the flush');
      const flushedAt = receivedAt + 2.5;
      channels.flush.publish({ connection: c, messages: 1, flushedAt } satisfies FlushEvent);
      await tracing.forceFlush();
      const [span] = exporter.getFinishedSpans();
      assert.ok(span !== undefined);
      assert.equal(span.name, 'echo');
      assert.equal(span.kind, SpanKind.SERVER);
      assert.equal(span.spanContext().traceId, TRACE_ID);
      assert.equal(span.parentSpanContext?.spanId, PARENT_SPAN_ID);
      assert.equal(span.spanContext().traceState?.get('vendor'), 'x');
      assert.deepEqual(span.attributes, {
        'echo.transport': 'tcp',
        'echo.connection.id': 'c-1',
        'echo.message.id': 'msg-1',
        'echo.message.size': 5,
        'echo.message.kind': 'text',
      });
      assert.equal(span.resource.attributes['service.name'], 'echoserver');
      assert.equal(span.resource.attributes['service.instance.id'], 'i-7');
      // performance.now() → epoch: timeOrigin + t (to well under a millisecond).
      const start = hrTimeToMilliseconds(span.startTime);
      assert.ok(Math.abs(start - (performance.timeOrigin + receivedAt)) < 0.01, `start ${start}`);
      assert.ok(Math.abs(hrTimeToMilliseconds(span.duration) - 2.5) < 0.01);
      assert.ok(Math.abs(start - Date.now()) < 60_000, 'start is an epoch timestamp');
    } finally {
      detach();
      await tracing.shutdown();
    }
  });

  it('ends only the flushed batch, oldest first; a root span without traceparent', async () => {
    const { exporter, tracing, detach } = await inMemory(1);
    try {
      const c = conn('c-2');
      channels.message.publish(message(c, 'a'));
      channels.message.publish(message(c, 'b'));
      channels.message.publish(message(c, 'c'));
      channels.flush.publish({ connection: c, messages: 2, flushedAt: performance.now() } satisfies FlushEvent);
      await tracing.forceFlush();
      const ids = exporter.getFinishedSpans().map((s) => s.attributes['echo.message.id']);
      assert.deepEqual(ids, ['a', 'b']);
      assert.equal(exporter.getFinishedSpans()[0]?.parentSpanContext, undefined);
      channels.close.publish({
        connection: c,
        instance: 'i-7',
        code: 1006,
        reason: 'error',
        detail: 'reset',
        durationMs: 1,
      } satisfies ConnectionCloseEvent);
      await tracing.forceFlush();
      const last = exporter.getFinishedSpans()[2];
      assert.equal(last?.attributes['echo.message.id'], 'c');
      assert.equal(last?.attributes['echo.incomplete'], 'closed:error');
      assert.equal(last?.status.code, SpanStatusCode.ERROR);
    } finally {
      detach();
      await tracing.shutdown();
    }
  });

  it('starts at most maxSpansPerSecond spans per one-second window', async () => {
    const { exporter, tracing, detach } = await inMemory(1, { maxSpansPerSecond: 5 });
    try {
      const c = conn('c-ceiling');
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) channels.message.publish(message(c, `a${i}`, undefined, t0 + i));
      // The next window (1 s later by the messages' receive times) opens 5 more.
      for (let i = 0; i < 20; i++) channels.message.publish(message(c, `b${i}`, undefined, t0 + 1000 + i));
      channels.flush.publish({ connection: c, messages: 40, flushedAt: t0 + 1100 } satisfies FlushEvent);
      await tracing.forceFlush();
      const ids = exporter.getFinishedSpans().map((s) => s.attributes['echo.message.id']);
      assert.deepEqual(ids, ['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    } finally {
      detach();
      await tracing.shutdown();
    }
  });

  it('bounds spans waiting for a flush per connection', async () => {
    const { exporter, tracing, detach } = await inMemory(1, { maxPendingPerConnection: 2 });
    try {
      const c = conn('c-3');
      for (const id of ['1', '2', '3']) channels.message.publish(message(c, id));
      await tracing.forceFlush();
      const [overflow] = exporter.getFinishedSpans();
      assert.equal(overflow?.attributes['echo.message.id'], '3');
      assert.equal(overflow?.attributes['echo.incomplete'], 'pending-limit');
      channels.flush.publish({ connection: c, messages: 2, flushedAt: performance.now() } satisfies FlushEvent);
      await tracing.forceFlush();
      assert.equal(exporter.getFinishedSpans().length, 3);
    } finally {
      detach();
      await tracing.shutdown();
    }
  });

  it('records nothing at ratio 0 without a sampled parent; follows a sampled parent', async () => {
    const { exporter, tracing, detach } = await inMemory(0);
    try {
      const c = conn('c-4');
      channels.message.publish(message(c, 'x'));
      channels.message.publish(message(c, 'y', { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-00` }));
      channels.flush.publish({ connection: c, messages: 2, flushedAt: performance.now() } satisfies FlushEvent);
      await tracing.forceFlush();
      assert.equal(exporter.getFinishedSpans().length, 0);
      channels.message.publish(message(c, 'z', { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` }));
      channels.flush.publish({ connection: c, messages: 1, flushedAt: performance.now() } satisfies FlushEvent);
      await tracing.forceFlush();
      assert.deepEqual(
        exporter.getFinishedSpans().map((s) => s.attributes['echo.message.id']),
        ['z'],
      );
    } finally {
      detach();
      await tracing.shutdown();
    }
  });

  it('does not subscribe at all without an exporter or endpoint', async () => {
    const tracing = await createTracing({ sampleRatio: 1, serviceName: 's', instance: 'i', env: {} });
    assert.equal(tracing.enabled, false);
    const detach = attachTracing(tracing);
    assert.equal(channels.message.hasSubscribers, false);
    assert.equal(channels.flush.hasSubscribers, false);
    detach();
    await assert.rejects(createTracing({ sampleRatio: 2, serviceName: 's', instance: 'i' }), /sample ratio/);
  });

  it('unsubscribes on detach', async () => {
    const { tracing, detach } = await inMemory(1);
    assert.equal(channels.message.hasSubscribers, true);
    detach();
    detach();
    assert.equal(channels.message.hasSubscribers, false);
    assert.equal(channels.flush.hasSubscribers, false);
    assert.equal(channels.close.hasSubscribers, false);
    await tracing.shutdown();
  });

  it('derives the OTLP traces URL from the standard variables', () => {
    assert.equal(otlpTracesUrl({}), undefined);
    assert.equal(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }), 'http://c:4318/v1/traces');
    assert.equal(
      otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x' }),
      'http://t:1/x',
    );
  });

  it('exports over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT', async () => {
    const bodies: Array<{ url: string | undefined; type: string | undefined; body: string }> = [];
    let resolveReceived: () => void = () => undefined;
    const received = new Promise<void>((resolve) => {
      resolveReceived = resolve;
    });
    const server = createServer(function onRequest(req: IncomingMessage, res: ServerResponse) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push({ url: req.url, type: req.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        resolveReceived();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const tracing = await createTracing({
      sampleRatio: 1,
      serviceName: 'echoserver',
      instance: 'i-otlp',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` },
    });
    assert.equal(tracing.enabled, true);
    assert.equal(tracing.endpoint, `http://127.0.0.1:${port}/v1/traces`);
    const detach = attachTracing(tracing);
    try {
      const c = conn('c-otlp');
      channels.message.publish(message(c, 'otlp-1', { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` }));
      channels.flush.publish({ connection: c, messages: 1, flushedAt: performance.now() } satisfies FlushEvent);
      await tracing.forceFlush();
      await received;
      const [req] = bodies;
      assert.ok(req !== undefined);
      assert.equal(req.url, '/v1/traces');
      assert.match(req.type ?? '', /application\/json/);
      const payload = JSON.parse(req.body) as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
          scopeSpans: Array<{ spans: Array<{ name: string; traceId: string; parentSpanId: string }> }>;
        }>;
      };
      const rs = payload.resourceSpans[0];
      const span = rs?.scopeSpans[0]?.spans[0];
      assert.equal(span?.name, 'echo');
      assert.equal(span?.traceId, TRACE_ID);
      assert.equal(span?.parentSpanId, PARENT_SPAN_ID);
      const instance = rs?.resource.attributes.find((a) => a.key === 'service.instance.id');
      assert.equal(instance?.value.stringValue, 'i-otlp');
    } finally {
      detach();
      await tracing.shutdown();
      server.close();
      await once(server, 'close');
    }
  });
});
