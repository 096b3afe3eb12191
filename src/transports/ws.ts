/**
 * WebSocket transport: the upgrade (on our own HTTP listener or an application's), then our
 * own echo path over `WsReceiver`. Echoes of all frames of one read are written into the read
 * buffer itself, behind the parse position (a server frame is always 4 bytes shorter than the
 * masked client frame it answers), and sent with one write: no allocation, one syscall.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCode, HttpError, ProtocolError, ErrorCode } from '../errors.js';
import { channels, sampleMessage } from '../core/events.js';
import { publishMessage, serverStamp } from './message-events.js';
import type { Connection, ProtocolAdapter } from '../core/connection.js';
import { keyFor, type EchoCore } from '../core/core.js';
import type { MessageKind } from '../core/types.js';
import { parseHeader, stampHeader, type MetadataHeader } from '../protocol/header.js';
import { encodeBody, newBodyParts, parseBody, V1Opcode, type V1Limits } from '../protocol/v1.js';
import {
  encodeClosePayload,
  encodeFrame,
  headerSize,
  writeHeader,
  WsOpcode,
  WsReceiver,
  RESERVE,
  type WsDataOpcode,
  type WsReceiverHandler,
} from '../protocol/ws-frame.js';
import { httpErrorResponse, SUBPROTOCOL_V1, upgradeResponse, validateUpgrade } from '../protocol/ws-handshake.js';

const PING_FRAME = Buffer.from([0x89, 0x00]);

/**
 * Buffers for frames that span reads (64 KiB messages always do: a read is at most 64 KiB),
 * reused once their echo has been flushed instead of allocating and collecting 64 KiB per
 * message. Server-wide and small: at most POOL_MAX buffers of POOL_BUF bytes (4 MiB).
 */
const POOL_BUF = 128 * 1024 + RESERVE;
const POOL_MIN = 8 * 1024;
const POOL_MAX = 32;
const pool: Buffer[] = [];
const pooled = new WeakSet<Buffer>();

function allocate(size: number): Buffer {
  if (size < POOL_MIN || size > POOL_BUF) return Buffer.allocUnsafe(size);
  const buf = pool.pop() ?? Buffer.allocUnsafe(POOL_BUF);
  pooled.add(buf);
  return buf;
}

function release(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
}

/** Buffers idle in the pool now (at most POOL_MAX; for tests and /info). */
export function pooledBuffers(): number {
  return pool.length;
}
const EMPTY = Buffer.alloc(0);
/** parseBody's result for `echo.v1` messages, reused (parsing is synchronous). */
const V1_PARTS = newBodyParts();

export class WsProtocol implements ProtocolAdapter, WsReceiverHandler {
  private readonly receiver: WsReceiver;
  private readonly core: EchoCore;
  /** Buffer that pending in-place echoes were written into, and their end. */
  private outBuf: Buffer | undefined = undefined;
  /**
   * Pending echoes are `outBuf[outStart, outPos)`. A flush never rewinds: bytes already handed
   * to the socket may still be queued there (a full kernel buffer), so later echoes of the same
   * read are written after them, never over them.
   */
  private outStart = 0;
  private outPos = 0;
  private batchIn = 0;
  private batchOut = 0;
  private rxAt = 0;
  private closeSent = false;

  constructor(
    private readonly conn: Connection,
    /** `echo.v1`: every message is a binary message carrying a v1 body. */
    private readonly v1: boolean,
  ) {
    this.core = conn.core;
    this.receiver = new WsReceiver(this, { maxMessageBytes: conn.core.settings.maxFrameBytes, allocate });
  }

  get bufferedBytes(): number {
    return this.receiver.bufferedBytes;
  }

  onData(chunk: Buffer): void {
    this.outBuf = undefined;
    this.outStart = this.outPos = 0;
    this.batchIn = this.batchOut = 0;
    this.rxAt = 0;
    try {
      this.receiver.push(chunk);
    } finally {
      // Echoes of the frames before a protocol error still go out, ahead of the close frame.
      this.flush();
      const conn = this.conn;
      if (this.batchIn > 0) conn.received(this.batchIn);
      if (this.batchOut > 0) {
        conn.sent(this.batchOut);
        if (channels.flush.hasSubscribers)
          channels.flush.publish({ connection: conn, messages: this.batchOut, flushedAt: performance.now() });
      }
    }
  }

  private flush(): void {
    if (this.outPos > this.outStart) {
      this.conn.write((this.outBuf as Buffer).subarray(this.outStart, this.outPos));
      this.outStart = this.outPos;
    }
  }

