/**
 * The browser build of the client: WebSocket only, through the global WebSocket, with nothing
 * from Node (test/integration/client-browser-build.test.ts walks its import graph). The console
 * page loads it. `import { connect } from 'echoserver/client/browser'`.
 */
import { ConfigError } from '../errors.js';
import { Client, resolveBaseOptions, type BaseClientOptions } from './client.js';
import { openWebSocket, V1_SUBPROTOCOL, type WebSocketLike } from './ws-link.js';

export { Client } from './client.js';
export type {
  BaseClientOptions,
  ClientEvents,
  MetadataHeader,
  QueueOptions,
  ReceivedMessage,
  ReconnectOptions,
  RequestOptions,
  RequestResult,
  ServerStamp,
} from './client.js';
export { ConnectionClosedError, EchoError, ErrorCode } from '../errors.js';

export interface BrowserClientOptions extends BaseClientOptions {
  /** 'echo.v1' (headers, ids, `srv`; the default) or 'plain' WebSocket echo. @default 'echo.v1' */
  readonly protocol?: 'echo.v1' | 'plain';
  /** Query parameter that carries the token (browsers cannot set headers). @default 'token' */
  readonly tokenParam?: string;
}

type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Parses a ws:// or wss:// URL (relative URLs resolve against the page). */
export function parseWsUrl(url: string | URL, base?: string): URL {
  let u: URL;
  try {
    u = new URL(String(url), base);
  } catch {
    throw new ConfigError('url', `not a URL: ${String(url)}`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new ConfigError('url', `must be ws:// or wss:// here, got ${u.protocol}//`);
  return u;
}

export function protocolMode(p: unknown): 'v1' | 'plain' {
  if (p === undefined || p === 'echo.v1') return 'v1';
  if (p === 'plain') return 'plain';
  throw new ConfigError('protocol', `must be 'echo.v1' or 'plain', got ${String(p)}`);
}

/**
 * Connects over WebSocket and resolves once the connection is ready (after hello on echo.v1).
 * The token goes in the URL's `?token=` (browsers cannot send an Authorization header).
 */
export async function connect(url: string | URL, options: BrowserClientOptions = {}): Promise<Client> {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const u = parseWsUrl(url, base);
  const opts = resolveBaseOptions(options, ['protocol', 'tokenParam']);
  const mode = protocolMode(options.protocol);
  const param = options.tokenParam ?? 'token';
  if (typeof param !== 'string' || param === '') throw new ConfigError('tokenParam', 'must be a non-empty string');
  const Ctor = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
  if (Ctor === undefined) throw new ConfigError('url', 'this runtime has no global WebSocket (in Node, import from echoserver/client)');
  const client = new Client(
    (h, signal, token) =>
      openWebSocket(
        () => {
          const target = new URL(u.href);
          if (token !== undefined) target.searchParams.set(param, token);
          return new Ctor(target.href, mode === 'v1' ? [V1_SUBPROTOCOL] : []);
        },
        mode,
        h,
        signal,
      ),
    mode,
    opts,
  );
  return client.start(options.signal);
}
