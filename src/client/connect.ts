/**
 * `connect()` for Node: one API over ws://, wss://, tcp://, tls://, unix: and any Duplex (the
 * in-process pair of `createEchoServer().connectStream()`). WebSocket through `ws`.
 */
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { ConfigError } from '../errors.js';
import { parseWsUrl, protocolMode } from './browser.js';
import { Client, resolveBaseOptions, type BaseClientOptions, type Dialer } from './client.js';
import { dialNet, dialTls, normalisePin, streamLink, type ClientTlsOptions } from './stream-link.js';
import { openWebSocket, V1_SUBPROTOCOL, type WebSocketLike } from './ws-link.js';

export interface ClientOptions extends BaseClientOptions {
  /** WebSocket only: 'echo.v1' (headers, ids, `srv`, ping) or 'plain' echo. @default 'echo.v1' */
  readonly protocol?: 'echo.v1' | 'plain';
  /** `tls://` and `wss://`: CA, pinned fingerprint, client certificate. */
  readonly tls?: ClientTlsOptions;
}

/** Something that opens in-process connections: an EchoServer. */
export interface StreamSource {
  connectStream(): Duplex;
}

/** Where to connect: a URL, a Duplex (no reconnect), a function opening one, or an EchoServer. */
export type ConnectTarget = string | URL | Duplex | (() => Duplex | Promise<Duplex>) | StreamSource;

const TLS_KEYS = new Set(['ca', 'fingerprint256', 'cert', 'key', 'servername']);

function checkTls(t: unknown): ClientTlsOptions | undefined {
  if (t === undefined) return undefined;
  if (typeof t !== 'object' || t === null) throw new ConfigError('tls', 'must be an object { ca, fingerprint256, cert, key, servername }');
  for (const k of Object.keys(t))
    if (!TLS_KEYS.has(k)) throw new ConfigError(`tls.${k}`, `unknown option (known: ${[...TLS_KEYS].join(', ')})`);
  const o = t as ClientTlsOptions;
  if (o.fingerprint256 !== undefined) {
    if (typeof o.fingerprint256 !== 'string') throw new ConfigError('tls.fingerprint256', 'must be a string');
    normalisePin(o.fingerprint256);
  }
  if ((o.cert === undefined) !== (o.key === undefined))
    throw new ConfigError(o.cert === undefined ? 'tls.cert' : 'tls.key', 'tls.cert and tls.key go together');
  const pem = (name: string, v: unknown): void => {
    if (v !== undefined && typeof v !== 'string' && !(v instanceof Uint8Array) && !(Array.isArray(v) && name === 'ca'))
      throw new ConfigError(`tls.${name}`, 'must be PEM text');
  };
  pem('ca', o.ca);
  pem('cert', o.cert);
  pem('key', o.key);
  if (o.servername !== undefined && typeof o.servername !== 'string') throw new ConfigError('tls.servername', 'must be a string');
  return o;
}

function hostPort(u: URL, scheme: string): { host: string; port: number } {
  if (u.port === '') throw new ConfigError('url', `${scheme} URLs need a port, e.g. ${scheme}//127.0.0.1:7000`);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host: host === '' ? '127.0.0.1' : host, port: Number(u.port) };
}

const isDuplex = (v: unknown): v is Duplex =>
  typeof v === 'object' && v !== null && typeof (v as Duplex).pipe === 'function' && typeof (v as Duplex).write === 'function';

/**
 * Connects and resolves once the connection is ready (after the v1 hello, which carries the
 * token on TCP, TLS and Unix). Every option is checked first; errors name it.
 *
 * ```ts
 * const c = await connect('ws://127.0.0.1:8080/ws');
 * const { data, srv, rttMs } = await c.request('hello');
 * ```
 */
