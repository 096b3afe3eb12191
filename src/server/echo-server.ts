/**
 * `createEchoServer()`: the listeners (WebSocket + HTTP routes, TCP, Unix, raw), one echo core,
 * and an explicit, idempotent lifecycle: `listen()`, `address()`, `close({ drainMs })`.
 * Drain order: not ready → stop accepting → flush echoes → close 1001 → deadline.
 */
import { existsSync, readFileSync, unlinkSync, chmodSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { resolveSettings, type Settings } from '../config/index.js';
import { ConfigError, CloseCode, EchoError, ErrorCode } from '../errors.js';
import { EchoCore, type MessageHandler } from '../core/core.js';
import type { ConnectionInfo, TransportName, TransportStats } from '../core/types.js';
import { nativeMasking } from '../protocol/mask.js';
import { duplexPair } from '../transports/inproc.js';
import { makeStreamProtocol, refuseStream, type StreamFraming } from '../transports/stream.js';
import { handleUpgrade, peerOf } from '../transports/ws.js';
import { V1Client, type V1ClientOptions } from '../client/stream-client.js';
import { createRequestHandler, type MetricsSource } from './http-routes.js';
import { createMetrics } from '../observability/metrics.js';

export interface EchoServerOptions extends Partial<Settings> {
  /** Message hook (default: echo). See `MessageHandler`. */
  readonly onMessage?: MessageHandler;
}

export interface ServerAddresses {
  ws?: { host: string; port: number; url: string };
  tcp?: { host: string; port: number; framing: 'v1' | 'len' };
  unix?: { path: string };
  raw?: { host: string; port: number };
  admin?: { host: string; port: number };
}

export interface EchoServer {
  /** Starts every configured listener; resolves with their addresses. Idempotent. */
  listen(): Promise<ServerAddresses>;
  /** Bound addresses (ports resolved when 0 was asked). */
  address(): ServerAddresses;
  /**
   * Graceful shutdown, idempotent: readiness goes 503, listeners stop accepting, every
   * message already received is echoed, clients get close 1001; connections left at the
   * deadline are dropped. Resolves `{ clean: false }` when the deadline passed.
   * @param options.drainMs deadline in ms (default: the `drainTimeoutMs` setting)
   */
  close(options?: { drainMs?: number }): Promise<{ clean: boolean }>;
  /** Open connections (live metadata). */
  readonly connections: ReadonlySet<ConnectionInfo>;
  /** Per-transport totals (what `/metrics` exposes). */
  stats(): Readonly<Record<TransportName, TransportStats>>;
  /** False before `listen()` and while draining. */
  readonly ready: boolean;
  readonly settings: Readonly<Settings>;
  /** An in-process framing-v1 client: no socket, same core path as TCP. */
  connect(options?: V1ClientOptions): V1Client;
  /** Information served at `/info`. */
  info(): Record<string, unknown>;
}

export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/** Splits library-only options from settings and validates the settings. */
function splitOptions(options: EchoServerOptions): { settings: Readonly<Settings>; onMessage: MessageHandler | undefined } {
  const { onMessage, ...rest } = options;
  if (onMessage !== undefined && typeof onMessage !== 'function') throw new ConfigError('onMessage', 'must be a function');
  return { settings: resolveSettings(rest), onMessage };
}

export function createEchoServer(options: EchoServerOptions = {}): EchoServer {
  const { settings, onMessage } = splitOptions(options);
  const core = new EchoCore(settings, onMessage);
  // Metrics read the core's totals at scrape time: nothing per message.
  const metrics: MetricsSource | undefined = settings.metrics ? createMetrics({ stats: () => core.snapshot() }) : undefined;
  const startedAt = Date.now();
  const addresses: ServerAddresses = {};
  const servers: { name: string; server: net.Server }[] = [];
  let state: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  let listening: Promise<ServerAddresses> | undefined;
  let closing: Promise<{ clean: boolean }> | undefined;

  const networkListeners = settings.wsPort !== null || settings.tcpPort !== null || settings.rawPort !== null;
  if (networkListeners && !settings.insecure) {
    throw new ConfigError('insecure', 'TLS is not available in this version: plaintext network listeners require insecure: true (CLI: --insecure)');
  }

  const info = (): Record<string, unknown> => {
    const byTransport: Record<string, number> = {};
    for (const [t, s] of Object.entries(core.stats)) if (s.connectionsOpen > 0) byTransport[t] = s.connectionsOpen;
    return {
      instance: settings.instance,
      version: VERSION,
      node: process.version,
      pid: process.pid,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      ready: state === 'listening',
      listeners: addresses,
      connections: { total: core.connections.size, byTransport, max: settings.maxConnections },
      limits: {
        maxFrameBytes: settings.maxFrameBytes,
        maxHeaderBytes: settings.maxHeaderBytes,
        maxQueueBytes: settings.maxQueueBytes,
      },
      nativeMasking,
    };
  };

  const onStream = (transport: TransportName, framing: StreamFraming) =>
    function onStreamConnection(socket: net.Socket): void {
      const peer = transport === 'unix' ? 'unix' : peerOf(socket);
      if (core.draining) {
        core.reject(transport, 'shutdown', peer, 'server is draining');
        return refuseStream(socket, framing, CloseCode.GOING_AWAY, 'server is shutting down');
      }
      if (core.full) {
        core.reject(transport, 'limit', peer, 'connection limit reached');
        return refuseStream(socket, framing, CloseCode.TRY_AGAIN_LATER, 'connection limit reached');
      }
      if (transport !== 'unix') socket.setNoDelay(true);
      core.add(socket, transport, peer, makeStreamProtocol(framing));
    };

  const listenOne = (name: string, server: net.Server, arg: { port: number; host: string } | { path: string }): Promise<void> =>
    new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const what = 'path' in arg ? arg.path : `${arg.host}:${arg.port}`;
        reject(new EchoError(ErrorCode.STATE, `${name} listener on ${what}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen(arg, () => {
        server.removeListener('error', onError);
        servers.push({ name, server });
        resolve();
      });
    });

  const bound = (server: net.Server): { host: string; port: number } => {
    const a = server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  };

  async function startUnix(path: string): Promise<void> {
    if (existsSync(path)) {
      // A socket file left by a process that died: replace it; a live one is an error.
      const live = await new Promise<boolean>((resolve) => {
        const probe = net.connect(path);
        probe.once('connect', () => {
          probe.destroy();
          resolve(true);
        });
        probe.once('error', () => resolve(false));
      });
      if (live) throw new EchoError(ErrorCode.STATE, `unix listener on ${path}: another server is listening there`);
      unlinkSync(path);
    }
    const server = net.createServer(onStream('unix', 'v1'));
    await listenOne('unix', server, { path });
    chmodSync(path, 0o660); // same user and group only
    addresses.unix = { path };
  }

  async function start(): Promise<ServerAddresses> {
    try {
      if (settings.wsPort !== null) {
        const server = http.createServer({
          // Slowloris: the request head must arrive within the handshake timeout.
          headersTimeout: settings.handshakeTimeoutMs,
          requestTimeout: Math.max(settings.handshakeTimeoutMs, 1000),
          connectionsCheckingInterval: Math.min(1000, settings.handshakeTimeoutMs),
          maxHeaderSize: 16 * 1024,
          keepAliveTimeout: 5000,
        });
        const onWsListener = settings.adminPort === null ? metrics : undefined;
        server.on('request', createRequestHandler({ ready: () => state === 'listening', info, metrics: onWsListener, wsPaths: settings.wsPaths }));
        server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
          handleUpgrade(core, { paths: settings.wsPaths, exclusive: true }, req, socket, head);
        });
        server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
          if (socket.writable) socket.end(err.code === 'HPE_HEADER_OVERFLOW' ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
          else socket.destroy();
        });
        await listenOne('ws', server, { port: settings.wsPort, host: settings.host });
        const a = bound(server);
        const urlHost = a.host.includes(':') ? `[${a.host}]` : a.host;
        addresses.ws = { ...a, url: `ws://${urlHost}:${a.port}${settings.wsPaths[0] ?? '/'}` };
      }
      if (settings.tcpPort !== null) {
        const server = net.createServer({ keepAlive: true, keepAliveInitialDelay: 60_000 }, onStream('tcp', settings.tcpFraming));
        await listenOne('tcp', server, { port: settings.tcpPort, host: settings.host });
        addresses.tcp = { ...bound(server), framing: settings.tcpFraming };
      }
      if (settings.unixPath !== null) await startUnix(settings.unixPath);
      if (settings.adminPort !== null) {
        const server = http.createServer({ headersTimeout: settings.handshakeTimeoutMs, requestTimeout: Math.max(settings.handshakeTimeoutMs, 1000) });
        server.on('request', createRequestHandler({ ready: () => state === 'listening', info, metrics, wsPaths: [] }));
        await listenOne('admin', server, { port: settings.adminPort, host: settings.host });
        addresses.admin = bound(server);
      }
      if (settings.rawPort !== null) {
        const server = net.createServer({ keepAlive: true, keepAliveInitialDelay: 60_000 }, onStream('raw', 'raw'));
        await listenOne('raw', server, { port: settings.rawPort, host: settings.host });
        addresses.raw = bound(server);
      }
    } catch (err) {
      await stopListeners();
      state = 'closed';
      throw err;
    }
    state = 'listening';
    return addresses;
  }

  async function stopListeners(): Promise<void> {
    await Promise.all(
      servers.map(
        ({ server }) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            if (server instanceof http.Server) server.closeAllConnections();
          }),
      ),
    );
    servers.length = 0;
    if (addresses.unix !== undefined && existsSync(addresses.unix.path)) {
      try {
        unlinkSync(addresses.unix.path);
      } catch {
        // already gone
      }
    }
  }

  async function shutdown(drainMs: number): Promise<{ clean: boolean }> {
    state = 'closing';
    // Stop accepting first; upgraded and stream connections stay open until drained.
    for (const { server } of servers) {
      server.close();
      if (server instanceof http.Server) server.closeIdleConnections();
    }
    const clean = await core.drain(drainMs);
    core.stop();
    await stopListeners();
    metrics?.close();
    state = 'closed';
    return { clean };
  }

  const server: EchoServer = {
    listen() {
      if (state === 'closing' || state === 'closed') return Promise.reject(new EchoError(ErrorCode.STATE, 'server is closed'));
      listening ??= start();
      return listening;
    },
    address: () => addresses,
    close(options = {}) {
      if (closing !== undefined) return closing;
      const drainMs = options.drainMs ?? settings.drainTimeoutMs;
      closing = (listening ?? Promise.resolve(addresses)).then(
        () => shutdown(drainMs),
        () => shutdown(drainMs),
      );
      return closing;
    },
    get connections() {
      return core.connections as ReadonlySet<ConnectionInfo>;
    },
    stats: () => core.snapshot(),
    get ready() {
      return state === 'listening';
    },
    settings,
    connect(clientOptions) {
      if (state === 'closing' || state === 'closed') throw new EchoError(ErrorCode.STATE, 'server is closed');
      const [serverSide, clientSide] = duplexPair();
      if (core.full) {
        core.reject('inproc', 'limit', 'inproc', 'connection limit reached');
        refuseStream(serverSide, 'v1', CloseCode.TRY_AGAIN_LATER, 'connection limit reached');
      } else {
        core.add(serverSide, 'inproc', 'inproc', makeStreamProtocol('v1'));
      }
      return new V1Client(clientSide, clientOptions);
    },
    info,
  };
  return server;
}
