/**
 * A raw WebSocket client for conformance tests (Autobahn|Testsuite's "fuzzingclient", in
 * miniature): the opening handshake by hand over `net`, arbitrary masked (or deliberately
 * invalid) client frames written in a chosen chopping (whole, one write per frame, fixed-size
 * chops, one byte per write), and an exact record of what the server sent back: every frame,
 * parsed by a small client-side parser of its own (independent of `src/protocol/`), whether
 * the server half-closed the TCP connection (FIN) and whether it was reset.
 *
 * Waits are event-driven: `waitFor()` re-checks its predicate on every frame, FIN and close;
 * a deadline only bounds how long a misbehaving server can stall a test.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

export const Op = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

// ---------------------------------------------------------------------------------------------
// Client frame encoder (pure)
// ---------------------------------------------------------------------------------------------

export interface FrameSpec {
  readonly opcode: number;
  readonly payload?: Uint8Array | string;
  /** @default true */
  readonly fin?: boolean;
  /** RSV1..3 as a 3-bit number (RSV1 = 4). @default 0 */
  readonly rsv?: number;
  /** Client frames must be masked; false forges an unmasked one. @default true */
  readonly mask?: boolean;
  /** Declared payload length, when it should differ from the bytes appended (forged headers). */
  readonly declaredLength?: number | bigint;
}

const toBytes = (p: Uint8Array | string | undefined): Buffer =>
  p === undefined ? Buffer.alloc(0) : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p.buffer, p.byteOffset, p.byteLength);

/** Mask keys come from a pool of random bytes (one crypto call per 16,384 frames, not per frame). */
let keyPool = randomBytes(65536);
let keyAt = keyPool.length;
function nextKey(): Buffer {
  if (keyAt + 4 > keyPool.length) {
    keyPool = randomBytes(65536);
    keyAt = 0;
  }
  keyAt += 4;
  return keyPool.subarray(keyAt - 4, keyAt);
}

/** Encodes one client frame (masked with a random key unless `mask: false`). */
export function clientFrame(spec: FrameSpec): Buffer {
  const payload = toBytes(spec.payload);
  const declared = spec.declaredLength ?? payload.length;
  const masked = spec.mask ?? true;
  const lenBytes = declared < 126 ? 0 : declared < 65536 ? 2 : 8;
  const hlen = 2 + lenBytes + (masked ? 4 : 0);
  const out = Buffer.allocUnsafe(hlen + payload.length);
  out[0] = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  if (lenBytes === 0) out[1] = Number(declared);
  else if (lenBytes === 2) {
    out[1] = 126;
    out.writeUInt16BE(Number(declared), 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(declared), 2);
  }
  if (!masked) {
    payload.copy(out, hlen);
    return out;
  }
  out[1] = (out[1] as number) | 0x80;
  const key = nextKey();
  key.copy(out, 2 + lenBytes);
  for (let i = 0; i < payload.length; i++) out[hlen + i] = (payload[i] as number) ^ (key[i & 3] as number);
  return out;
}

/** A close frame payload: u16be code + reason (a string is UTF-8 encoded; a Buffer is raw). */
export function closePayload(code: number, reason: string | Buffer = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason, 'utf8') : reason;
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server frame parser (incremental)
// ---------------------------------------------------------------------------------------------

export interface ServerFrame {
  readonly opcode: number;
  readonly fin: boolean;
  readonly rsv: number;
  readonly masked: boolean;
  readonly payload: Buffer;
}

/**
 * Parses what a server sends. Anything a server must not do (masking, RSV bits without an
 * extension, reserved opcodes, fragmented or oversized control frames) is recorded in
 * `violations`; the frame is still returned so the test can show it.
 */
