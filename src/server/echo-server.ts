/**
 * `createEchoServer()`: the listeners (WebSocket + HTTP routes, TCP, Unix, raw), one echo core,
 * and an explicit, idempotent lifecycle: `listen()`, `address()`, `close({ drainMs })`.
 * Drain order: not ready → stop accepting → flush echoes → close 1001 → deadline.
 */
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { resolveSettings, type Settings } from '../config/index.js';
import { ConfigError, EchoError, ErrorCode, HttpError } from '../errors.js';
import { clientKeyOf, EchoCore, destroySoon, type MessageHandler } from '../core/core.js';
import type { ConnectionInfo, TransportName, TransportStats } from '../core/types.js';
import { nativeMasking } from '../protocol/mask.js';
import { duplexPair } from '../transports/inproc.js';
import { makeStreamProtocol, refusalBytes } from '../transports/stream.js';
import { pooledBuffers, type Admission } from '../transports/ws.js';
import { V1Client, type V1ClientOptions } from '../client/stream-client.js';
import type { MetricsSource } from './http-routes.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { authHttpError, extractBearer } from '../security/auth.js';
import { peerIdentity, watchTlsFiles, type TlsWatcher } from '../security/tls.js';
import { createSecurity, defaultOriginCheck, loadTls, type SecurityContext } from './security.js';
import { onListenerError, type ListenerContext } from './listeners/context.js';
import { startAdminListener, startWsListener } from './listeners/http.js';
import { startStreamListener } from './listeners/stream.js';
import { startUnixListener } from './listeners/unix.js';
import { watchDescriptors, type DescriptorWatch } from './fd-watch.js';
import { readOpenFileLimit } from './fd-limit.js';
import { createDebugContext } from './debug.js';

export interface EchoServerOptions extends Partial<Settings> {
  /** Message hook (default: echo). See `MessageHandler`. */
  readonly onMessage?: MessageHandler;
  /**
   * What `/metrics` serves, given this server's own metrics (default: those). The CLI's
   * `--workers` passes a view that answers for every worker of the cluster.
   */
  readonly metricsView?: (own: Metrics) => MetricsSource;
  /**
   * A further readiness condition: `/readyz` (and `ready`) is true only while this also returns
   * true. The CLI's `--workers` passes "every worker is listening", which the primary knows.
   */
  readonly readyGate?: () => boolean;
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
  /** The client end of a new in-process connection (what `connect()` from 'echoserver/client' takes). */
  connectStream(): Duplex;
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
  readyGate: () => boolean;
} {
  const { onMessage, metricsView, readyGate, ...rest } = options;
  if (onMessage !== undefined && typeof onMessage !== 'function') throw new ConfigError('onMessage', 'must be a function');
  if (metricsView !== undefined && typeof metricsView !== 'function') throw new ConfigError('metricsView', 'must be a function');
  if (readyGate !== undefined && typeof readyGate !== 'function') throw new ConfigError('readyGate', 'must be a function');
  return { settings: resolveSettings(rest), onMessage, metricsView, readyGate: readyGate ?? (() => true) };
}

/** Our HTTP listeners (plain or TLS: https.Server is not an http.Server subclass). */
function isHttp(server: net.Server): server is http.Server | https.Server {
  return server instanceof http.Server || server instanceof https.Server;
}

