/**
 * Stream transports: framing v1 and the bare `len` framing over any Duplex (TCP, TLS, Unix
 * sockets, in-process pairs), and the raw byte echo. Header-less frames are echoed by writing
 * back the validated span of the read buffer: consecutive frames make one write.
 */
import type { Duplex } from 'node:stream';
import { channels, sampleMessage } from '../core/events.js';
import { publishMessage, serverStamp } from './message-events.js';
import { CloseCode, ErrorCode, ProtocolError } from '../errors.js';
import type { Connection, ProtocolAdapter } from '../core/connection.js';
import type { EchoCore } from '../core/core.js';
import type { MessageKind } from '../core/types.js';
import { parseHeader, stampHeader, type MetadataHeader } from '../protocol/header.js';
import { encodeLen, LenDecoder } from '../protocol/len.js';
import type { FrameSink } from '../protocol/length-prefix.js';
import { decodeClose, encodeClose, encodeFrame, V1Decoder, V1Opcode, type V1FrameHandler } from '../protocol/v1.js';

const PING = encodeFrame(V1Opcode.PING, Buffer.alloc(0));

/** Pending echo span `buf[start, end)` and the batch counters shared by both framings. */
abstract class SpanEcho {
  protected spanBuf: Buffer | undefined = undefined;
  protected spanStart = 0;
  protected spanEnd = 0;
  protected batchIn = 0;
  protected batchOut = 0;
  protected rxAt = 0;
  protected readonly core: EchoCore;

  constructor(protected readonly conn: Connection) {
    this.core = conn.core;
  }

  protected begin(): void {
    this.spanBuf = undefined;
    this.batchIn = this.batchOut = 0;
    this.rxAt = 0;
  }

  protected end(): void {
    this.flush();
    const conn = this.conn;
    if (this.batchIn > 0) conn.received(this.batchIn);
    if (this.batchOut > 0) {
      conn.sent(this.batchOut);
      if (channels.flush.hasSubscribers)
        channels.flush.publish({ connection: conn, messages: this.batchOut, flushedAt: performance.now() });
    }
  }

  /** Adds `buf[start, end)` to the echo span (extending it when contiguous). */
  protected echoSpan(buf: Buffer, start: number, end: number): void {
    if (this.spanBuf === buf && this.spanEnd === start) {
      this.spanEnd = end;
    } else {
      this.flush();
      this.spanBuf = buf;
      this.spanStart = start;
      this.spanEnd = end;
    }
    this.batchOut++;
  }

  protected flush(): void {
    if (this.spanBuf !== undefined) {
      this.conn.write(
        this.spanStart === 0 && this.spanEnd === this.spanBuf.length ? this.spanBuf : this.spanBuf.subarray(this.spanStart, this.spanEnd),
      );
      this.spanBuf = undefined;
    }
  }

  /** Publishes the current message (seq = its per-connection number). */
  protected publish(kind: MessageKind, size: number, header: MetadataHeader | undefined): void {
    if (this.rxAt === 0) this.rxAt = performance.now();
    publishMessage(this.conn, this.conn.messagesIn + this.batchIn, this.rxAt, kind, size, header);
  }
}

/** A frame held while the hello is being authenticated. */
interface HeldFrame {
  readonly opcode: V1Opcode;
  readonly buf: Buffer;
  readonly hs: number;
  readonly he: number;
  readonly ps: number;
}

const HELLO_REQUIRED = () => new ProtocolError(ErrorCode.AUTH, CloseCode.POLICY_VIOLATION, 'hello required');

/** Framing v1 (docs/PROTOCOL.md). */
export class V1Protocol extends SpanEcho implements ProtocolAdapter, V1FrameHandler {
  private readonly decoder: V1Decoder;
  private closeSent = false;
  /** Authentication on: the hello must come first (`held` collects frames while it is checked). */
  private awaitingHello: boolean;
  private held: HeldFrame[] | undefined = undefined;
  private heldBytes = 0;

  constructor(conn: Connection, requireHello = false) {
    super(conn);
    this.decoder = new V1Decoder(this, conn.core.settings);
    this.awaitingHello = requireHello;
    // Date.now(), not the coarse core.now: that can be up to one sweep tick (1 s) old, which
    // would cut a client's hello time short by as much (or entirely, for short timeouts).
    if (requireHello) conn.helloDeadline = Date.now() + conn.core.settings.handshakeTimeoutMs;
  }

  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  onData(chunk: Buffer): void {
    this.begin();
    try {
      this.decoder.push(chunk);
    } finally {
      this.end();
    }
  }