  onMessage(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    const conn = this.conn;
    if (!conn.open) return; // after our close frame, data is discarded (RFC 6455 §5.5.1)
    this.batchIn++;
    if (this.v1) return this.onV1Message(opcode, buf, start, end, inPlace);
    const kind: MessageKind = opcode === WsOpcode.TEXT ? 'text' : 'binary';
    if (channels.message.hasSubscribers && sampleMessage()) this.publish(kind, end - start, undefined);
    if (this.core.handler !== undefined && this.core.dispatch(conn, kind, Buffer.from(buf.subarray(start, end)), undefined)) return;
    this.echo(opcode, buf, start, end, inPlace);
  }

  /** Echo: same opcode, byte-identical payload, one frame. */
  private echo(opcode: number, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    const len = end - start;
    if (inPlace) {
      if (this.outBuf !== buf) {
        this.flush();
        this.outBuf = buf;
        this.outStart = this.outPos = 0;
      }
      const at = this.outPos;
      const h = writeHeader(buf, at, opcode, len);
      // copyWithin: a memmove with no allocation (Buffer.copy allocates a view per call).
      if (at + h !== start) buf.copyWithin(at + h, start, end);
      this.outPos = at + h + len;
    } else {
      // A message collected across reads: its buffer has header room in front.
      this.flush();
      const h = headerSize(len);
      writeHeader(buf, start - h, opcode, len);
      // A pooled buffer goes back to the pool once the kernel has the bytes.
      this.conn.write(buf.subarray(start - h, end), pooled.has(buf) ? () => release(buf) : undefined);
    }
    this.batchOut++;
  }

  private onV1Message(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    if (opcode !== WsOpcode.BINARY)
      throw new ProtocolError(ErrorCode.PROTOCOL, CloseCode.UNSUPPORTED_DATA, 'echo.v1 messages must be binary');
    const limits: V1Limits = this.core.settings;
    // Copied out at once: V1_PARTS is shared by every connection.
    const { opcode: op, headerStart, headerEnd, payloadStart } = parseBody(buf, start, end, limits, V1_PARTS);
    switch (op) {
      case V1Opcode.TEXT:
      case V1Opcode.BINARY: {
        const kind: MessageKind = op === V1Opcode.TEXT ? 'text' : 'binary';
        const header = headerStart >= 0 ? parseHeader(buf, headerStart, headerEnd) : undefined;
        if (header !== undefined && this.core.replay !== undefined) this.core.checkReplay(this.conn, header);
        if (channels.message.hasSubscribers && (header !== undefined || sampleMessage())) this.publish(kind, end - payloadStart, header);
        if (this.core.handler !== undefined && this.core.dispatch(this.conn, kind, Buffer.from(buf.subarray(payloadStart, end)), header))
          return;
        if (header === undefined) return this.echo(WsOpcode.BINARY, buf, start, end, inPlace);
        if (this.rxAt === 0) this.rxAt = performance.now();
        const stamped = stampHeader(header, serverStamp(this.conn, this.conn.messagesIn + this.batchIn, this.rxAt));
        this.sendBody(encodeBody(op, buf.subarray(payloadStart, end), stamped));
        this.batchOut++;
        return;
      }
      case V1Opcode.PING:
        this.sendBody(encodeBody(V1Opcode.PONG, buf.subarray(payloadStart, end)));
        return;
      case V1Opcode.HELLO:
        this.sendBody(
          encodeBody(
            V1Opcode.HELLO,
            Buffer.from(
              JSON.stringify({ v: 1, ok: true, conn: this.conn.id, instance: this.core.settings.instance, identity: this.conn.identity }),
            ),
          ),
        );
        return;
      default:
        return; // pong, and close (the WebSocket close frame closes a WebSocket)
    }
  }

  private publish(kind: MessageKind, size: number, header: MetadataHeader | undefined): void {
    if (this.rxAt === 0) this.rxAt = performance.now();
    publishMessage(this.conn, this.conn.messagesIn + this.batchIn, this.rxAt, kind, size, header);
  }

  private sendBody(body: Buffer): void {
    this.flush();
    this.conn.write(frame(WsOpcode.BINARY, body));
  }

  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void {
    if (this.v1) {
      const h = header === undefined ? undefined : Buffer.from(JSON.stringify(header), 'utf8');
      this.sendBody(encodeBody(kind === 'text' ? V1Opcode.TEXT : V1Opcode.BINARY, data, h));
      return;
    }
    this.flush();
    this.conn.write(frame(kind === 'text' ? WsOpcode.TEXT : WsOpcode.BINARY, data));
  }

  ping(): void {
    if (!this.closeSent) this.conn.write(PING_FRAME);
  }

  close(code: number, reason: string): void {
    this.flush();
    if (!this.closeSent) {
      this.closeSent = true;
      this.conn.write(frame(WsOpcode.CLOSE, encodeClosePayload(code, reason)));
    }
    // Failing the connection (protocol error): no need to wait for the peer's answer.
    if (code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY) {
      this.receiver.stop();
      this.conn.socket.end();
    }
  }