export function createEchoServer(options: EchoServerOptions = {}): EchoServer {
  const { settings, onMessage, metricsView, readyGate } = splitOptions(options);
  const core = new EchoCore(settings, onMessage);
  // Metrics read the core's totals at scrape time: nothing per message.
  let fdWatch: DescriptorWatch | undefined;
  const own = settings.metrics ? createMetrics({ stats: () => core.snapshot(), core: () => coreGauges(core, fdWatch) }) : undefined;
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
  const debug = createDebugContext(settings, () => security);
  core.describe = (conn) => debug.describeConnection(conn, core.whoamiContext.get(conn));

  /** Open connections per authenticated identity (at most 100 identities listed, largest first). */
  const identityCounts = (): Record<string, number> => {
    const counts = new Map<string, number>();
    for (const c of core.connections) if (c.identity !== undefined) counts.set(c.identity, (counts.get(c.identity) ?? 0) + 1);
    return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, 100));
  };

  const isReady = (): boolean => state === 'listening' && readyGate();

  /**
   * `/info`. The public view says what a client may know (instance, version, readiness,
   * totals, limits); the detailed view (identities, pid, Node version, listener layout, socket
   * path) only goes to the admin port or to a request with valid credentials.
   */
  const info = (detailed = true): Record<string, unknown> => {
    const byTransport: Record<string, number> = {};
    for (const [t, s] of Object.entries(core.stats)) if (s.connectionsOpen > 0) byTransport[t] = s.connectionsOpen;
    const connections: Record<string, unknown> = { total: core.connections.size, byTransport, max: settings.maxConnections };
    if (detailed) connections['byIdentity'] = identityCounts();
    return {
      instance: settings.instance,
      worker: settings.workerId ?? undefined,
      version: VERSION,
      ...(detailed && { node: process.version, pid: process.pid }),
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      ready: isReady(),
      ...(detailed && { listeners: addresses }),
      connections,
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
      ...(detailed && { nativeMasking, pooledBuffers: pooledBuffers() }),
    };
  };

  /** Origin, then credentials (bearer header or query parameter), before the 101. */
  const admit = (req: http.IncomingMessage): Promise<Admission> | Admission => {
    const sec = security as SecurityContext;
    const certIdentity = req.socket instanceof tls.TLSSocket ? peerIdentity(req.socket) : undefined;
    if (sec.origin !== undefined) {
      const origin = req.headers.origin;
      if (!sec.origin(origin)) throw new HttpError(ErrorCode.POLICY, 403, 'origin not allowed');
    }
    const auth = sec.auth;
    if (auth === undefined) return certIdentity;
    return auth.authenticate(extractBearer(req.headers.authorization, req.url, sec.authQueryParam)).then((r) => {
      if (!r.ok) throw authHttpError(r.detail);
      // JWT claims ride along for the whoami view of echo.v1 hello replies; the connection is
      // closed when its token expires (validUntil: JWT exp + tolerance).
      return { identity: r.anonymous ? certIdentity : r.identity, claims: r.claims, validUntil: r.validUntil };
    });
  };

  /**
   * Whether a request on the public port may see the detailed `/info`: only with credentials
   * (a verified client certificate, or a valid token when authentication is on).
   */
  const authorized = async (req: http.IncomingMessage): Promise<boolean> => {
    if (req.socket instanceof tls.TLSSocket && peerIdentity(req.socket) !== undefined) return true;
    const auth = security?.auth;
    if (auth === undefined) return false;
    const r = await auth.authenticate(extractBearer(req.headers.authorization, req.url, (security as SecurityContext).authQueryParam));
    return r.ok && !r.anonymous;
  };

  /**
   * Re-reads the certificate files. A generated self-signed certificate is kept as it is:
   * generating a new one would break every client that pinned its fingerprint.
   */
  async function reloadTls(): Promise<void> {
    if (security?.tls === undefined || security.tls.selfSigned) return;
    const material = await loadTls(settings);
    for (const server of tlsServers) server.setSecureContext(material.secureContextOptions);
    security.tls = material;
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
      const ctx: ListenerContext = { core, settings, security, tlsServers, servers };
      const ready = isReady;
      const adminPort = settings.adminPort;
      if (settings.wsPort !== null) {
        const sec = security;
        const needsAdmission = sec.auth !== undefined || sec.origin !== undefined || settings.tlsClientAuth !== 'none';
        const a = await startWsListener(
          ctx,
          {
            ready,
            // With an admin port, /info and /metrics live there only.
            info: adminPort === null ? info : undefined,
            infoDetail: authorized,
            metrics: adminPort === null ? metrics : undefined,
            wsPaths: settings.wsPaths,
            debug,
            console: settings.console,
          },
          { paths: settings.wsPaths, exclusive: true, admit: needsAdmission ? admit : undefined },
        );
        const urlHost = a.host === '0.0.0.0' || a.host === '::' ? 'localhost' : a.host.includes(':') ? `[${a.host}]` : a.host;
        addresses.ws = {
          host: a.host,
          port: a.port,
          url: `${sec.tls === undefined ? 'ws' : 'wss'}://${urlHost}:${a.port}${settings.wsPaths[0] ?? '/'}`,
        };
        sec.origin ??= defaultOriginCheck(settings, a.port, sec.tls !== undefined);
      }
      if (settings.tcpPort !== null)
        addresses.tcp = { ...(await startStreamListener(ctx, 'tcp', settings.tcpFraming, settings.tcpPort)), framing: settings.tcpFraming };
      if (settings.unixPath !== null) {
        await startUnixListener(ctx, settings.unixPath);
        addresses.unix = { path: settings.unixPath };
      }
      if (adminPort !== null)
        addresses.admin = await startAdminListener(ctx, { ready, info, infoDetail: () => true, metrics, wsPaths: [] }, adminPort);
      if (settings.rawPort !== null) addresses.raw = await startStreamListener(ctx, 'raw', 'raw', settings.rawPort);
    } catch (err) {
      tlsWatcher?.close();
      await stopListeners();
      metrics?.close();
      state = 'closed';
      throw err;
    }
    // close() during listen(): stay not-ready, the shutdown runs next.
    fdWatch = watchDescriptors(readOpenFileLimit(), () => core.connections.size);
    if (state === 'new') state = 'listening';
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
    fdWatch?.stop();
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
      state = state === 'closed' ? 'closed' : 'closing'; // not ready from this moment
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
      return isReady();
    },
    settings,
    connect(clientOptions) {
      return new V1Client(server.connectStream(), clientOptions);
    },
    connectStream() {
      if (state === 'closing' || state === 'closed') throw new EchoError(ErrorCode.STATE, 'server is closed');
      const [serverSide, clientSide] = duplexPair();
      const admitted = core.admit('inproc', 'inproc', clientKeyOf('inproc', undefined, undefined));
      if ('reason' in admitted) destroySoon(serverSide, refusalBytes('v1', admitted.code, admitted.message));
      else core.accept(serverSide, 'inproc', 'inproc', makeStreamProtocol('v1'), admitted);
      return clientSide;
    },
    info: () => info(true),
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

/** Gauges the core keeps (read at scrape time). */
function coreGauges(
  core: EchoCore,
  fds: DescriptorWatch | undefined,
): { partialFrameBytes: number; budgetPaused: number; budgetBytes: number; descriptorExhaustions: number } {
  return {
    partialFrameBytes: core.heldBytes,
    budgetPaused: core.budgetPaused.size,
    budgetBytes: core.settings.maxBufferedBytes,
    descriptorExhaustions: fds?.exhaustions ?? 0,
  };
}