  onV1Frame(
    opcode: V1Opcode,
    buf: Buffer,
    frameStart: number,
    headerStart: number,
    headerEnd: number,
    payloadStart: number,
    end: number,
  ): void {
    const conn = this.conn;
    if (this.awaitingHello) {
      if (this.held !== undefined) return this.hold(opcode, buf, frameStart, headerStart, headerEnd, payloadStart, end);
      if (opcode === V1Opcode.HELLO) return this.authenticate(buf.toString('utf8', payloadStart, end));
      if (opcode !== V1Opcode.PING && opcode !== V1Opcode.CLOSE) throw HELLO_REQUIRED();
    }
    switch (opcode) {
      case V1Opcode.TEXT:
      case V1Opcode.BINARY: {
        if (!conn.open) return; // after our close frame, data is discarded
        this.batchIn++;
        const kind: MessageKind = opcode === V1Opcode.TEXT ? 'text' : 'binary';
        const header = headerStart >= 0 ? parseHeader(buf, headerStart, headerEnd) : undefined;
        if (header !== undefined && this.core.replay !== undefined) this.core.checkReplay(conn, header);
        if (channels.message.hasSubscribers && (header !== undefined || sampleMessage())) this.publish(kind, end - payloadStart, header);
        if (this.core.handler !== undefined && this.core.dispatch(conn, kind, Buffer.from(buf.subarray(payloadStart, end)), header)) return;
        if (header === undefined) return this.echoSpan(buf, frameStart, end);
        this.flush();
        if (this.rxAt === 0) this.rxAt = performance.now();
        const stamped = stampHeader(header, serverStamp(conn, conn.messagesIn + this.batchIn, this.rxAt));
        conn.write(encodeFrame(opcode, buf.subarray(payloadStart, end), stamped));
        this.batchOut++;
        return;
      }
      case V1Opcode.PING:
        if (this.closeSent) return;
        this.flush();
        conn.write(encodeFrame(V1Opcode.PONG, buf.subarray(payloadStart, end)));
        return;
      case V1Opcode.PONG:
        return;
      case V1Opcode.HELLO:
        if (!conn.open) return;
        this.flush();
        conn.write(this.helloReply());
        return;
      case V1Opcode.CLOSE: {
        const { code, reason } = decodeClose(buf, payloadStart, end);
        this.flush();
        this.decoder.stop();
        if (!this.closeSent) {
          this.closeSent = true;
          conn.write(code === 1005 ? encodeFrame(V1Opcode.CLOSE, Buffer.alloc(0)) : encodeClose(code, reason));
        }
        conn.finish(code, reason);
        return;
      }
    }
  }

  private helloReply(): Buffer {
    const conn = this.conn;
    return encodeFrame(
      V1Opcode.HELLO,
      Buffer.from(JSON.stringify({ v: 1, ok: true, conn: conn.id, instance: this.core.settings.instance, identity: conn.identity })),
    );
  }

  /** Keeps a copy of a frame that arrived while the hello is being checked (bounded). */
  private hold(opcode: V1Opcode, buf: Buffer, frameStart: number, hs: number, he: number, ps: number, end: number): void {
    this.heldBytes += end - frameStart;
    // The socket is paused while authenticating: only the rest of the read that carried the
    // hello can arrive, so this bound is generous.
    if (this.heldBytes > 2 * this.core.settings.maxFrameBytes + 65536) throw HELLO_REQUIRED();
    const copy = Buffer.from(buf.subarray(frameStart, end));
    (this.held as HeldFrame[]).push({
      opcode,
      buf: copy,
      hs: hs < 0 ? -1 : hs - frameStart,
      he: he < 0 ? -1 : he - frameStart,
      ps: ps - frameStart,
    });
  }

