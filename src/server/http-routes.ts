/**
 * The HTTP side of the WebSocket listener: /healthz (alive), /readyz (accepting; 503 while
 * draining), /info (instance, version, uptime, listeners, connections) and, when observability
 * provides it, /metrics. Everything else is 404; non-GET is 405.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONSOLE_HTML } from './console.js';

/** What `/metrics` and `/metrics/design` serve (src/observability/metrics.ts). */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
  renderDesign(): Promise<string>;
  close(): void;
}

export interface RoutesContext {
  readonly ready: () => boolean;
  /** `/info` (detailed: identities, pid, listener layout); undefined = not served here (404). */
  readonly info?: ((detailed: boolean) => Record<string, unknown>) | undefined;
  /** Whether a request may see the detailed `/info` (the admin port: always; the public port: valid credentials). */
  readonly infoDetail?: ((req: IncomingMessage) => Promise<boolean> | boolean) | undefined;
  /** Prometheus expositions, when metrics are enabled (and served on this listener). */
  readonly metrics?: MetricsSource | undefined;
  /** Paths that are WebSocket endpoints (a plain GET there gets a hint). */
  readonly wsPaths: readonly string[];
}

/**
 * Headers on every response of these routes (JSON, metrics, the console, errors): no MIME
 * sniffing (a JSON body that echoes client text must never render as HTML), no framing
 * (clickjacking of the console), no Referer leaking a `?token=` URL to another site. JSON gets a
 * CSP that allows nothing, should a browser ever render it.
 */
const HARDENING_HEADERS: readonly (readonly [string, string])[] = Object.freeze([
  ['x-content-type-options', 'nosniff'],
  ['x-frame-options', 'DENY'],
  ['referrer-policy', 'no-referrer'],
  ['content-security-policy', "default-src 'none'; frame-ancestors 'none'"],
]);

/**
 * The console page talks only to its own origin: `connect-src 'self'` covers `fetch('/info')`
 * and, in CSP Level 3 browsers (Chromium, Firefox, Safari 16+), the same host's `ws:`/`wss:`
 * URL. The old `ws: wss:` allowed any host.
 */
const CONSOLE_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function setHardeningHeaders(res: ServerResponse): void {
  for (const [name, value] of HARDENING_HEADERS) res.setHeader(name, value);
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
};

const html = (res: ServerResponse): void => {
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(CONSOLE_HTML),
    'cache-control': 'no-store',
    'content-security-policy': CONSOLE_CSP,
  });
  res.end(CONSOLE_HTML);
};

export function createRequestHandler(ctx: RoutesContext): (req: IncomingMessage, res: ServerResponse) => void {
  return function onRequest(req, res) {
    setHardeningHeaders(res);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/healthz':
        return json(res, 200, { status: 'ok' });
      case '/readyz':
        return ctx.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'draining' });
      case '/info': {
        const info = ctx.info;
        if (info === undefined) break;
        Promise.resolve(ctx.infoDetail?.(req) ?? false).then(
          (detailed) => json(res, 200, info(detailed)),
          () => json(res, 200, info(false)),
        );
        return;
      }
      case '/console':
        return html(res);
      case '/metrics':
      case '/metrics/design': {
        const m = ctx.metrics;
        if (m === undefined) break;
        (path === '/metrics' ? m.render() : m.renderDesign()).then(
          (body) => {
            res.writeHead(200, { 'content-type': m.contentType, 'content-length': Buffer.byteLength(body) });
            res.end(body);
          },
          () => json(res, 500, { error: 'metrics unavailable' }),
        );
        return;
      }
    }
    // A browser opening the endpoint gets the console; other clients a hint.
    if (path === '/' && (req.headers.accept ?? '').includes('text/html')) return html(res);
    if (ctx.wsPaths.includes(path)) {
      res.setHeader('upgrade', 'websocket');
      return json(res, 426, {
        error: 'this is a WebSocket echo endpoint: connect with a WebSocket client',
        endpoints: ['/healthz', '/readyz', '/info'],
      });
    }
    json(res, 404, { error: 'not found' });
  };
}
