/**
 * `createEchoServer()`: the listeners (WebSocket + HTTP routes, TCP, Unix, raw), one echo core,
 * and an explicit, idempotent lifecycle: `listen()`, `address()`, `close({ drainMs })`.
 * Drain order: not ready → stop accepting → flush echoes → close 1001 → deadline.
 */
import { chmodSync, existsSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { resolveSettings, type Settings } from '../config/index.js';
import { ConfigError, CloseCode, EchoError, ErrorCode, HttpError } from '../errors.js';
import { EchoCore, type MessageHandler } from '../core/core.js';
import type { ConnectionInfo, TransportName, TransportStats } from '../core/types.js';
import { nativeMasking } from '../protocol/mask.js';
import { duplexPair } from '../transports/inproc.js';
import { makeStreamProtocol, refuseStream, type StreamFraming } from '../transports/stream.js';
import { handleUpgrade, peerOf } from '../transports/ws.js';
import { V1Client, type V1ClientOptions } from '../client/stream-client.js';
import { createRequestHandler, type MetricsSource } from './http-routes.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { channels } from '../core/events.js';
import { keyFor } from '../core/core.js';
import { authHttpError, extractBearer } from '../security/auth.js';
import { peerIdentity, watchTlsFiles, type TlsWatcher } from '../security/tls.js';
import { createSecurity, defaultOriginCheck, loadTls, type SecurityContext } from './security.js';

export interface EchoServerOptions extends Partial<Settings> {
  /** Message hook (default: echo). See `MessageHandler`. */
  readonly onMessage?: MessageHandler;
  /**
   * What `/metrics` serves, given this server's own metrics (default: those). The CLI's
   * `--workers` passes a view that answers for every worker of the cluster.
   */
  readonly metricsView?: (own: Metrics) => MetricsSource;
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
  /** The certificate in use (after `listen()`), undefined with `insecure`. */
  readonly tls:
    { fingerprint256: string; selfSigned: boolean; subject: string; notAfter: Date; certificatePem: string | undefined } | undefined;
  /** Warnings about weak but working configuration (after `listen()`); the CLI logs them. */
  readonly warnings: readonly string[];
  /**
   * Re-reads the certificate files and swaps them in for new connections; open connections
   * keep going. Done automatically when the files change; the CLI also calls it on SIGHUP.
   * On error the old certificate stays and the promise rejects.
   */
  reloadTls(): Promise<void>;
}

export const VERSION: string = (() => {
  // dist/server/ when installed, build/src/server/ under the tests: walk up to our package.json.
  let dir = new URL('.', import.meta.url);
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'echoserver' && pkg.version !== undefined) return pkg.version;
    } catch {
      // not here: keep walking up
    }
    dir = new URL('..', dir);
  }
  return '0.0.0';
})();

/** Splits library-only options from settings and validates the settings. */
function splitOptions(options: EchoServerOptions): {
  settings: Readonly<Settings>;
  onMessage: MessageHandler | undefined;
  metricsView: EchoServerOptions['metricsView'];
} {
  const { onMessage, metricsView, ...rest } = options;
  if (onMessage !== undefined && typeof onMessage !== 'function') throw new ConfigError('onMessage', 'must be a function');
  if (metricsView !== undefined && typeof metricsView !== 'function') throw new ConfigError('metricsView', 'must be a function');
  return { settings: resolveSettings(rest), onMessage, metricsView };
}

/** Our HTTP listeners (plain or TLS: https.Server is not an http.Server subclass). */
function isHttp(server: net.Server): server is http.Server | https.Server {
  return server instanceof http.Server || server instanceof https.Server;
}

/**
 * A TLS handshake that fails or times out (handshakeTimeout) only emits `tlsClientError` on
 * Node 20; the socket would stay open: destroy it (slowloris on the TLS layer).
 */
function onTlsClientError(this: tls.Server, _err: Error, socket: tls.TLSSocket): void {
  socket.destroy();
}

