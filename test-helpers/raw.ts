/**
 * A raw byte-level client for integration tests: collects every byte the server sends and
 * resolves waits on byte counts, predicates or the socket closing (events, never sleeps).
 * Also: a manual WebSocket handshake over a plain TCP socket, and parsers for server frames
 * (WebSocket, unmasked) and framing v1, so tests can check the bytes on the wire.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { encodeFrame as encodeWsFrame } from '../src/protocol/ws-frame.js';

type Waiter = { check: () => boolean; resolve: () => void };

export class RawSocket {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  private length = 0;
  private waiters: Waiter[] = [];
  /** Total bytes received since connect (including bytes already taken). */
  received = 0;
  isClosed = false;
  error: Error | undefined;
  readonly closed: Promise<void>;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.length += chunk.length;
      this.received += chunk.length;
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      });
    });
  }

  static async connect(target: { port: number; host?: string } | { path: string }): Promise<RawSocket> {
    const socket = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host ?? '127.0.0.1');
    socket.setNoDelay?.(true);
    const raw = new RawSocket(socket);
    await Promise.race([
      once(socket, 'connect'),
      once(socket, 'error').then(([err]) => {
        throw err;
      }),
    ]);
    return raw;
  }

  private wake(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.isClosed || w.check()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Everything received and not taken yet. */
  data(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.length)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  get available(): number {
    return this.length;
  }

  /** Removes the first `n` bytes from the collected data and returns them. */
  take(n: number): Buffer {
    const all = this.data();
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  /** Resolves once `check()` is true or the socket has closed. */
  waitUntil(check: () => boolean): Promise<void> {
    if (this.isClosed || check()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ check, resolve }));
  }

  /** Resolves with the collected data once at least `n` bytes are there, or the socket closed. */
  async waitBytes(n: number): Promise<Buffer> {
    await this.waitUntil(() => this.length >= n);
    return this.data();
  }

  /** Resolves when the socket has closed. */
  waitClose(): Promise<void> {
    return this.closed;
  }

  /** Resolves when the write was handed to the kernel (rejects on error). */
  write(buf: Uint8Array | string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(buf, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Writes `buf` one byte at a time, awaiting each write. */
  async writeBytewise(buf: Uint8Array): Promise<void> {
    for (let i = 0; i < buf.length; i++) await this.write(buf.subarray(i, i + 1));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket over a raw socket

export interface HttpHead {
  status: number;
  headers: Record<string, string>;
}

function parseHead(text: string): HttpHead {
  const lines = text.split('\r\n');
  const status = Number((lines[0] ?? '').split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers };
}

/** Reads an HTTP response head from `raw` (consuming it); undefined when the socket closed first. */
export async function readHead(raw: RawSocket): Promise<HttpHead | undefined> {
  const end = (): number => raw.data().indexOf('\r\n\r\n');
  await raw.waitUntil(() => end() >= 0);
  const at = end();
  if (at < 0) return undefined;
  return parseHead(raw.take(at + 4).toString('latin1'));
}

/**
 * Connects and performs a WebSocket opening handshake by hand. Resolves with the socket
 * (positioned after the response head) and the response head, whatever its status.
 */
export async function wsHandshake(
  port: number,
  path = '/',
  options: { protocol?: string; headers?: Record<string, string> } = {},
): Promise<{ raw: RawSocket; head: HttpHead }> {
  const raw = await RawSocket.connect({ port });
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
  ];
  if (options.protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${options.protocol}`);
  for (const [k, v] of Object.entries(options.headers ?? {})) lines.push(`${k}: ${v}`);
  await raw.write(lines.join('\r\n') + '\r\n\r\n');
  const head = await readHead(raw);
  if (head === undefined) throw new Error('socket closed before the handshake response');
  return { raw, head };
}

/** A masked client frame (random mask key). */
export function clientFrame(opcode: number, payload: Uint8Array | string, fin = true): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return encodeWsFrame(opcode, p, { fin, maskKey: randomBytes(4) });
}

export interface WsFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses complete WebSocket frames from `buf`; `used` is the number of bytes they took. */
export function parseWsFrames(buf: Buffer): { frames: WsFrame[]; used: number } {
  const frames: WsFrame[] = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos] as number;
    const b1 = buf[pos + 1] as number;
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (buf.length - pos < 4) break;
      len = buf.readUInt16BE(pos + 2);
      h = 4;
    } else if (len === 127) {
      if (buf.length - pos < 10) break;
      len = Number(buf.readBigUInt64BE(pos + 2));
      h = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const keyLen = masked ? 4 : 0;
    if (buf.length - pos < h + keyLen + len) break;
    let payload = Buffer.from(buf.subarray(pos + h + keyLen, pos + h + keyLen + len));
    if (masked) {
      const key = buf.subarray(pos + h, pos + h + 4);
      payload = Buffer.from(payload.map((b, i) => b ^ (key[i & 3] as number)));
    }
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload });
    pos += h + keyLen + len;
  }
  return { frames, used: pos };
}

/** Waits until `count` complete WebSocket frames arrived (or the socket closed); consumes them. */
export async function readWsFrames(raw: RawSocket, count: number): Promise<WsFrame[]> {
  await raw.waitUntil(() => parseWsFrames(raw.data()).frames.length >= count);
  const { frames } = parseWsFrames(raw.data());
  const taken = frames.slice(0, count);
  raw.take(sizeOfFrames(taken));
  return taken;
}

function sizeOfFrames(frames: WsFrame[]): number {
  let n = 0;
  for (const f of frames) {
    const len = f.payload.length;
    n += (len < 126 ? 2 : len < 65536 ? 4 : 10) + (f.masked ? 4 : 0) + len;
  }
  return n;
}

/** The close code of a close frame's payload (1005 when empty). */
export function closeCode(payload: Buffer): number {
  return payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
}

// ---------------------------------------------------------------------------------------------
// Framing v1

export interface V1Frame {
  opcode: number;
  flags: number;
  header: Record<string, unknown> | undefined;
  payload: Buffer;
  /** The whole frame as received, length prefix included. */
  raw: Buffer;
}

/** Parses complete framing-v1 frames from `buf`. */
export function parseV1Frames(buf: Buffer): { frames: V1Frame[]; used: number } {
  const frames: V1Frame[] = [];
  let pos = 0;
  while (buf.length - pos >= 4) {
    const len = buf.readUInt32BE(pos);
    if (buf.length - pos - 4 < len) break;
    const body = buf.subarray(pos + 4, pos + 4 + len);
    const kind = body[0] as number;
    let header: Record<string, unknown> | undefined;
    let p = 1;
    if ((kind & 0x80) !== 0) {
      const hlen = body.readUInt16BE(1);
      header = JSON.parse(body.toString('utf8', 3, 3 + hlen)) as Record<string, unknown>;
      p = 3 + hlen;
    }
    frames.push({
      opcode: kind & 0x0f,
      flags: kind & 0xf0,
      header,
      payload: Buffer.from(body.subarray(p)),
      raw: Buffer.from(buf.subarray(pos, pos + 4 + len)),
    });
    pos += 4 + len;
  }
  return { frames, used: pos };
}

/** Waits until `count` complete v1 frames arrived (or the socket closed); consumes them. */
export async function readV1Frames(raw: RawSocket, count: number): Promise<V1Frame[]> {
  await raw.waitUntil(() => parseV1Frames(raw.data()).frames.length >= count);
  const { frames } = parseV1Frames(raw.data());
  const taken = frames.slice(0, count);
  raw.take(taken.reduce((n, f) => n + f.raw.length, 0));
  return taken;
}
