/**
 * Bench links over WebSocket with our own client side of RFC 6455: the opening handshake
 * written by hand on the socket from connect.ts, masked binary frames written into one batch
 * buffer per send() (masking with src/protocol/mask.ts), and a small parser for the server's
 * unmasked frames. Measured against the `ws` package client on the same server (bench/RESULTS.md,
 * 2026-12-01): about 2.8x the messages/s at 100 connections x window 16 x 64 B, which is why
 * this is the default and `--ws-client ws` the alternative.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import type net from 'node:net';
import { maskCopy } from '../../protocol/mask.js';
import { acceptKey } from '../../protocol/ws-handshake.js';
import { LinkError } from './connect.js';
import type { Link, LinkHandler } from './link.js';
import type { Target } from './target.js';

/** Largest single write of a batch. */
const MAX_WRITE = 1 << 20;
/** Largest HTTP response head accepted during the handshake. */
const MAX_HEAD = 16 * 1024;
/** Random bytes drawn at once for mask keys (4 per frame). */
const KEY_POOL = 4096;

const enum Op {
  CONTINUATION = 0x0,
  TEXT = 0x1,
  BINARY = 0x2,
  CLOSE = 0x8,
  PING = 0x9,
  PONG = 0xa,
}

export class WsOwnLink implements Link {
  private closing = false;
  private ended = false;
  private rest: Buffer | undefined = undefined;
  private readonly keys = Buffer.allocUnsafe(KEY_POOL);
  private keyAt = KEY_POOL;
  private fragments: Buffer[] | undefined = undefined;
  private fragOpcode = 0;
  private closeFrame: string | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly size: number,
    private readonly maxMessage: number,
    private readonly handler: LinkHandler,
  ) {}

  /** Upgrades the connected `socket`; rejects with LinkError ('auth' on HTTP 401/403). */
  static open(
    target: Target,
    socket: net.Socket,
    size: number,
    token: string | undefined,
    timeoutMs: number,
    handler: LinkHandler,
  ): Promise<WsOwnLink> {
    const key = randomBytes(16).toString('base64');
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    socket.write(
      `GET ${target.path === '' ? '/' : target.path} HTTP/1.1\r\nHost: ${host}:${target.port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (token === undefined ? '' : `Authorization: Bearer ${token}\r\n`) +
        '\r\n',
    );
    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => fail(new LinkError('connect', `no upgrade within ${timeoutMs} ms`)), timeoutMs);
      function fail(err: LinkError): void {
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.destroy();
        reject(err);
      }
      const onError = (err: Error): void => fail(new LinkError('connect', err.message));
      const onClose = (): void => fail(new LinkError('connect', 'the server closed the connection during the upgrade'));
      function onData(chunk: Buffer): void {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) {
          if (head.length > MAX_HEAD) fail(new LinkError('connect', 'upgrade response head too large'));
          return;
        }
        const lines = head.toString('latin1', 0, end).split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
        if (status !== 101) {
          fail(new LinkError(status === 401 || status === 403 ? 'auth' : 'connect', `upgrade refused: ${lines[0] ?? ''}`));
          return;
        }
        const accept = lines
          .find((l) => /^sec-websocket-accept:/i.test(l))
          ?.split(':')[1]
          ?.trim();
        if (accept !== acceptKey(key)) {
          fail(new LinkError('connect', 'upgrade response has a wrong Sec-WebSocket-Accept'));
          return;
        }
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        const link = new WsOwnLink(socket, size, size + 1024, handler);
        socket.on('data', (c: Buffer) => link.onData(c));
        socket.on('error', (err: Error) => link.end('socket', err.message));
        socket.on('close', () => link.end('closed', link.closeFrame ?? 'the server closed the connection'));
        resolve(link);
        const extra = head.subarray(end + 4);
        if (extra.length > 0) link.onData(extra);
      }
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('close', onClose);
    });
  }

  send(n: number): void {
    const size = this.size;
    const frame = (size < 126 ? 2 : size < 65536 ? 4 : 10) + 4 + size;
    const perWrite = Math.max(1, Math.floor(MAX_WRITE / frame));
    const payload = Buffer.allocUnsafe(size);
    for (let left = n; left > 0;) {
      const k = Math.min(left, perWrite);
      const out = Buffer.allocUnsafe(k * frame);
      for (let i = 0, at = 0; i < k; i++, at += frame) {
        this.handler.fill(payload, 0);
        this.writeFrame(out, at, Op.BINARY, payload);
      }
      this.socket.write(out);
      left -= k;
    }
  }

  /** Writes one masked frame of `payload` at `out[at]`; returns its end. */
  private writeFrame(out: Buffer, at: number, opcode: number, payload: Buffer): number {
    const len = payload.length;
    out[at] = 0x80 | opcode;
    let p = at + 2;
    if (len < 126) out[at + 1] = 0x80 | len;
    else if (len < 65536) {
      out[at + 1] = 0x80 | 126;
      out.writeUInt16BE(len, p);
      p += 2;
    } else {
      out[at + 1] = 0x80 | 127;
      out.writeUInt32BE(Math.floor(len / 0x100000000), p);
      out.writeUInt32BE(len >>> 0, p + 4);
      p += 8;
    }
    // A fresh key per frame (RFC 6455 §5.3), drawn from a pooled block of random bytes.
    if (this.keyAt + 4 > KEY_POOL) {
      randomFillSync(this.keys);
      this.keyAt = 0;
    }
    this.keys.copy(out, p, this.keyAt, this.keyAt + 4);
    maskCopy(payload, 0, len, out, p + 4, this.keys, this.keyAt, 0);
    this.keyAt += 4;
    return p + 4 + len;
  }

  private control(opcode: number, payload: Buffer): void {
    const out = Buffer.allocUnsafe(2 + 4 + payload.length);
    this.writeFrame(out, 0, opcode, payload);
    this.socket.write(out);
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    const code = Buffer.allocUnsafe(2);
    code.writeUInt16BE(1000, 0);
    if (!this.socket.destroyed) this.control(Op.CLOSE, code);
    this.socket.end();
    // A server that does not close its side must not keep the bench alive.
    this.socket.setTimeout(1000, () => this.socket.destroy());
  }

  private end(kind: 'closed' | 'socket' | 'protocol', message: string): void {
    if (this.ended || this.closing) return;
    this.ended = true;
    this.handler.onEnd(kind, message);
  }

  private protocolError(message: string): void {
    this.end('protocol', message);
    this.socket.destroy();
  }

  /** Parses the server's (unmasked) frames of one read. */
  private onData(chunk: Buffer): void {
    if (this.closing || this.ended) return;
    let buf = chunk;
    if (this.rest !== undefined) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    let pos = 0;
    const n = buf.length;
    while (n - pos >= 2) {
      const b0 = buf[pos] as number;
      const b1 = buf[pos + 1] as number;
      if ((b0 & 0x70) !== 0) return this.protocolError('reserved bits set in a server frame');
      if ((b1 & 0x80) !== 0) return this.protocolError('masked server frame');
      let len = b1 & 0x7f;
      let h = 2;
      if (len === 126) {
        if (n - pos < 4) break;
        len = buf.readUInt16BE(pos + 2);
        h = 4;
      } else if (len === 127) {
        if (n - pos < 10) break;
        len = buf.readUInt32BE(pos + 2) * 0x100000000 + buf.readUInt32BE(pos + 6);
        h = 10;
      }
      // Bounds before bytes: an echo is never larger than what was sent.
      if (len > this.maxMessage) return this.protocolError(`a frame of ${len} bytes (messages sent are ${this.size})`);
      if (n - pos < h + len) break;
      const start = pos + h;
      const end = start + len;
      pos = end;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if (opcode === Op.BINARY || opcode === Op.TEXT || opcode === Op.CONTINUATION) {
        if (opcode !== Op.CONTINUATION) this.fragOpcode = opcode;
        if (!fin || this.fragments !== undefined) {
          (this.fragments ??= []).push(Buffer.from(buf.subarray(start, end)));
          if (!fin) continue;
          const whole = Buffer.concat(this.fragments);
          this.fragments = undefined;
          this.deliver(this.fragOpcode, whole, 0, whole.length);
        } else this.deliver(opcode, buf, start, end);
      } else if (opcode === Op.PING) this.control(Op.PONG, Buffer.from(buf.subarray(start, end)));
      else if (opcode === Op.CLOSE) {
        const code = len >= 2 ? buf.readUInt16BE(start) : 1005;
        const reason = len > 2 ? buf.toString('utf8', start + 2, end) : '';
        this.closeFrame = `the server closed the connection with ${code}${reason === '' ? '' : ` (${reason})`}`;
      } else if (opcode !== Op.PONG) return this.protocolError(`unknown opcode 0x${opcode.toString(16)}`);
      if (this.closing) return;
    }
    if (pos < n) this.rest = buf.subarray(pos);
    this.handler.afterRead();
  }

  private deliver(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === Op.BINARY) this.handler.onEcho(buf, start, end);
    else this.handler.onUnexpected('a text message');
  }
}