export class ServerFrameParser {
  readonly violations: string[] = [];
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ServerFrame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: ServerFrame[] = [];
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      const b0 = b[0] as number;
      const b1 = b[1] as number;
      let len = b1 & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.violations.push(`server frame length ${big} not representable`);
          this.buf = Buffer.alloc(0);
          break;
        }
        len = Number(big);
        at = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const keyAt = at;
      if (masked) at += 4;
      if (b.length < at + len) break;
      let payload = Buffer.from(b.subarray(at, at + len));
      if (masked) {
        for (let i = 0; i < len; i++) payload[i] = (payload[i] as number) ^ (b[keyAt + (i & 3)] as number);
      }
      const frame: ServerFrame = { opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, masked, payload };
      if (masked) this.violations.push('server sent a masked frame (RFC 6455 §5.1)');
      if (frame.rsv !== 0) this.violations.push(`server frame with RSV bits ${frame.rsv} (no extension negotiated)`);
      if ((frame.opcode > 2 && frame.opcode < 8) || frame.opcode > 0xa)
        this.violations.push(`server frame with reserved opcode ${frame.opcode}`);
      if (frame.opcode >= 8 && (!frame.fin || len > 125))
        this.violations.push(`invalid server control frame (fin=${frame.fin}, ${len} bytes)`);
      out.push(frame);
      this.buf = b.subarray(at + len);
      payload = Buffer.alloc(0);
    }
    return out;
  }

  /** Bytes of an incomplete frame left at the end of the stream. */
  get pending(): number {
    return this.buf.length;
  }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/**
 * How bytes are cut into socket writes: all at once, fixed-size chops, one byte per write, or
 * the first `headBytes` one byte at a time and the rest in chops of `then` (large payloads:
 * headers split everywhere without 65,536 round trips through the event loop).
 */
export type Chop = 'whole' | 'byte' | number | { readonly headBytes: number; readonly then: number };

export interface HttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly raw: string;
}

export interface HandshakeOptions {
  readonly host?: string;
  readonly path?: string;
  /** @default 'GET' */
  readonly method?: string;
  /** Extra or replacing headers (lower-case names); `null` removes a default header. */
  readonly headers?: Readonly<Record<string, string | null>>;
  /** Bytes sent in the same write as the request (frames pipelined with the upgrade). */
  readonly head?: Buffer;
  /** Reply to the server's close frame with a close frame, as Autobahn does. @default true */
  readonly replyToClose?: boolean;
  /** Deadline for the handshake response, ms. @default 2000 */
  readonly timeoutMs?: number;
}

export interface HandshakeResult {
  readonly response: HttpResponse;
  /** Present when the server switched protocols (101). */
  readonly client: RawWsClient | undefined;
}

/** A message as Autobahn records it: reassembled data messages, pongs and pings in arrival order. */
export type Received =
  { readonly kind: 'text' | 'binary'; readonly payload: Buffer } | { readonly kind: 'pong' | 'ping'; readonly payload: Buffer };

export class RawWsClient {
  readonly frames: ServerFrame[] = [];
  readonly violations: string[] = [];
  /** Server closed its sending side (TCP FIN received). */
  serverFin = false;
  /** The connection was reset (ECONNRESET/EPIPE) rather than closed cleanly. */
  reset = false;
  closed = false;
  /** We sent a close frame. */
  closeSent = false;
  private readonly parser = new ServerFrameParser();
  private waiters: Array<() => void> = [];
  private readonly closedPromise: Promise<void>;

