/**
 * Framing v1 over a Node Duplex (TCP, TLS, Unix socket, the in-process pair): the link splits
 * the stream into bodies and runs the close handshake (docs/PROTOCOL.md §1.9) itself.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { ConnectionClosedError, EchoError, ErrorCode } from '../errors.js';
import type { Link, LinkHandlers } from './client.js';
import { decodeBody, decodeClosePayload, encodeBody, encodeClosePayload, frame, FrameSplitter, Op } from './v1-body.js';

export interface StreamLinkLimits {
  readonly maxFrameBytes: number;
  readonly maxHeaderBytes: number;
}

/** Wraps an open Duplex as a link. */
export function streamLink(stream: Duplex, h: LinkHandlers, limits: StreamLinkLimits): Link {
  const splitter = new FrameSplitter(limits.maxFrameBytes);
  let sentClose = false;
  let info: { code: number; reason: string } | undefined;
  const sendClose = (code: number, reason: string): void => {
    if (sentClose) return;
    sentClose = true;
    if (!stream.writable) return;
    stream.write(frame(encodeBody(Op.CLOSE, code === 1005 ? new Uint8Array(0) : encodeClosePayload(code, reason))));
    stream.end();
    // A peer that never finishes the handshake does not keep the socket.
    const t = setTimeout(() => stream.destroy(), 2000);
    t.unref?.();
    stream.once('close', () => clearTimeout(t));
  };
  stream.on('data', function onStreamData(chunk: Uint8Array) {
    let bodies: Uint8Array[];
    try {
      bodies = splitter.push(chunk);
    } catch (err) {
      const e = err as { closeCode?: number; message: string };
      info ??= { code: e.closeCode ?? 1002, reason: e.message };
      sendClose(info.code, info.reason);
      stream.destroy();
      return;
    }
    for (const body of bodies) {
      if (((body[0] as number) & 0x0f) === Op.CLOSE) {
        try {
          const d = decodeBody(body, limits);
          const peer = decodeClosePayload(d.payload);
          info ??= peer;
          sendClose(peer.code, peer.reason);
        } catch (err) {
          const e = err as { closeCode?: number; message: string };
          info ??= { code: e.closeCode ?? 1002, reason: e.message };
          sendClose(info.code, info.reason);
        }
        stream.end();
        return;
      }
      h.onBody(body);
    }
  });
  stream.on('error', () => {
    // 'close' follows; the error is in the close code (1006).
  });
  stream.once('close', () => {
    const i = info ?? { code: 1006, reason: '' };
    h.onClose(i.code, i.reason);
  });
  return {
    send: (body) => {
      if (stream.writable && !sentClose) stream.write(frame(body as Uint8Array));
    },
    close: (code, reason) => {
      info ??= { code, reason };
      sendClose(code, reason);
      if (!stream.writable) stream.destroy();
    },
  };
}

/** TLS options for `tls://` and `wss://` (Node). */
export interface ClientTlsOptions {
  /** CA certificate(s) to trust, PEM. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array>;
  /**
   * Pinned SHA-256 fingerprint of the server's certificate, as the server logs it
   * (`AB:CD:…`, colons and case optional). With a pin and no `ca`, the chain is not checked:
   * the pin is. With both, both must hold.
   */
  readonly fingerprint256?: string;
  /** Client certificate and key (PEM) for servers that ask for one (mTLS). */
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
  /** Server name for SNI and the hostname check. @default the URL's host */
  readonly servername?: string;
}

/** `AB:CD:…` normalised to 64 upper-case hex digits; throws on anything else. */
export function normalisePin(pin: string): string {
  const hex = pin.replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex))
    throw new EchoError(ErrorCode.CONFIG, 'tls.fingerprint256: must be a SHA-256 fingerprint (64 hex digits, colons optional)');
  return hex;
}

function withAbort<T extends net.Socket>(
  socket: T,
  ready: string,
  signal: AbortSignal,
  what: string,
  check?: (s: T) => Error | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      socket.destroy();
      reject(signal.reason instanceof Error ? signal.reason : new EchoError(ErrorCode.ABORTED, 'connect aborted'));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      signal.removeEventListener('abort', onAbort);
      const code = err.code ?? '';
      let hint = '';
      if (/SELF_SIGNED|UNABLE_TO_VERIFY|CERT_/.test(code))
        hint = ' (trust it with tls.ca, or pin it with tls.fingerprint256: the server logs it at start)';
      reject(new EchoError(ErrorCode.CONNECT, `cannot connect to ${what}: ${err.message}${hint}`, { cause: err }));
    });
    socket.once(ready, () => {
      signal.removeEventListener('abort', onAbort);
      const bad = check?.(socket);
      if (bad !== undefined) {
        socket.destroy();
        return reject(bad);
      }
      resolve(socket);
    });
  });
}

/** Opens a TCP or Unix socket. */
export function dialNet(target: { host: string; port: number } | { path: string }, signal: AbortSignal): Promise<net.Socket> {
  const socket = 'path' in target ? net.connect(target.path) : net.connect({ host: target.host, port: target.port, noDelay: true });
  return withAbort(socket, 'connect', signal, 'path' in target ? target.path : `${target.host}:${target.port}`);
}

/**
 * Opens a TLS connection and checks the pin before any byte is written, so neither a token nor
 * a message reaches a server with the wrong certificate.
 */
export function dialTls(
  target: { host: string; port: number },
  t: ClientTlsOptions,
  signal: AbortSignal,
  alpn?: string[],
): Promise<tls.TLSSocket> {
  const pin = t.fingerprint256 === undefined ? undefined : normalisePin(t.fingerprint256);
  const servername = t.servername ?? (net.isIP(target.host) === 0 ? target.host : undefined);
  const socket = tls.connect({
    host: target.host,
    port: target.port,
    ...(servername !== undefined && { servername }),
    ...(t.ca !== undefined && { ca: t.ca as string | string[] }),
    ...(t.cert !== undefined && { cert: t.cert as string }),
    ...(t.key !== undefined && { key: t.key as string }),
    // A pin without a CA replaces the chain check (the self-signed certificate case).
    rejectUnauthorized: pin === undefined || t.ca !== undefined,
    ...(alpn !== undefined && { ALPNProtocols: alpn }),
  });
  socket.setNoDelay(true);
  return withAbort(socket, 'secureConnect', signal, `${target.host}:${target.port}`, (s) => {
    if (pin === undefined) return undefined;
    const got = s.getPeerCertificate().fingerprint256 ?? '';
    if (got.replace(/:/g, '').toUpperCase() === pin) return undefined;
    return new ConnectionClosedError(
      ErrorCode.TLS_PIN,
      1015,
      'certificate pin mismatch',
      `the server's certificate (SHA-256 ${got}) does not match tls.fingerprint256`,
    );
  });
}
