/**
 * TLS-aware helpers for integration tests: a server started with its default (TLS) listeners on
 * 127.0.0.1 port 0, a throwaway CA with server and client certificates (selfsigned, as in
 * test/unit/security-tls.test.ts), TLS / framing-v1 / `wss` clients that resolve on events, and
 * a temporary directory removed after the test. No sleeps: every wait is on an event.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls, { type ConnectionOptions, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import WebSocket from 'ws';
import { createEchoServer, V1Client } from '../src/index.js';
import type { ClientMessage, EchoServer, EchoServerOptions, ServerAddresses } from '../src/index.js';

export interface Pem {
  cert: string;
  key: string;
}

export interface TlsServer {
  server: EchoServer;
  addr: ServerAddresses;
  readonly wsPort: number;
  readonly tcpPort: number;
  /** PEM the clients trust: the generated certificate, or `options.ca` (the CA of file certificates). */
  readonly ca: string | undefined;
  /** `wss://127.0.0.1:<port>` + path. */
  wssUrl(path?: string): string;
  /** Closes the server (short drain); idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a server with TLS on (no `insecure`), ws + tcp on port 0. `ca` is what clients should
 * trust when the server uses certificate files (default: the generated certificate).
 */
export async function startTlsServer(options: EchoServerOptions = {}, ca?: string): Promise<TlsServer> {
  const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, instance: 'test', ...options });
  const addr = await server.listen();
  let closing: Promise<void> | undefined;
  return {
    server,
    addr,
    get wsPort() {
      if (addr.ws === undefined) throw new Error('no ws listener');
      return addr.ws.port;
    },
    get tcpPort() {
      if (addr.tcp === undefined) throw new Error('no tcp listener');
      return addr.tcp.port;
    },
    get ca() {
      return ca ?? server.tls?.certificatePem;
    },
    wssUrl(path = '/') {
      if (addr.ws === undefined) throw new Error('no ws listener');
      return `wss://127.0.0.1:${addr.ws.port}${path}`;
    },
    close() {
      closing ??= server.close({ drainMs: 500 }).then(() => undefined);
      return closing;
    },
  };
}

export async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'echo-sec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Certificates

/** A CA certificate (EC P-256) that can sign server and client certificates. */
export async function makeCa(cn: string): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A server certificate for localhost / 127.0.0.1 / ::1, signed by `ca` (or self-signed). */
export async function makeServerCert(cn: string, ca?: Pem): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ...(ca !== undefined && { ca }),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** A client certificate with subject CN `cn`, signed by `ca`. */
export async function makeClientCert(cn: string, ca: Pem): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

// ---------------------------------------------------------------------------------------------
// Clients

/** Connects over TLS to 127.0.0.1 (SNI localhost); resolves on 'secureConnect', rejects on 'error'. */
export async function connectTls(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  try {
    await Promise.race([
      once(socket, 'secureConnect'),
      once(socket, 'close').then(() => {
        throw new Error('closed during the TLS handshake');
      }),
    ]);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}

/**
 * A framing-v1 client over TLS that records every message and the close. With TLS 1.3, a
 * refusal by the server (mTLS) arrives after 'secureConnect', as an error or a close.
 */
export class TlsV1 {
  readonly messages: ClientMessage[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  error: Error | undefined;
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  private isClosed = false;

  constructor(
    readonly socket: TLSSocket,
    readonly client: V1Client,
  ) {
    client.on('message', (m) => {
      this.messages.push(m);
      this.wake();
    });
    client.on('error', (err) => {
      this.error = err;
    });
    this.closed = new Promise((resolve) => {
      client.once('close', (info) => {
        this.isClosed = true;
        this.wake();
        resolve(info);
      });
    });
  }

  static async connect(port: number, options: ConnectionOptions = {}): Promise<TlsV1> {
    const socket = await connectTls(port, options);
    socket.setNoDelay(true);
    return new TlsV1(socket, new V1Client(socket));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!this.isClosed && !w.check()) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once `n` messages have arrived in total (or the connection closed: check the count). */
  async waitMessages(n: number): Promise<ClientMessage[]> {
    if (this.messages.length < n && !this.isClosed) {
      await new Promise<void>((resolve) => this.waiters.push({ check: () => this.messages.length >= n, resolve }));
    }
    if (this.messages.length < n)
      throw new Error(`closed after ${this.messages.length} of ${n} messages (${this.error?.message ?? 'no error'})`);
    return this.messages.slice(0, n);
  }

  /** Sends a text message and resolves with its echo. */
  async roundTrip(text: string, header?: Record<string, unknown>): Promise<ClientMessage> {
    const n = this.messages.length + 1;
    this.client.send(text, header);
    const all = await this.waitMessages(n);
    return all[n - 1] as ClientMessage;
  }

  hello(fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.client.hello(fields);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface WssRefusal {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Opens a `wss` client; resolves with the open socket, or rejects with `{ status, headers, body }`. */
export async function openWss(url: string, options: WebSocket.ClientOptions = {}, protocols?: string | string[]): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () => {
        reject(
          Object.assign(new Error(`unexpected response ${res.statusCode ?? 0}`), {
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        ws.terminate();
      });
    });
    ws.once('error', reject);
  });
  return ws;
}

/** The refusal of a `wss` upgrade (throws if the upgrade succeeded or failed without a response). */
export async function wssRefusal(url: string, options: WebSocket.ClientOptions = {}): Promise<WssRefusal> {
  let ws: WebSocket;
  try {
    ws = await openWss(url, options);
  } catch (err) {
    const e = err as Partial<WssRefusal>;
    if (e.status === undefined) throw err;
    return { status: e.status, headers: e.headers ?? {}, body: e.body ?? '' };
  }
  ws.terminate();
  throw new Error('the upgrade was accepted');
}

/** Sends and resolves with the echo (text messages as strings). */
export async function wssRoundTrip(ws: WebSocket, data: string | Buffer): Promise<Buffer> {
  const reply = once(ws, 'message') as Promise<[Buffer, boolean]>;
  ws.send(data);
  const [d] = await reply;
  return d;
}

/** Resolves with the close code and reason of a `ws` client. */
export async function wssClosed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) throw new Error('already closed');
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  return { code, reason: reason.toString() };
}

/** GET over HTTPS on 127.0.0.1, trusting `ca`. */
export async function httpsGetJson(
  port: number,
  path: string,
  ca: string | undefined,
  options: https.RequestOptions = {},
): Promise<Record<string, unknown>> {
  const req = https.get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false, ...options });
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode ?? 0}`);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
}
