/**
 * Starting servers for integration tests: every network listener on port 0 on loopback,
 * `insecure: true`, and a cleanup that is safe to call twice. Plus small HTTP, `ws` and
 * diagnostics-channel helpers that wait on events, never on time.
 */
import { once } from 'node:events';
import http from 'node:http';
import WebSocket from 'ws';
import { channels, createEchoServer } from '../src/index.js';
import type { ConnectionCloseEvent, ConnectionOpenEvent, EchoServer, EchoServerOptions, ServerAddresses } from '../src/index.js';

export interface StartedServer {
  server: EchoServer;
  addr: ServerAddresses;
  /** WebSocket/HTTP port (throws if the listener is off). */
  readonly wsPort: number;
  /** TCP port (throws if the listener is off). */
  readonly tcpPort: number;
  /** `ws://127.0.0.1:<port>` + path. */
  wsUrl(path?: string): string;
  /** Closes the server (short drain); idempotent. */
  close(): Promise<void>;
}

export async function startServer(options: EchoServerOptions = {}): Promise<StartedServer> {
  const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true, instance: 'test', ...options });
  const addr = await server.listen();
  return {
    server,
    addr,
    get wsPort() {
      if (addr.ws === undefined) throw new Error('no ws listener');
      return addr.ws.port;
    },
    get tcpPort() {
      if (addr.tcp === undefined) throw new Error('no tcp listener');
      return addr.tcp.port;
    },
    wsUrl(path = '/') {
      if (addr.ws === undefined) throw new Error('no ws listener');
      return `ws://127.0.0.1:${addr.ws.port}${path}`;
    },
    async close() {
      await server.close({ drainMs: 500 });
    },
  };
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** GET on 127.0.0.1 (a fresh connection each time). */
export async function httpGet(port: number, path: string): Promise<HttpResult> {
  const req = http.get({ host: '127.0.0.1', port, path, agent: false });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') };
}

/** Opens a `ws` client and waits for 'open'; rejects with the HTTP status on a refused upgrade. */
export async function openWs(url: string, protocols?: string | string[], options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`unexpected response ${res.statusCode ?? 0}`), { status: res.statusCode }));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
  return ws;
}

/** The HTTP status a refused WebSocket upgrade got. */
export async function refusedUpgradeStatus(url: string, protocols?: string | string[]): Promise<number> {
  try {
    const ws = await openWs(url, protocols);
    ws.terminate();
    return 101;
  } catch (err) {
    const status = (err as { status?: number }).status;
    if (status === undefined) throw err;
    return status;
  }
}

/** The next message on a `ws` client. */
export async function nextWsMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  const [data, isBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  return { data, isBinary };
}

/** Sends and waits for the echo. */
export async function wsRoundTrip(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  const reply = nextWsMessage(ws);
  ws.send(data);
  return reply;
}

/** Resolves with the close code and reason of a `ws` client. */
export async function wsClosed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) throw new Error('already closed');
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  return { code, reason: reason.toString() };
}

/**
 * Resolves with the first `connection:close` event matching `predicate`. Subscribe before
 * triggering the close.
 */
export function nextClose(predicate: (e: ConnectionCloseEvent) => boolean = () => true): Promise<ConnectionCloseEvent> {
  return new Promise((resolve) => {
    const onClose = (msg: unknown): void => {
      const e = msg as ConnectionCloseEvent;
      if (!predicate(e)) return;
      channels.close.unsubscribe(onClose);
      resolve(e);
    };
    channels.close.subscribe(onClose);
  });
}

/** Resolves with the first `connection:open` event matching `predicate`. */
export function nextOpen(predicate: (e: ConnectionOpenEvent) => boolean = () => true): Promise<ConnectionOpenEvent> {
  return new Promise((resolve) => {
    const onOpen = (msg: unknown): void => {
      const e = msg as ConnectionOpenEvent;
      if (!predicate(e)) return;
      channels.open.unsubscribe(onOpen);
      resolve(e);
    };
    channels.open.subscribe(onOpen);
  });
}

/** Random text of `n` bytes of UTF-8 (mixes 1-, 2- and 3-byte characters). */
export function randomText(n: number): string {
  const parts: string[] = [];
  let left = n;
  const pieces = ['a', 'Z', '0', ' ', 'é', 'ß', '€', '中'];
  while (left > 0) {
    const p = pieces[Math.floor(Math.random() * pieces.length)] as string;
    const size = Buffer.byteLength(p);
    if (size > left) {
      parts.push('x'.repeat(left));
      break;
    }
    parts.push(p);
    left -= size;
  }
  return parts.join('');
}