export async function connect(target: ConnectTarget, options: ClientOptions = {}): Promise<Client> {
  const opts = resolveBaseOptions(options, ['protocol', 'tls']);
  const t = checkTls(options.tls);
  const limits = { maxFrameBytes: opts.maxFrameBytes, maxHeaderBytes: opts.maxHeaderBytes };

  // In-process and custom streams.
  if (typeof target === 'function' || isDuplex(target) || (typeof target === 'object' && target !== null && 'connectStream' in target)) {
    if (options.protocol !== undefined) throw new ConfigError('protocol', 'is for WebSocket URLs only');
    if (t !== undefined) throw new ConfigError('tls', 'is for tls:// and wss:// URLs only');
    const once = isDuplex(target) ? target : undefined;
    let used = false;
    const open = async (): Promise<Duplex> => {
      if (once !== undefined) {
        if (used) throw new ConfigError('target', 'a Duplex can be used once: pass a function to reconnect');
        used = true;
        return once;
      }
      if (typeof target === 'function') return target();
      return (target as StreamSource).connectStream();
    };
    const dial: Dialer = async (h) => streamLink(await open(), h, limits);
    return new Client(dial, 'v1', opts, once === undefined).start(options.signal);
  }

  let u: URL;
  if (target instanceof URL) u = target;
  else if (typeof target === 'string') {
    // `unix:/path` and `unix:///path` both name a socket path.
    if (target.startsWith('unix:')) u = new URL(`unix://${target.slice(5).replace(/^\/\//, '')}`);
    else {
      try {
        u = new URL(target);
      } catch {
        throw new ConfigError('url', `not a URL: ${target} (ws://, wss://, tcp://, tls:// or unix:)`);
      }
    }
  } else throw new ConfigError('target', 'must be a URL, a Duplex, a function returning one, or an EchoServer');

  switch (u.protocol) {
    case 'ws:':
    case 'wss:': {
      const mode = protocolMode(options.protocol);
      const url = parseWsUrl(u).href;
      const secure = u.protocol === 'wss:';
      if (!secure && t !== undefined) throw new ConfigError('tls', 'is for wss:// (this URL is ws://)');
      const hp = { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || (secure ? 443 : 80)) };
      const dial: Dialer = async (h, signal, token) => {
        // wss: the TLS connection (and its pin) is made first; `ws` then speaks HTTP over it.
        const tlsSocket = secure ? await dialTls(hp, t ?? {}, signal, ['http/1.1']) : undefined;
        return openWebSocket(
          () =>
            new WebSocket(url, mode === 'v1' ? [V1_SUBPROTOCOL] : [], {
              perMessageDeflate: false,
              maxPayload: opts.maxFrameBytes,
              ...(token !== undefined && { headers: { authorization: `Bearer ${token}` } }),
              ...(tlsSocket !== undefined && { createConnection: () => tlsSocket }),
            }) as unknown as WebSocketLike,
          mode,
          h,
          signal,
          {
            ping: (ws, payload) => (ws as unknown as WebSocket).ping(payload),
            onPong: (ws, listener) => (ws as unknown as WebSocket).on('pong', (data: Buffer) => listener(data)),
          },
        );
      };
      return new Client(dial, mode, opts).start(options.signal);
    }
    case 'tcp:':
    case 'tls:': {
      if (options.protocol !== undefined) throw new ConfigError('protocol', 'is for WebSocket URLs only');
      if (u.protocol === 'tcp:' && t !== undefined) throw new ConfigError('tls', 'is for tls:// (this URL is tcp://)');
      const hp = hostPort(u, u.protocol);
      const dial: Dialer = async (h, signal) =>
        streamLink(u.protocol === 'tls:' ? await dialTls(hp, t ?? {}, signal) : await dialNet(hp, signal), h, limits);
      return new Client(dial, 'v1', opts).start(options.signal);
    }
    case 'unix:': {
      if (options.protocol !== undefined) throw new ConfigError('protocol', 'is for WebSocket URLs only');
      if (t !== undefined) throw new ConfigError('tls', 'is for tls:// and wss:// URLs only');
      const path = decodeURIComponent(u.host + u.pathname);
      if (path === '') throw new ConfigError('url', 'unix: needs a socket path, e.g. unix:/tmp/echo.sock');
      const dial: Dialer = async (h, signal) => streamLink(await dialNet({ path }, signal), h, limits);
      return new Client(dial, 'v1', opts).start(options.signal);
    }
    default:
      throw new ConfigError('url', `unsupported scheme ${u.protocol}// (ws://, wss://, tcp://, tls:// or unix:)`);
  }
}
