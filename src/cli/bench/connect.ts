/**
 * Opening one bench socket: TCP, TLS (CA, client certificate, `--insecure`, or a pinned
 * SHA-256 fingerprint) or a Unix socket, within a deadline. WebSocket links get the same
 * connected socket, so a pin is checked before any request (and token) is sent.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { BenchTlsOptions } from './options.js';
import type { Target } from './target.js';

/** A connect failure, with the error kind the bench counts it under. */
export class LinkError extends Error {
  override readonly name = 'LinkError';
  constructor(
    readonly kind: 'connect' | 'auth',
    message: string,
  ) {
    super(message);
  }
}

export function openSocket(target: Target, options: BenchTlsOptions, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    if (target.scheme === 'unix:') socket = net.connect(target.path);
    else if (!target.tls) socket = net.connect(target.port, target.host);
    else {
      socket = tls.connect({
        host: target.host,
        port: target.port,
        servername: net.isIP(target.host) === 0 ? target.host : undefined,
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        // A pinned certificate is checked below, by its fingerprint, instead of by a CA.
        rejectUnauthorized: !options.insecure && options.fingerprint === undefined,
      });
    }
    socket.setNoDelay(true);
    const event = socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect';
    const timer = setTimeout(() => fail(new Error(`not connected within ${timeoutMs} ms`)), timeoutMs);
    function fail(err: Error): void {
      clearTimeout(timer);
      socket.removeListener(event, onConnect);
      socket.destroy();
      reject(new LinkError('connect', err.message));
    }
    function onConnect(): void {
      if (socket instanceof tls.TLSSocket && options.fingerprint !== undefined) {
        const got = socket.getPeerCertificate().fingerprint256;
        if (got !== options.fingerprint) {
          fail(new Error(`certificate fingerprint ${got ?? '(none)'} does not match the pinned ${options.fingerprint}`));
          return;
        }
      }
      clearTimeout(timer);
      socket.removeListener('error', fail);
      resolve(socket);
    }
    socket.once(event, onConnect);
    socket.once('error', fail);
  });
}