  /** Checks the hello's credentials; frames after it wait, reading is paused. */
  private authenticate(text: string): void {
    const conn = this.conn;
    const auth = this.core.auth;
    let token: unknown;
    try {
      const hello = JSON.parse(text) as Record<string, unknown>;
      if (hello['v'] !== 1) throw new Error('version');
      token = hello['token'];
    } catch {
      throw new ProtocolError(ErrorCode.PROTOCOL, CloseCode.PROTOCOL_ERROR, 'hello must be a JSON object with "v": 1');
    }
    this.held = [];
    conn.socket.pause();
    const credential = typeof token === 'string' ? token : undefined;
    const verdict =
      auth === undefined
        ? Promise.resolve({ ok: true as const, identity: conn.identity ?? 'anonymous', anonymous: true })
        : auth.authenticate(credential);
    verdict.then(
      (result) => {
        if (!conn.open) return;
        if (!result.ok) {
          conn.close(CloseCode.POLICY_VIOLATION, 'unauthorized', 'auth');
          return;
        }
        if (!result.anonymous) conn.identity = result.identity;
        this.awaitingHello = false;
        conn.helloDeadline = 0;
        const held = this.held ?? [];
        this.held = undefined;
        this.heldBytes = 0;
        this.begin();
        try {
          conn.write(this.helloReply());
          for (const f of held) this.onV1Frame(f.opcode, f.buf, 0, f.hs, f.he, f.ps, f.buf.length);
        } catch (err) {
          this.end();
          conn.fail(err);
          return;
        }
        this.end();
        if (conn.stalledSince === 0 && !conn.throttled) conn.socket.resume();
      },
      (err: unknown) => conn.fail(err),
    );
  }

  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void {
    this.flush();
    const h = header === undefined ? undefined : Buffer.from(JSON.stringify(header), 'utf8');
    this.conn.write(encodeFrame(kind === 'text' ? V1Opcode.TEXT : V1Opcode.BINARY, data, h));
  }

  ping(): void {
    if (!this.closeSent) this.conn.write(PING);
  }

  close(code: number, reason: string): void {
    this.flush();
    if (!this.closeSent) {
      this.closeSent = true;
      this.conn.write(encodeClose(code, reason));
    }
    if (code !== 1000 && code !== 1001) {
      this.decoder.stop();
      this.conn.socket.end();
    }
  }
}

/** Bare `len` framing: binary only, no header, no control frames; errors simply close. */
export class LenProtocol extends SpanEcho implements ProtocolAdapter, FrameSink {
  private readonly decoder: LenDecoder;

  constructor(conn: Connection) {
    super(conn);
    this.decoder = new LenDecoder(conn.core.settings.maxFrameBytes);
  }

  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  onData(chunk: Buffer): void {
    this.begin();
    try {
      this.decoder.push(chunk, this);
    } finally {
      this.end();
    }
  }

  onFrame(buf: Buffer, frameStart: number, bodyStart: number, end: number): void {
    if (!this.conn.open) return;
    this.batchIn++;
    if (channels.message.hasSubscribers && sampleMessage()) this.publish('binary', end - bodyStart, undefined);
    if (this.core.handler !== undefined && this.core.dispatch(this.conn, 'binary', Buffer.from(buf.subarray(bodyStart, end)), undefined))
      return;
    this.echoSpan(buf, frameStart, end);
  }

  send(_kind: MessageKind, data: Buffer): void {
    this.flush();
    this.conn.write(encodeLen(data));
  }

  ping(): void {
    // No control frames in `len`: TCP keepalive (set on the socket) finds dead peers.
  }

  close(): void {
    this.flush();
    this.decoder.stop();
    this.conn.socket.end();
  }
}

/** Raw byte-stream echo (RFC 862 style): every read is written back as it is. */
export class RawProtocol implements ProtocolAdapter {
  readonly bufferedBytes = 0;

  constructor(private readonly conn: Connection) {}

  onData(chunk: Buffer): void {
    if (!this.conn.open) return;
    this.conn.received(1);
    this.conn.write(chunk);
    this.conn.sent(1);
  }

  send(_kind: MessageKind, data: Buffer): void {
    this.conn.write(data);
  }

  ping(): void {}

  close(): void {
    this.conn.socket.end();
  }
}

export type StreamFraming = 'v1' | 'len' | 'raw';

export function makeStreamProtocol(framing: StreamFraming, requireHello = false): (conn: Connection) => ProtocolAdapter {
  switch (framing) {
    case 'v1':
      return (conn) => new V1Protocol(conn, requireHello);
    case 'len':
      return (conn) => new LenProtocol(conn);
    case 'raw':
      return (conn) => new RawProtocol(conn);
  }
}

/**
 * Refuses a stream connection over the limit or while draining: v1 gets a close frame
 * (1013 / 1001) first; `len` and raw simply close.
 */
export function refuseStream(socket: Duplex, framing: StreamFraming, code: number, reason: string): void {
  socket.on('error', noop);
  if (framing === 'v1') {
    socket.end(encodeClose(code, reason));
    // Read (and drop) whatever the peer sends until it closes: a paused socket whose peer
    // answers the close frame would never see the end and never close.
    socket.resume();
  } else socket.destroy();
}

function noop(): void {}