export function createEchoServer(options: EchoServerOptions = {}): EchoServer {
  const { settings, onMessage, metricsView } = splitOptions(options);
  const core = new EchoCore(settings, onMessage);
  // Metrics read the core's totals at scrape time: nothing per message.
  const own = settings.metrics ? createMetrics({ stats: () => core.snapshot() }) : undefined;
  const metrics: MetricsSource | undefined = own === undefined || metricsView === undefined ? own : metricsView(own);
  const startedAt = Date.now();
  const addresses: ServerAddresses = {};
  const servers: { name: string; server: net.Server }[] = [];
  let state: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  let listening: Promise<ServerAddresses> | undefined;
  let closing: Promise<{ clean: boolean }> | undefined;

  let security: SecurityContext | undefined;
  let tlsWatcher: TlsWatcher | undefined;
  const tlsServers: tls.Server[] = [];

  /** Open connections per authenticated identity (at most 100 identities listed, largest first). */
  const identityCounts = (): Record<string, number> => {
    const counts = new Map<string, number>();
    for (const c of core.connections) if (c.identity !== undefined) counts.set(c.identity, (counts.get(c.identity) ?? 0) + 1);
    return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, 100));
  };

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
      connections: { total: core.connections.size, byTransport, byIdentity: identityCounts(), max: settings.maxConnections },
      security: {
        tls: security?.tls !== undefined,
        certificateSha256: security?.tls?.fingerprint256,
        clientAuth: settings.tlsClientAuth,
        auth: settings.auth,
        replayProtection: settings.replayWindowMs !== null,
      },
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
      const identity = socket instanceof tls.TLSSocket ? peerIdentity(socket) : undefined;
      const key = keyFor(identity, socket.remoteAddress);
      if (core.draining) {
        core.reject(transport, 'shutdown', peer, 'server is draining');
        return refuseStream(socket, framing, CloseCode.GOING_AWAY, 'server is shutting down');
      }
      if (core.full) {
        core.reject(transport, 'limit', peer, 'connection limit reached');
        return refuseStream(socket, framing, CloseCode.TRY_AGAIN_LATER, 'connection limit reached');
      }
      const lease = core.openLease(key);
      if (lease === null) {
        core.reject(transport, 'limit', peer, 'per-client connection limit');
        return refuseStream(socket, framing, CloseCode.TRY_AGAIN_LATER, 'too many connections from this client');
      }
      if (transport !== 'unix') socket.setNoDelay(true);
      // With authentication on, framing v1 starts with a hello carrying the credential.
      core.add(socket, transport, peer, makeStreamProtocol(framing, core.auth !== undefined), identity, key, lease);
    };

  /** A plaintext or TLS stream server, by the `insecure` setting. */
  const streamServer = (listener: (socket: net.Socket) => void): net.Server => {
    const opts = { keepAlive: true, keepAliveInitialDelay: 60_000 };
    if (security?.tls === undefined) return net.createServer(opts, listener);
    const server = tls.createServer(
      { ...security.tls.serverOptions, ALPNProtocols: undefined, handshakeTimeout: settings.handshakeTimeoutMs, ...opts },
      listener,
    );
    server.on('tlsClientError', onTlsClientError);
    tlsServers.push(server);
    return server;
  };

  const httpServer = (options: http.ServerOptions): http.Server => {
    if (security?.tls === undefined) return http.createServer(options);
    const server = https.createServer({ ...security.tls.serverOptions, handshakeTimeout: settings.handshakeTimeoutMs, ...options });
    server.on('tlsClientError', onTlsClientError);
    tlsServers.push(server);
    return server;
  };

  /** Origin, then credentials (bearer header or query parameter), before the 101. */
  const admit = (req: http.IncomingMessage): Promise<string | undefined> | string | undefined => {
    const sec = security as SecurityContext;
    const certIdentity = req.socket instanceof tls.TLSSocket ? peerIdentity(req.socket) : undefined;
    if (sec.origin !== undefined) {
      const origin = req.headers.origin;
      if (!sec.origin(origin)) throw new HttpError(ErrorCode.POLICY, 403, 'origin not allowed');
    }
    const auth = sec.auth;
    if (auth === undefined) return certIdentity;
    return auth.authenticate(extractBearer(req.headers.authorization, req.url, sec.authQueryParam)).then((r) => {
      if (!r.ok) throw authHttpError();
      return r.anonymous ? certIdentity : r.identity;
    });
  };

  async function reloadTls(): Promise<void> {
    if (security?.tls === undefined) return;
    const material = await loadTls(settings);
    for (const server of tlsServers) server.setSecureContext(material.secureContextOptions);
    security.tls = material;
  }

  const listenOne = (name: string, server: net.Server, arg: { port: number; host: string } | { path: string }): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const what = 'path' in arg ? arg.path : `${arg.host}:${arg.port}`;
        reject(
          new EchoError(
            ErrorCode.STATE,
            `${name} listener on ${what}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`,
            { cause: err },
          ),
        );
      };
      server.once('error', onError);
      server.listen(arg, () => {
        server.removeListener('error', onError);
        // After start, errors such as EMFILE on accept are reported, not fatal: the listener
        // keeps accepting once descriptors free up.
        server.on('error', onListenerError);
        servers.push({ name, server });
        resolve();
      });
    });

  function onListenerError(err: Error): void {
    if (channels.error.hasSubscribers) channels.error.publish({ connection: undefined, error: err });
  }

  const bound = (server: net.Server): { host: string; port: number } => {
    const a = server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  };

  async function startUnix(path: string): Promise<void> {
    if (existsSync(path)) {
      // Only ever replace a socket: a mistyped path must not delete a user's file.
      if (!lstatSync(path).isSocket())
        throw new EchoError(ErrorCode.STATE, `unix listener on ${path}: the path exists and is not a socket`);
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
      security = await createSecurity(settings);
      core.auth = security.auth;
      core.replay = security.replay;
      core.connectionRate = security.connectionRate;
      core.clients = security.clients;
      if (security.tls !== undefined && (settings.tlsCert !== null || settings.tlsCa !== null)) {
        const files = [settings.tlsCert, settings.tlsKey, settings.tlsCa].filter((f): f is string => f !== null);
        tlsWatcher = watchTlsFiles(files, () => {
          reloadTls().catch((err: unknown) => onListenerError(err instanceof Error ? err : new Error(String(err))));
        });
      }
      if (settings.wsPort !== null) {
        const server = httpServer({
          // Slowloris: the request head must arrive within the handshake timeout.
          headersTimeout: settings.handshakeTimeoutMs,
          requestTimeout: Math.max(settings.handshakeTimeoutMs, 1000),
          connectionsCheckingInterval: Math.min(1000, settings.handshakeTimeoutMs),
          maxHeaderSize: 16 * 1024,
          keepAliveTimeout: 5000,
        });
        const onWsListener = settings.adminPort === null ? metrics : undefined;
        server.on(
          'request',
          createRequestHandler({ ready: () => state === 'listening', info, metrics: onWsListener, wsPaths: settings.wsPaths }),
        );
        const needsAdmission = security.auth !== undefined || security.origin !== undefined || settings.tlsClientAuth !== 'none';
        const upgradeOptions = { paths: settings.wsPaths, exclusive: true, admit: needsAdmission ? admit : undefined };
        server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
          handleUpgrade(core, upgradeOptions, req, socket, head);
        });
        server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
          if (socket.writable)
            socket.end(
              err.code === 'HPE_HEADER_OVERFLOW'
                ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n'
                : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
            );
          else socket.destroy();
        });
        await listenOne('ws', server, { port: settings.wsPort, host: settings.host });
        const a = bound(server);
        const urlHost = a.host === '0.0.0.0' || a.host === '::' ? 'localhost' : a.host.includes(':') ? `[${a.host}]` : a.host;
        addresses.ws = { ...a, url: `${security.tls === undefined ? 'ws' : 'wss'}://${urlHost}:${a.port}${settings.wsPaths[0] ?? '/'}` };
        security.origin ??= defaultOriginCheck(settings, a.port, security.tls !== undefined);
      }
      if (settings.tcpPort !== null) {
        const server = streamServer(onStream('tcp', settings.tcpFraming));
        await listenOne('tcp', server, { port: settings.tcpPort, host: settings.host });
        addresses.tcp = { ...bound(server), framing: settings.tcpFraming };
      }
      if (settings.unixPath !== null) await startUnix(settings.unixPath);
      if (settings.adminPort !== null) {
        const server = httpServer({
          headersTimeout: settings.handshakeTimeoutMs,
          requestTimeout: Math.max(settings.handshakeTimeoutMs, 1000),
        });
        server.on('request', createRequestHandler({ ready: () => state === 'listening', info, metrics, wsPaths: [] }));
        await listenOne('admin', server, { port: settings.adminPort, host: settings.host });
        addresses.admin = bound(server);
      }
      if (settings.rawPort !== null) {
        const server = streamServer(onStream('raw', 'raw'));
        await listenOne('raw', server, { port: settings.rawPort, host: settings.host });
        addresses.raw = bound(server);
      }
    } catch (err) {
      tlsWatcher?.close();
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
            if (isHttp(server)) server.closeAllConnections();
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
    if (state === 'closed') return { clean: true };
    state = 'closing';
    // Stop accepting stream connections; the HTTP listeners stay up while draining so probes
    // see /readyz 503 (and new upgrades get 503), then close with everything else.
    for (const { server } of servers) {
      if (!isHttp(server)) server.close();
    }
    const clean = await core.drain(drainMs);
    core.stop();
    tlsWatcher?.close();
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
      if (state === 'listening') state = 'closing'; // not ready from this moment
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
    get tls() {
      const t = security?.tls;
      if (t === undefined) return undefined;
      return {
        fingerprint256: t.fingerprint256,
        selfSigned: t.selfSigned,
        subject: t.subject,
        notAfter: t.notAfter,
        certificatePem: t.generatedCertPem,
      };
    },
    get warnings() {
      return [...(security?.warnings ?? []), ...(security?.tls?.warnings ?? [])];
    },
    reloadTls,
  };
  return server;
}
