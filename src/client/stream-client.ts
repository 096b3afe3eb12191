/**
 * A typed framing-v1 client over any Duplex: TCP, TLS, Unix sockets or the in-process pair.
 * Node only (it uses node:net); the browser client is the WebSocket one.
 */
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { parseHeader, type MetadataHeader } from '../protocol/header.js';
import { decodeClose, encodeClose, encodeFrame, V1Decoder, V1Opcode, type V1FrameHandler } from '../protocol/v1.js';

export interface ClientMessage {
  readonly kind: 'text' | 'binary';
  readonly data: Buffer;
  readonly header: MetadataHeader | undefined;
}

export interface V1ClientEvents {
  message: [ClientMessage];
  hello: [Record<string, unknown>];
  pong: [Buffer];
  close: [{ code: number; reason: string }];
  error: [Error];
}

/** Limits for what the client accepts from a server (generous: the server is trusted more). */
export interface V1ClientOptions {
  /** @default 16 MiB */
  readonly maxFrameBytes?: number;
  /** @default 65535 (the echo adds `srv` to the header) */
  readonly maxHeaderBytes?: number;
}

export class V1Client extends EventEmitter<V1ClientEvents> implements V1FrameHandler {
  private readonly decoder: V1Decoder;
  private closeInfo: { code: number; reason: string } | undefined;

  constructor(
    readonly stream: Duplex,
    options: V1ClientOptions = {},
  ) {
    super();
    this.decoder = new V1Decoder(this, {
      maxFrameBytes: options.maxFrameBytes ?? 16 * 1024 * 1024,
      maxHeaderBytes: options.maxHeaderBytes ?? 65535,
    });
    stream.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch (err) {
        this.emit('error', err as Error);
        stream.destroy();
      }
    });
    stream.on('error', (err) => this.emit('error', err));
    stream.on('close', () => this.emit('close', this.closeInfo ?? { code: 1006, reason: '' }));
  }

  onV1Frame(opcode: V1Opcode, buf: Buffer, _frameStart: number, hs: number, he: number, ps: number, end: number): void {
    switch (opcode) {
      case V1Opcode.TEXT:
      case V1Opcode.BINARY:
        this.emit('message', {
          kind: opcode === V1Opcode.TEXT ? 'text' : 'binary',
          data: Buffer.from(buf.subarray(ps, end)),
          header: hs >= 0 ? parseHeader(buf, hs, he) : undefined,
        });
        return;
      case V1Opcode.PING:
        this.stream.write(encodeFrame(V1Opcode.PONG, buf.subarray(ps, end)));
        return;
      case V1Opcode.PONG:
        this.emit('pong', Buffer.from(buf.subarray(ps, end)));
        return;
      case V1Opcode.HELLO:
        this.emit('hello', JSON.parse(buf.toString('utf8', ps, end)) as Record<string, unknown>);
        return;
      case V1Opcode.CLOSE: {
        const info = decodeClose(buf, ps, end);
        if (this.closeInfo === undefined) {
          this.closeInfo = info;
          if (this.stream.writable)
            this.stream.write(info.code === 1005 ? encodeFrame(V1Opcode.CLOSE, Buffer.alloc(0)) : encodeClose(info.code, info.reason));
        }
        this.stream.end();
        return;
      }
    }
  }

  /** Sends a text (string) or binary message, with an optional metadata header. */
  send(data: string | Uint8Array, header?: MetadataHeader): boolean {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const h = header === undefined ? undefined : Buffer.from(JSON.stringify(header), 'utf8');
    return this.stream.write(encodeFrame(typeof data === 'string' ? V1Opcode.TEXT : V1Opcode.BINARY, payload, h));
  }

  /** Sends `hello` (credentials, protocol version) and resolves with the server's answer. */
  async hello(fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const answer = once(this, 'hello');
    this.stream.write(encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, ...fields }), 'utf8')));
    const [h] = (await answer) as [Record<string, unknown>];
    return h;
  }

  ping(payload: Uint8Array = Buffer.alloc(0)): void {
    this.stream.write(encodeFrame(V1Opcode.PING, payload));
  }

  /** Sends a close frame and resolves when the connection has closed. */
  async close(code = 1000, reason = ''): Promise<{ code: number; reason: string }> {
    if (this.stream.destroyed) return this.closeInfo ?? { code: 1006, reason: '' };
    const closed = once(this, 'close');
    if (this.closeInfo === undefined && this.stream.writable) {
      this.closeInfo = { code, reason };
      this.stream.write(encodeClose(code, reason));
    }
    const [info] = (await closed) as [{ code: number; reason: string }];
    return info;
  }
}

/** Opens a framing-v1 connection over TCP (`{ host, port }`) or a Unix socket (`{ path }`). */
export async function connectV1(
  target: { host?: string; port: number } | { path: string },
  options: V1ClientOptions = {},
): Promise<V1Client> {
  const socket = 'path' in target ? net.connect(target.path) : net.connect(target.port, target.host ?? '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return new V1Client(socket, options);
}