  constructor(
    readonly socket: net.Socket,
    leftover: Buffer,
    private readonly replyToClose: boolean,
  ) {
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('end', () => {
      this.serverFin = true;
      // Like any client: once the server has finished, finish our side too.
      if (!socket.writableEnded) socket.end();
      this.notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.reset = true;
      else this.violations.push(`socket error: ${err.message}`);
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    if (leftover.length > 0) this.onBytes(leftover);
  }

  /** Opens a TCP connection and performs (or attempts) the opening handshake. */
  static async handshake(port: number, opts: HandshakeOptions = {}): Promise<HandshakeResult> {
    const host = opts.host ?? '127.0.0.1';
    const socket = net.connect({ port, host, allowHalfOpen: true, noDelay: true });
    const key = randomBytes(16).toString('base64');
    const defaults: Record<string, string> = {
      host: `${host}:${port}`,
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': key,
      'sec-websocket-version': '13',
    };
    const merged: Record<string, string | null> = { ...defaults, ...(opts.headers ?? {}) };
    const lines = [`${opts.method ?? 'GET'} ${opts.path ?? '/'} HTTP/1.1`];
    for (const [name, value] of Object.entries(merged)) if (value !== null) lines.push(`${name}: ${value}`);
    const request = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
    socket.write(opts.head === undefined ? request : Buffer.concat([request, opts.head]));

    return new Promise<HandshakeResult>((resolve, reject) => {
      let acc = Buffer.alloc(0);
      let headEnd = -1;
      let done = false;
      const timer = setTimeout(() => finish(new Error('handshake: no response before the deadline')), opts.timeoutMs ?? 2000);
      const finish = (err: Error | undefined, result?: HandshakeResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.removeListener('end', onEnd);
        socket.removeListener('error', onError);
        if (err !== undefined) {
          socket.destroy();
          reject(err);
        } else resolve(result as HandshakeResult);
      };
      const parse = (): HttpResponse => {
        const raw = acc.subarray(0, headEnd).toString('latin1');
        const [statusLine = '', ...headerLines] = raw.split('\r\n');
        const status = Number(statusLine.split(' ')[1]);
        const headers: Record<string, string> = {};
        for (const l of headerLines) {
          const i = l.indexOf(':');
          if (i > 0) {
            const name = l.slice(0, i).trim().toLowerCase();
            const value = l.slice(i + 1).trim();
            headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
          }
        }
        return { status, headers, raw: acc.toString('latin1') };
      };
      const onData = (chunk: Buffer): void => {
        acc = Buffer.concat([acc, chunk]);
        if (headEnd === -1) {
          const i = acc.indexOf('\r\n\r\n');
          if (i === -1) return;
          headEnd = i;
        }
        const response = parse();
        if (response.status !== 101) return; // read the refusal up to the server's FIN
        const expected = createHash('sha1')
          .update(key + GUID)
          .digest('base64');
        if (response.headers['sec-websocket-accept'] !== expected) {
          finish(new Error(`handshake: bad Sec-WebSocket-Accept ${response.headers['sec-websocket-accept']}`));
          return;
        }
        const leftover = acc.subarray(headEnd + 4);
        finish(undefined, { response, client: new RawWsClient(socket, leftover, opts.replyToClose ?? true) });
      };
      const onEnd = (): void => {
        if (headEnd === -1) {
          headEnd = acc.indexOf('\r\n\r\n');
          if (headEnd === -1)
            return finish(new Error(`handshake: connection ended without a response: ${JSON.stringify(acc.toString('latin1'))}`));
        }
        socket.end();
        finish(undefined, { response: parse(), client: undefined });
      };
      const onError = (err: Error): void => finish(err);
      socket.on('data', onData);
      socket.on('end', onEnd);
      socket.on('error', onError);
    });
  }

  /** Connects and requires a successful upgrade. */
  static async connect(port: number, opts: HandshakeOptions = {}): Promise<RawWsClient> {
    const r = await RawWsClient.handshake(port, opts);
    if (r.client === undefined) throw new Error(`upgrade refused: ${r.response.raw.split('\r\n')[0]}`);
    return r.client;
  }

  private onBytes(chunk: Buffer): void {
    const frames = this.parser.push(chunk);
    for (const f of frames) {
      this.frames.push(f);
      if (f.opcode === Op.CLOSE && this.replyToClose && !this.closeSent) {
        // Autobahn echoes the server's close code (or an empty close) to finish the handshake.
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined;
        void this.write([clientFrame({ opcode: Op.CLOSE, payload: code === undefined ? undefined : closePayload(code) })], 'whole');
        this.closeSent = true;
      }
    }
    if (this.parser.violations.length > 0) this.violations.push(...this.parser.violations.splice(0));
    if (frames.length > 0) this.notify();
  }

  private notify(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  get writable(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  /**
   * Writes frames (or raw buffers) with the given chopping; resolves when the last write has
   * been handed to the kernel. `perFrame`: one awaited write sequence per element.
   */
  async send(parts: FrameSpec | Buffer | Array<FrameSpec | Buffer>, chop: Chop = 'whole', perFrame = false): Promise<void> {
    const list = Array.isArray(parts) ? parts : [parts];
    const bufs = list.map((p) => {
      if (Buffer.isBuffer(p)) return p;
      if (p.opcode === Op.CLOSE) this.closeSent = true;
      return clientFrame(p);
    });
    if (perFrame) {
      for (const b of bufs) await this.write([b], chop);
    } else {
      await this.write(bufs, chop);
    }
  }

  private async write(bufs: Buffer[], chop: Chop): Promise<void> {
    if (!this.writable) return;
    const all = bufs.length === 1 ? (bufs[0] as Buffer) : Buffer.concat(bufs);
    const size = chop === 'whole' ? all.length : chop === 'byte' || typeof chop === 'object' ? 1 : chop;
    if (all.length === 0) return;
    if (size >= all.length) return this.writeOne(all);
    // Chopped: yield to the event loop after every piece. The server under test usually runs
    // in this very process; without the yield it could not read before the last piece was
    // written and would see one coalesced read, not the chops.
    for (let i = 0; i < all.length && this.writable;) {
      const n = typeof chop === 'object' && i >= chop.headBytes ? chop.then : size;
      await this.writeOne(all.subarray(i, i + n));
      await new Promise<void>((resolve) => setImmediate(resolve));
      i += n;
    }
  }

  /** Resolves once the piece has been handed to the kernel (or the write failed: a reset is recorded by the 'error' listener, not thrown here). */
  private writeOne(piece: Buffer): Promise<void> {
    return new Promise<void>((resolve) => {
      this.socket.write(piece, () => resolve());
    });
  }

  /**
   * Resolves true as soon as `pred()` holds, false if the connection closes first or the
   * deadline passes (a bound on a misbehaving server, not a pause).
   */
  waitFor(pred: () => boolean, timeoutMs = 2000): Promise<boolean> {
    if (pred()) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(pred());
      }, timeoutMs);
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve(true);
        } else if (this.closed) {
          clearTimeout(timer);
          resolve(false);
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** The first close frame the server sent, if any. */
  get closeFrame(): ServerFrame | undefined {
    return this.frames.find((f) => f.opcode === Op.CLOSE);
  }

  /** Waits for the server's close frame. */
  waitCloseFrame(timeoutMs = 2000): Promise<boolean> {
    return this.waitFor(() => this.closeFrame !== undefined, timeoutMs);
  }

  /** Waits until `n` frames other than close/ping have arrived (data or pong). */
  waitReplies(n: number, timeoutMs = 2000): Promise<boolean> {
    return this.waitFor(() => this.frames.filter((f) => f.opcode !== Op.CLOSE && f.opcode !== Op.PING).length >= n, timeoutMs);
  }

  /** Waits for the TCP connection to be fully closed. */
  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    return this.waitFor(() => this.closed, timeoutMs);
  }

  /** Autobahn's view: reassembled messages, pongs and pings in order (close frames excluded). */
  received(): Received[] {
    const out: Received[] = [];
    let parts: Buffer[] | undefined;
    let kind: 'text' | 'binary' = 'text';
    for (const f of this.frames) {
      if (f.opcode === Op.PING || f.opcode === Op.PONG) {
        out.push({ kind: f.opcode === Op.PING ? 'ping' : 'pong', payload: f.payload });
      } else if (f.opcode === Op.TEXT || f.opcode === Op.BINARY) {
        kind = f.opcode === Op.TEXT ? 'text' : 'binary';
        if (f.fin) out.push({ kind, payload: f.payload });
        else parts = [f.payload];
      } else if (f.opcode === Op.CONTINUATION && parts !== undefined) {
        parts.push(f.payload);
        if (f.fin) {
          out.push({ kind, payload: Buffer.concat(parts) });
          parts = undefined;
        }
      }
    }
    return out;
  }

  /** Ends our side and waits for the close; destroys the socket at the deadline. */
  async dispose(timeoutMs = 1000): Promise<void> {
    if (!this.closed) {
      if (!this.socket.writableEnded) this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), timeoutMs);
      await this.closedPromise;
      clearTimeout(t);
    }
  }
}
