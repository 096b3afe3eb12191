/**
 * What every listener module is given by `createEchoServer`: the core, the settings, the
 * security context, and the server-wide registries (TLS servers for certificate reloads,
 * bound servers for the drain). A listener module only builds and binds its server.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Settings } from '../../config/index.js';
import { EchoError, ErrorCode } from '../../errors.js';
import { channels } from '../../core/events.js';
import type { EchoCore } from '../../core/core.js';
import { refuseRenegotiation } from '../../security/tls.js';
import type { SecurityContext } from '../security.js';

export interface ListenerContext {
  readonly core: EchoCore;
  readonly settings: Readonly<Settings>;
  readonly security: SecurityContext;
  /** TLS servers, whose certificate `reloadTls()` swaps. */
  readonly tlsServers: tls.Server[];
  /** Bound servers, closed by the drain. */
  readonly servers: { name: string; server: net.Server }[];
}

/**
 * A TLS handshake that fails or times out (handshakeTimeout) only emits `tlsClientError` on
 * Node 20; the socket would stay open: destroy it (slowloris on the TLS layer).
 */
function onTlsClientError(this: tls.Server, _err: Error, socket: tls.TLSSocket): void {
  socket.destroy();
}

/** A plaintext or TLS stream server (TCP keepalive on: it finds dead peers of framings without ping). */
export function streamServer(ctx: ListenerContext, listener: (socket: net.Socket) => void): net.Server {
  const opts = { keepAlive: true, keepAliveInitialDelay: 60_000 };
  const material = ctx.security.tls;
  if (material === undefined) return net.createServer(opts, listener);
  const server = tls.createServer(
    { ...material.serverOptions, ALPNProtocols: undefined, handshakeTimeout: ctx.settings.handshakeTimeoutMs, ...opts },
    listener,
  );
  server.on('tlsClientError', onTlsClientError);
  refuseRenegotiation(server);
  ctx.tlsServers.push(server);
  return server;
}

/** A plaintext or TLS HTTP server with the slowloris bounds of the handshake timeout. */
export function httpServer(ctx: ListenerContext, options: http.ServerOptions = {}): http.Server {
  const t = ctx.settings.handshakeTimeoutMs;
  const bounded: http.ServerOptions = {
    // Slowloris: the request head must arrive within the handshake timeout.
    headersTimeout: t,
    requestTimeout: Math.max(t, 1000),
    connectionsCheckingInterval: Math.min(1000, t),
    maxHeaderSize: 16 * 1024,
    keepAliveTimeout: 5000,
    ...options,
  };
  const material = ctx.security.tls;
  if (material === undefined) {
    const server = http.createServer(bounded);
    // A plaintext peer that connects and never sends a byte is not covered by headersTimeout
    // (no request has started): an idle socket is destroyed after the handshake timeout, as
    // the TLS handshake timeout does on https. Upgraded sockets clear it (setTimeout(0)).
    server.setTimeout(t);
    return server;
  }
  const server = https.createServer({ ...material.serverOptions, handshakeTimeout: t, ...bounded });
  server.on('tlsClientError', onTlsClientError);
  refuseRenegotiation(server);
  ctx.tlsServers.push(server);
  return server;
}

/** Errors after start (EMFILE on accept, ...) are reported, not fatal: accepting resumes once descriptors free up. */
export function onListenerError(err: Error): void {
  if (channels.error.hasSubscribers) channels.error.publish({ connection: undefined, error: err });
}

/** Binds one server; the error names the listener and the address. */
export function listenOne(
  ctx: ListenerContext,
  name: string,
  server: net.Server,
  arg: { port: number; host: string } | { path: string },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const what = 'path' in arg ? arg.path : `${arg.host}:${arg.port}`;
      reject(
        new EchoError(
          ErrorCode.STATE,
          `${name} listener on ${what}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`,
          {
            cause: err,
          },
        ),
      );
    };
    server.once('error', onError);
    server.listen(arg, () => {
      server.removeListener('error', onError);
      server.on('error', onListenerError);
      ctx.servers.push({ name, server });
      resolve();
    });
  });
}

export function boundAddress(server: net.Server): { host: string; port: number } {
  const a = server.address() as net.AddressInfo;
  return { host: a.address, port: a.port };
}