  onPing(payload: Buffer): void {
    if (this.closeSent) return;
    this.flush();
    this.conn.write(frame(WsOpcode.PONG, payload));
  }

  onPong(): void {
    // Activity is recorded per read; nothing else to do.
  }

  onClose(code: number, reason: string): void {
    this.flush();
    if (!this.closeSent) {
      // Answer with the same code (§5.5.1); 1005 means the peer sent none, so neither do we.
      this.closeSent = true;
      this.conn.write(frame(WsOpcode.CLOSE, code === CloseCode.NO_STATUS ? EMPTY : encodeClosePayload(code, reason)));
    }
    this.conn.finish(code, reason);
  }
}

function frame(opcode: number, payload: Buffer): Buffer {
  return encodeFrame(opcode, payload);
}

/** What a WebSocket listener or `attach()` needs to take an upgrade. */
export interface WsUpgradeOptions {
  /** Paths served (query string ignored). */
  readonly paths: readonly string[];
  /**
   * Answer 404 to upgrades on other paths (our own listener); false leaves them to the
   * application's other `upgrade` listeners (`attach()`).
   */
  readonly exclusive: boolean;
  /**
   * Optional admission check (authentication, origin) run before the 101: resolve to the
   * identity (or undefined), or throw an HttpError to refuse.
   */
  readonly admit?: ((req: IncomingMessage) => Promise<string | undefined> | string | undefined) | undefined;
}

export function peerOf(socket: Duplex & { remoteAddress?: string; remotePort?: number }): string {
  const a = socket.remoteAddress;
  if (a === undefined) return 'unknown';
  return a.includes(':') ? `[${a}]:${socket.remotePort ?? 0}` : `${a}:${socket.remotePort ?? 0}`;
}

function refuse(socket: Duplex, status: number, message: string, extra: readonly string[] = []): void {
  if (socket.writable) socket.end(httpErrorResponse(status, message, extra));
  else socket.destroy();
}

/**
 * Handles an HTTP upgrade request. Returns false when the path is not ours and the listener
 * is not exclusive (someone else may take it).
 */
export function handleUpgrade(core: EchoCore, opts: WsUpgradeOptions, req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const peer = peerOf(socket as Duplex & { remoteAddress?: string });
  if (!opts.paths.includes(path)) {
    if (!opts.exclusive) return false;
    refuse(socket, 404, `no WebSocket endpoint at ${path}`);
    return true;
  }
  socket.on('error', noop); // until the connection owns the socket
  if (core.draining) {
    core.reject('ws', 'shutdown', peer, 'server is draining');
    refuse(socket, 503, 'server is shutting down', ['Retry-After: 1']);
    return true;
  }
  if (core.full) {
    core.reject('ws', 'limit', peer, 'connection limit reached');
    refuse(socket, 503, 'connection limit reached', ['Retry-After: 1']);
    return true;
  }
  let verdict;
  try {
    verdict = validateUpgrade(req);
  } catch (err) {
    const e = err as HttpError;
    core.reject('ws', 'handshake', peer, e.message);
    refuse(socket, e.status ?? 400, e.message, e.status === 426 ? ['Sec-WebSocket-Version: 13'] : []);
    return true;
  }
  const accept = (identity: string | undefined): void => {
    if (socket.destroyed) return;
    if (core.full || core.draining) {
      core.reject('ws', core.draining ? 'shutdown' : 'limit', peer, 'refused after admission');
      refuse(socket, 503, 'server busy', ['Retry-After: 1']);
      return;
    }
    const remote = (socket as Duplex & { remoteAddress?: string }).remoteAddress;
    const key = keyFor(identity, remote);
    const lease = core.openLease(key);
    if (lease === null) {
      core.reject('ws', 'limit', peer, 'per-client connection limit');
      refuse(socket, 503, 'too many connections from this client', ['Retry-After: 1']);
      return;
    }
    socket.removeListener('error', noop);
    const s = socket as Duplex & { setNoDelay?: (v: boolean) => void; setTimeout?: (ms: number) => void };
    s.setTimeout?.(0);
    s.setNoDelay?.(true);
    socket.write(upgradeResponse(verdict));
    if (head.length > 0) socket.unshift(head);
    const v1 = verdict.protocol === SUBPROTOCOL_V1;
    core.add(socket, 'ws', peer, (conn) => new WsProtocol(conn, v1), identity, key, lease);
  };
  if (opts.admit === undefined) {
    accept(undefined);
    return true;
  }
  Promise.resolve()
    .then(() => (opts.admit as NonNullable<WsUpgradeOptions['admit']>)(req))
    .then(accept, (err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      core.reject('ws', status === 401 ? 'auth' : status === 403 ? 'policy' : 'handshake', peer, message);
      refuse(socket, status, message, status === 401 ? ['WWW-Authenticate: Bearer'] : []);
    });
  return true;
}

function noop(): void {}
