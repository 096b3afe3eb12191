/**
 * Bench links over WebSocket, with the `ws` package as the client (binary messages, no
 * compression) on a socket opened by connect.ts. Each send() corks the socket so the frames of
 * one batch leave in one write.
 */
import type net from 'node:net';
import WebSocket from 'ws';
import { LinkError } from './connect.js';
import type { Link, LinkHandler } from './link.js';
import type { Target } from './target.js';

export class WsLink implements Link {
  private closing = false;
  private ended = false;

  private constructor(
    private readonly ws: WebSocket,
    private readonly socket: net.Socket,
    private readonly size: number,
    private readonly handler: LinkHandler,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.closing) return;
      if (isBinary) handler.onEcho(data, 0, data.length);
      else handler.onUnexpected('a text message');
      handler.afterRead();
    });
    ws.on('error', (err: Error) => this.end('socket', err.message));
    ws.on('close', (code: number, reason: Buffer) =>
      this.end('closed', `the server closed the connection with ${code}${reason.length > 0 ? ` (${reason.toString()})` : ''}`),
    );
  }

  /** Upgrades the connected `socket`; rejects with LinkError ('auth' on HTTP 401/403). */
  static open(
    target: Target,
    socket: net.Socket,
    size: number,
    token: string | undefined,
    timeoutMs: number,
    handler: LinkHandler,
  ): Promise<WsLink> {
    const url = `${target.tls ? 'wss' : 'ws'}://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}${target.path}`;
    const ws = new WebSocket(url, {
      createConnection: () => socket,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      maxPayload: size + 1024,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    return new Promise((resolve, reject) => {
      const fail = (err: LinkError): void => {
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        socket.destroy();
        reject(err);
      };
      ws.once('open', () => {
        ws.removeAllListeners();
        resolve(new WsLink(ws, socket, size, handler));
      });
      ws.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        fail(
          new LinkError(
            status === 401 || status === 403 ? 'auth' : 'connect',
            `upgrade refused: HTTP ${status} ${res.statusMessage ?? ''}`.trim(),
          ),
        );
      });
      ws.once('error', (err: Error) => fail(new LinkError('connect', err.message)));
    });
  }

  send(n: number): void {
    this.socket.cork();
    for (let i = 0; i < n; i++) {
      const payload = Buffer.allocUnsafe(this.size);
      this.handler.fill(payload, 0);
      this.ws.send(payload, { binary: true });
    }
    this.socket.uncork();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.ws.close(1000);
    // A server that does not answer the close must not keep the bench alive.
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private end(kind: 'closed' | 'socket', message: string): void {
    if (this.ended || this.closing) return;
    this.ended = true;
    this.handler.onEnd(kind, message);
  }
}
