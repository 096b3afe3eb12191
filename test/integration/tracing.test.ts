/**
 * OTLP/HTTP export from the real CLI: `OTEL_EXPORTER_OTLP_ENDPOINT` points at a small receiver
 * in the test that records POSTs to /v1/traces. `@opentelemetry/exporter-trace-otlp-http`
 * 0.215 always sends OTLP **JSON** (`Content-Type: application/json`, its `JsonTraceSerializer`;
 * protobuf is the separate `exporter-trace-otlp-proto` package, and it does not read
 * `OTEL_EXPORTER_OTLP_PROTOCOL`), with trace and span ids as hex strings, so the body is parsed
 * and the span looked up by the client's trace id. Waits are on the receiver's `post` events
 * and on the process exiting.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { connectV1 } from '../../src/index.js';
import { spawnCli } from '../../test-helpers/cli-lines.js';

interface Post {
  path: string;
  contentType: string;
  body: string;
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}
interface OtlpBody {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: Record<string, unknown> }> };
    scopeSpans: Array<{ spans: OtlpSpan[] }>;
  }>;
}

/** An OTLP/HTTP receiver on 127.0.0.1:0 that keeps every POST and emits `post`. */
async function startReceiver(): Promise<{ url: string; posts: Post[]; events: EventEmitter; close(): Promise<void> }> {
  const posts: Post[] = [];
  const events = new EventEmitter();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      const post = { path: req.url ?? '', contentType: String(req.headers['content-type']), body: raw.toString('utf8') };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      if (req.method === 'POST') {
        posts.push(post);
        events.emit('post', post);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    posts,
    events,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Resolves with the first POST (already received or to come) whose body contains `needle`. */
function postContaining(rx: { posts: Post[]; events: EventEmitter }, needle: string): Promise<Post> {
  const seen = rx.posts.find((p) => p.body.includes(needle));
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const onPost = (p: Post): void => {
      if (!p.body.includes(needle)) return;
      rx.events.off('post', onPost);
      resolve(p);
    };
    rx.events.on('post', onPost);
  });
}

function spansOf(post: Post): { spans: OtlpSpan[]; resource: Record<string, unknown> } {
  const body = JSON.parse(post.body) as OtlpBody;
  const spans: OtlpSpan[] = [];
  const resource: Record<string, unknown> = {};
  for (const rs of body.resourceSpans) {
    for (const a of rs.resource.attributes) resource[a.key] = Object.values(a.value)[0];
    for (const ss of rs.scopeSpans) spans.push(...ss.spans);
  }
  return { spans, resource };
}

const attr = (span: OtlpSpan, key: string): unknown => {
  const a = span.attributes.find((x) => x.key === key);
  return a === undefined ? undefined : Object.values(a.value)[0];
};

const randomHex = (bytes: number): string =>
  Buffer.from(Array.from({ length: bytes }, () => Math.floor(Math.random() * 256))).toString('hex');

function otelEnv(endpoint: string, scheduleDelayMs: number): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    // Neutralise variables a developer's shell might carry, which would redirect the export.
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '',
    OTEL_SERVICE_NAME: 'echo-trace-test',
    OTEL_BSP_SCHEDULE_DELAY: String(scheduleDelayMs),
  };
}

const CLI_ARGS = [
  'serve',
  '--insecure',
  '--host',
  '127.0.0.1',
  '--ws-port',
  'off',
  '--tcp-port',
  '0',
  '--log-format',
  'json',
  '--log-level',
  'info',
  '--trace-sample-ratio',
  '1',
  '--instance',
  'trace-test',
];

it('exports the span of a message over OTLP/HTTP as a child of its traceparent', { timeout: 20_000 }, async (t) => {
  const rx = await startReceiver();
  t.after(() => rx.close());
  // A 100 ms batch delay: the export arrives while the server runs.
  const cli = spawnCli(CLI_ARGS, otelEnv(rx.url, 100));
  t.after(() => cli.kill());
  const { tcp } = await cli.listening();
  assert.ok(tcp !== undefined);

  const traceId = randomHex(16);
  const parentSpanId = randomHex(8);
  const client = await connectV1({ port: tcp.port });
  const echoed = once(client, 'message');
  client.send('traced', { id: 'trace-msg-1', traceparent: `00-${traceId}-${parentSpanId}-01` });
  await echoed;

  const post = await postContaining(rx, traceId);
  assert.equal(post.path, '/v1/traces');
  assert.match(post.contentType, /^application\/json/);
  const { spans, resource } = spansOf(post);
  const span = spans.find((s) => s.traceId === traceId);
  assert.ok(span !== undefined, `a span with trace id ${traceId}`);
  assert.equal(span.parentSpanId, parentSpanId, 'child of the client span');
  assert.notEqual(span.spanId, parentSpanId);
  assert.equal(span.name, 'echo');
  assert.equal(span.kind, 2, 'SPAN_KIND_SERVER');
  assert.equal(attr(span, 'echo.transport'), 'tcp');
  assert.equal(attr(span, 'echo.message.id'), 'trace-msg-1');
  assert.equal(Number(attr(span, 'echo.message.size')), Buffer.byteLength('traced'));
  assert.equal(attr(span, 'echo.message.kind'), 'text');
  assert.equal(typeof attr(span, 'echo.connection.id'), 'string');
  assert.equal(attr(span, 'echo.incomplete'), undefined, 'ended by its flush, not by a close');
  assert.equal(resource['service.name'], 'echo-trace-test');
  assert.equal(resource['service.instance.id'], 'trace-test');

  await client.close();
  cli.child.kill('SIGTERM');
  const { code } = await cli.exited;
  assert.equal(code, 0, cli.stderr());
});

it('flushes pending spans on SIGTERM, and never exports an unsampled parent', { timeout: 20_000 }, async (t) => {
  const rx = await startReceiver();
  t.after(() => rx.close());
  // A one-minute batch delay: only the shutdown flush can deliver the span within the test.
  const cli = spawnCli(CLI_ARGS, otelEnv(rx.url, 60_000));
  t.after(() => cli.kill());
  const { tcp } = await cli.listening();
  assert.ok(tcp !== undefined);

  const sampled = randomHex(16);
  const unsampled = randomHex(16);
  const client = await connectV1({ port: tcp.port });
  let n = 0;
  const both = new Promise<void>((resolve) => client.on('message', () => ++n === 2 && resolve()));
  client.send('a', { traceparent: `00-${sampled}-${randomHex(8)}-01` });
  client.send('b', { traceparent: `00-${unsampled}-${randomHex(8)}-00` });
  await both;
  assert.equal(rx.posts.length, 0, 'nothing exported before the batch delay or shutdown');

  const exported = postContaining(rx, sampled);
  cli.child.kill('SIGTERM');
  const { code } = await cli.exited;
  assert.equal(code, 0, cli.stderr());
  // The export was sent before the process exited: the receiver has it, or is reading it now
  // (bounded, so a lost span fails with a message instead of the test timeout).
  let timer: NodeJS.Timeout | undefined;
  const post = await Promise.race([
    exported,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the CLI exited without exporting the pending span (shutdown did not flush)')), 5000);
    }),
  ]).finally(() => clearTimeout(timer));
  assert.ok(spansOf(post).spans.some((s) => s.traceId === sampled));
  for (const p of rx.posts) assert.ok(!p.body.includes(unsampled), 'the unsampled trace (flag 00) was exported');
});
