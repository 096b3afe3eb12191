/**
 * Bench links over a byte stream (TCP, TLS, Unix): framing v1 (binary frames without a header,
 * which the server echoes byte for byte) or the bare `len` framing. Uses the sans-I/O codecs of
 * src/protocol; the messages of one send() leave in one write.
 */
import type net from 'node:net';
import { once } from 'node:events';
import { LenDecoder } from '../../protocol/len.js';
import type { FrameSink } from '../../protocol/length-prefix.js';
import { decodeClose, encodeFrame, V1Decoder, V1Opcode, type V1FrameHandler } from '../../protocol/v1.js';
import { LinkError } from './connect.js';
import type { Link, LinkHandler } from './link.js';

/** Largest single write of a batch; bigger batches are written in pieces of about this size. */
const MAX_WRITE = 1 << 20;
/** Header room the decoder allows beyond the payload (a server may add a metadata header). */
const HEADER_ALLOWANCE = 64 * 1024;

export class StreamLink implements Link, V1FrameHandler, FrameSink {
  private readonly v1: V1Decoder | undefined;
  private readonly len: LenDecoder | undefined;
  private readonly prefix: number;
  private closing = false;
  private ended = false;
  private closeFrame: string | undefined;
  private hello: ((answer: Record<string, unknown> | Error) => void) | undefined;

  constructor(
    private readonly socket: net.Socket,
    framing: 'v1' | 'len',
    private readonly size: number,
    private readonly handler: LinkHandler,
  ) {
    const maxFrameBytes = size + 1 + 2 + HEADER_ALLOWANCE;
    if (framing === 'v1') this.v1 = new V1Decoder(this, { maxFrameBytes, maxHeaderBytes: HEADER_ALLOWANCE });
    else this.len = new LenDecoder(maxFrameBytes);
    this.prefix = framing === 'v1' ? 5 : 4;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.end('socket', err.message));
    socket.on('close', () => this.end('closed', this.closeFrame ?? 'the server closed the connection'));
  }

  /** v1 hello with the token; resolves when the server accepts it. */
  async authenticate(token: string, timeoutMs: number): Promise<void> {
    const answer = new Promise<Record<string, unknown> | Error>((resolve) => (this.hello = resolve));
    this.socket.write(encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token }))));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`no hello answer within ${timeoutMs} ms`)), timeoutMs);
    });
    const got = await Promise.race([answer, timeout]);
    clearTimeout(timer);
    this.hello = undefined;
    if (got instanceof Error || got['ok'] !== true) {
      this.close();
      throw new LinkError('auth', got instanceof Error ? got.message : `hello refused: ${JSON.stringify(got)}`);
    }
  }

  send(n: number): void {
    const frame = this.prefix + this.size;
    const perWrite = Math.max(1, Math.floor(MAX_WRITE / frame));
    for (let left = n; left > 0;) {
      const k = Math.min(left, perWrite);
      const out = Buffer.allocUnsafe(k * frame);
      for (let i = 0, at = 0; i < k; i++, at += frame) {
        out.writeUInt32BE(frame - 4, at);
        if (this.prefix === 5) out[at + 4] = V1Opcode.BINARY;
        this.handler.fill(out, at + this.prefix);
      }
      this.socket.write(out);
      left -= k;
    }
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    // A server that does not close its side after ours must not keep the bench alive.
    this.socket.setTimeout(1000, () => this.socket.destroy());
  }

  /** Resolves when the socket is fully closed. */
  async closed(): Promise<void> {
    if (!this.socket.destroyed) await once(this.socket, 'close');
  }

  private onData(chunk: Buffer): void {
    try {
      if (this.v1 !== undefined) this.v1.push(chunk);
      else this.len?.push(chunk, this);
    } catch (err) {
      this.end('protocol', (err as Error).message);
      this.socket.destroy();
      return;
    }
    if (!this.closing) this.handler.afterRead();
  }

  private end(kind: 'closed' | 'socket' | 'protocol', message: string): void {
    if (this.ended || this.closing) return;
    this.ended = true;
    if (this.hello !== undefined) {
      this.hello(new Error(this.closeFrame ?? message)); // still connecting: authenticate() reports it
      return;
    }
    this.handler.onEnd(kind, message);
  }

  /** `len` frames. */
  onFrame(buf: Buffer, _frameStart: number, bodyStart: number, bodyEnd: number): void {
    if (!this.closing) this.handler.onEcho(buf, bodyStart, bodyEnd);
  }

  onV1Frame(opcode: V1Opcode, buf: Buffer, _fs: number, headerStart: number, _he: number, payloadStart: number, end: number): void {
    if (this.closing) return;
    switch (opcode) {
      case V1Opcode.BINARY:
        if (headerStart === -1) this.handler.onEcho(buf, payloadStart, end);
        else this.handler.onUnexpected('an echo with a metadata header (none was sent)');
        return;
      case V1Opcode.HELLO:
        if (this.hello !== undefined) this.hello(JSON.parse(buf.toString('utf8', payloadStart, end)) as Record<string, unknown>);
        else this.handler.onUnexpected('a hello frame');
        return;
      case V1Opcode.PING: // keepalive: answer as any v1 client must
        this.socket.write(encodeFrame(V1Opcode.PONG, buf.subarray(payloadStart, end)));
        return;
      case V1Opcode.PONG:
        return;
      case V1Opcode.CLOSE: {
        const { code, reason } = decodeClose(buf, payloadStart, end);
        this.closeFrame = `the server closed the connection with ${code}${reason === '' ? '' : ` (${reason})`}`;
        if (this.hello !== undefined) this.hello(new Error(this.closeFrame));
        return;
      }
      default:
        this.handler.onUnexpected(`a ${opcode === V1Opcode.TEXT ? 'text' : `0x${(opcode as number).toString(16)}`} frame`);
    }
  }
}
