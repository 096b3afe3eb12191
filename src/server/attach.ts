/**
 * `attach(httpServer, { path })`: an echo WebSocket endpoint on an application's own
 * `http`/`https` server. It adds one `upgrade` listener and never closes the host's server;
 * `detach.close()` drains our connections and removes the listener.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { resolveSettings, type Settings } from '../config/index.js';
import { ConfigError } from '../errors.js';
import { EchoCore, type MessageHandler } from '../core/core.js';
import type { ConnectionInfo, TransportName, TransportStats } from '../core/types.js';
import { handleUpgrade } from '../transports/ws.js';
import { httpErrorResponse } from '../protocol/ws-handshake.js';

export interface AttachOptions extends Partial<
  Pick<
    Settings,
    | 'instance'
    | 'maxConnections'
    | 'maxFrameBytes'
    | 'maxHeaderBytes'
    | 'maxQueueBytes'
    | 'stallTimeoutMs'
    | 'idleTimeoutMs'
    | 'keepaliveIntervalMs'
    | 'handshakeTimeoutMs'
    | 'drainTimeoutMs'
    | 'maxDelayMs'
    | 'faultInjection'
  >
> {
  /** Endpoint path(s). @default '/ws' */
  readonly path?: string | readonly string[];
  readonly onMessage?: MessageHandler;
}

export interface AttachedEcho {
  readonly connections: ReadonlySet<ConnectionInfo>;
  stats(): Readonly<Record<TransportName, TransportStats>>;
  /** Drains our connections (close 1001) and removes our listener; the host server stays up. */
  close(options?: { drainMs?: number }): Promise<{ clean: boolean }>;
}

export function attach(httpServer: HttpServer | HttpsServer, options: AttachOptions = {}): AttachedEcho {
  const { path = '/ws', onMessage, ...rest } = options;
  const paths = typeof path === 'string' ? [path] : [...path];
  for (const p of paths)
    if (typeof p !== 'string' || !p.startsWith('/')) throw new ConfigError('path', `must start with '/', got '${String(p)}'`);
  // Only listener settings apply: no ports are opened here.
  const settings = resolveSettings({ ...rest, wsPort: null, tcpPort: null, unixPath: null, rawPort: null });
  const core = new EchoCore(settings, onMessage);
  let closing: Promise<{ clean: boolean }> | undefined;

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (handleUpgrade(core, { paths, exclusive: false }, req, socket, head)) return;
    // Not our path: if nobody else listens for upgrades, answer rather than leave it hanging.
    if (httpServer.listenerCount('upgrade') === 1) socket.end(httpErrorResponse(404, 'no WebSocket endpoint here'));
  }
  httpServer.on('upgrade', onUpgrade);

  return {
    get connections() {
      return core.connections as ReadonlySet<ConnectionInfo>;
    },
    stats: () => core.snapshot(),
    close(opts = {}) {
      closing ??= (async () => {
        httpServer.removeListener('upgrade', onUpgrade);
        const clean = await core.drain(opts.drainMs ?? settings.drainTimeoutMs);
        core.stop();
        return { clean };
      })();
      return closing;
    },
  };
}
