/**
 * The HTTP side of the WebSocket listener: /healthz (alive), /readyz (accepting; 503 while
 * draining), /info (instance, version, uptime, listeners, connections), when observability
 * provides it /metrics, and the debugging routes: /whoami (what the server saw of this request)
 * and the request echo (any method, `--http-echo-path`, default /echo). Everything else is 404;
 * non-GET is 405 (except on the request echo).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError } from '../errors.js';
import type { DebugRoutes } from './debug.js';
import { consoleAssets } from './console.js';

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
  /** /whoami and the request echo (on the WebSocket listener only). */
  readonly debug?: DebugRoutes | undefined;
  /** Serve the debug console at /console (and / for browsers). @default false */
  readonly console?: boolean;
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

function setHardeningHeaders(res: ServerResponse): void {
  for (const [name, value] of HARDENING_HEADERS) res.setHeader(name, value);
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
};

/** A Host header fit to put in a CSP source (anything else: 'self' only). */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/**
 * One console file. The page may load scripts and styles from this origin only, and open
 * sockets to this host only (ws: and wss:, named explicitly: older browsers do not count them
 * in 'self'). Files are revalidated by ETag, so an upgraded server is picked up at once.
 */
function sendConsoleFile(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const assets = consoleAssets();
  if (assets instanceof Error) {
    json(res, 503, { error: assets.message });
    return true;
  }
  const a = assets.get(path);
  if (a === undefined) return false;
  const host = req.headers.host ?? '';
  const sockets = HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  const headers: Record<string, string | number> = {
    'content-type': a.type,
    'cache-control': 'no-cache',
    etag: a.etag,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'${sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  };
  if (req.headers['if-none-match'] === a.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  headers['content-length'] = a.body.length;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : a.body);
  return true;
}

export function createRequestHandler(ctx: RoutesContext): (req: IncomingMessage, res: ServerResponse) => void {
  return function onRequest(req, res) {
    setHardeningHeaders(res);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const debug = ctx.debug;
    if (debug !== undefined && debug.echoPath !== null && path === debug.echoPath) return requestEcho(debug, req, res);
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
      case '/whoami':
        if (debug === undefined) break;
        debug.authorize(req).then(
          (auth) => json(res, 200, debug.whoami(req, auth)),
          (err: unknown) => refuse(res, err),
        );
        return;
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
    if (ctx.console === true) {
      if ((path === '/console' || path.startsWith('/console/')) && sendConsoleFile(req, res, path === '/console/' ? '/console' : path))
        return;
      // A browser opening the endpoint gets the console; other clients a hint.
      if (path === '/' && (req.headers.accept ?? '').includes('text/html')) {
        sendConsoleFile(req, res, '/console');
        return;
      }
    }
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

/** A refused debugging request: the HttpError's status (401 with a Bearer challenge), else 500. */
function refuse(res: ServerResponse, err: unknown): void {
  if (res.headersSent) return;
  const status = err instanceof HttpError ? err.status : 500;
  if (status === 401) res.setHeader('www-authenticate', 'Bearer');
  json(res, status, { error: err instanceof HttpError ? err.message : 'internal error' });
}

/**
 * The request echo: any method; the body is read up to the frame limit. A longer body gets 413
 * and the connection is closed once the answer is out, so the rest is never buffered.
 */
function requestEcho(debug: DebugRoutes, req: IncomingMessage, res: ServerResponse): void {
  const max = debug.maxBodyBytes;
  const tooBig = (): void => {
    res.shouldKeepAlive = false;
    req.pause();
    json(res, 413, { error: `request body is larger than the frame limit (${max} bytes)` });
    // Stop reading: what the client still sends is not wanted.
    res.once('finish', () => req.socket.destroySoon());
  };
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) return tooBig();
  const auth = debug.authorize(req);
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', function onEchoBody(chunk: Buffer) {
    if (over) return;
    size += chunk.length;
    if (size > max) {
      over = true;
      chunks.length = 0;
      tooBig();
      return;
    }
    chunks.push(chunk);
  });
  req.once('end', function onEchoEnd() {
    if (over) return;
    auth.then(
      () => json(res, 200, debug.requestEcho(req, Buffer.concat(chunks, size))),
      (err: unknown) => refuse(res, err),
    );
  });
  // Settled either way; a refusal is answered at 'end' (after the body, so keep-alive holds).
  auth.catch(() => undefined);
}
