/**
 * HTTP listeners: the WebSocket listener (upgrades on the WebSocket paths, plus the HTTP
 * routes) and the optional admin listener (routes only).
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { handleUpgrade, type WsUpgradeOptions } from '../../transports/ws.js';
import { createRequestHandler, type RoutesContext } from '../http-routes.js';
import { boundAddress, httpServer, listenOne, type ListenerContext } from './context.js';

function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (socket.writable)
    socket.end(
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n'
        : // headersTimeout / requestTimeout (the handshake timeout): 408, as docs/SECURITY.md says.
          err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'
          : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
    );
  else socket.destroy();
}

/** The WebSocket listener: upgrades go to the core's admission, other requests to the routes. */
export async function startWsListener(
  ctx: ListenerContext,
  routes: RoutesContext,
  upgrade: WsUpgradeOptions,
): Promise<{ host: string; port: number; server: http.Server }> {
  const server = httpServer(ctx);
  server.on('request', createRequestHandler(routes));
  server.on('upgrade', function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer) {
    handleUpgrade(ctx.core, upgrade, req, socket, head);
  });
  server.on('clientError', onClientError);
  await listenOne(ctx, 'ws', server, { port: ctx.settings.wsPort as number, host: ctx.settings.host });
  return { ...boundAddress(server), server };
}

/** The admin listener: /healthz, /readyz, /info, /metrics only (no WebSocket paths). */
export async function startAdminListener(
  ctx: ListenerContext,
  routes: RoutesContext,
  port: number,
): Promise<{ host: string; port: number }> {
  const server = httpServer(ctx);
  server.on('request', createRequestHandler(routes));
  server.on('clientError', onClientError);
  await listenOne(ctx, 'admin', server, { port, host: ctx.settings.host });
  return boundAddress(server);
}
