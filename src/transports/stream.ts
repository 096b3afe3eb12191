/**
 * Stream transports: framing v1 and the bare `len` framing over any Duplex (TCP, TLS, Unix
 * sockets, in-process pairs), and the raw byte echo. They only decode and encode: the core
 * runs each message through its pipeline (`core.message`), and header-less frames are echoed
 * by writing back the validated span of the read buffer through the connection's batch
 * writer, so consecutive frames of one read make one write.
 */
import { CloseCode, ErrorCode, malformed, ProtocolError } from '../errors.js';
import type { Connection, ProtocolAdapter } from '../core/connection.js';
import { Pause } from '../core/connection.js';
import type { EchoCore } from '../core/core.js';
import { authProtocolError } from '../security/auth.js';
import type { MessageKind } from '../core/types.js';
import { parseHeader, type MetadataHeader } from '../protocol/header.js';
import { encodeLen, LenDecoder } from '../protocol/len.js';
import type { FrameSink } from '../protocol/length-prefix.js';
import { decodeClose, encodeClose, encodeFrame, V1Decoder, V1Opcode, type V1FrameHandler } from '../protocol/v1.js';

const PING = encodeFrame(V1Opcode.PING, Buffer.alloc(0));
const EMPTY_CLOSE = encodeFrame(V1Opcode.CLOSE, Buffer.alloc(0));

/** Largest `hello` body accepted before authentication (its JSON carries a token or a JWT). */
export const MAX_HELLO_BYTES = 8 * 1024;

/** A frame held while the hello is being authenticated. */
interface HeldFrame {
  readonly opcode: V1Opcode;
  readonly buf: Buffer;
  readonly hs: number;
  readonly he: number;
  readonly ps: number;
}

const HELLO_REQUIRED = (): ProtocolError => new ProtocolError(ErrorCode.AUTH, CloseCode.POLICY_VIOLATION, 'hello required');

/** Before authentication only a `hello` (or a close) may come, at most MAX_HELLO_BYTES. */
const PRE_AUTH = {
  maxBody: MAX_HELLO_BYTES,
  kind(opcode: number): void {
    if (opcode !== V1Opcode.HELLO && opcode !== V1Opcode.CLOSE) throw HELLO_REQUIRED();
  },
};

/** Framing v1 (docs/PROTOCOL.md). */
export class V1Protocol implements ProtocolAdapter, V1FrameHandler {
  readonly canPing = true;
  /** Held frames, partial frames and echoes the kernel did not take are copies. */
  readonly copiesChunks = true;
  private readonly decoder: V1Decoder;
  private readonly core: EchoCore;
  private closeSent = false;
  /** Authentication on: the hello must come first (`held` collects frames while it is checked). */
  private awaitingHello: boolean;
  private held: HeldFrame[] | undefined = undefined;
  private heldBytes = 0;

  constructor(
    private readonly conn: Connection,
    requireHello = false,
  ) {
    this.core = conn.host as EchoCore;
    this.decoder = new V1Decoder(this, this.core.settings);
    this.awaitingHello = requireHello;
    if (requireHello) {
      this.decoder.restrict(PRE_AUTH);
      conn.helloDeadline = this.core.clock.now() + this.core.settings.handshakeTimeoutMs;
    }
  }

  get bufferedBytes(): number {
    return this.decoder.bufferedBytes + this.heldBytes;
  }

  onData(chunk: Buffer): void {
    this.decoder.push(chunk);
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
    const out = conn.out;
    // A hello is being checked (the first one, or a refresh): later frames wait for the verdict.
    if (this.held !== undefined) return this.hold(opcode, buf, frameStart, headerStart, headerEnd, payloadStart, end);
    if (this.awaitingHello) {
      if (opcode === V1Opcode.HELLO) return this.authenticate(buf.toString('utf8', payloadStart, end));
      if (opcode !== V1Opcode.CLOSE) throw HELLO_REQUIRED();
    }
    switch (opcode) {
      case V1Opcode.TEXT:
      case V1Opcode.BINARY: {
        const kind: MessageKind = opcode === V1Opcode.TEXT ? 'text' : 'binary';
        const header = headerStart >= 0 ? parseHeader(buf, headerStart, headerEnd) : undefined;
        if (!this.core.message(conn, kind, buf, payloadStart, end, header)) return;
        if (header === undefined) return out.region(buf, frameStart, end);
        out.write(encodeFrame(opcode, buf.subarray(payloadStart, end), this.core.stamp(conn, header)));
        return;
      }
      case V1Opcode.PING:
        out.controls++;
        if (this.closeSent) return;
        out.write(encodeFrame(V1Opcode.PONG, buf.subarray(payloadStart, end)));
        return;
      case V1Opcode.PONG:
        return;
      case V1Opcode.HELLO:
        if (!conn.open) return;
        // With authentication on, a later hello carrying a token refreshes the credential
        // (a JWT connection is closed when its token expires).
        if (this.core.auth !== undefined) return this.authenticate(buf.toString('utf8', payloadStart, end), true);
        out.write(this.helloReply());
        return;
      case V1Opcode.CLOSE: {
        const { code, reason } = decodeClose(buf, payloadStart, end);
        out.flush();
        this.decoder.stop();
        if (!this.closeSent) {
          this.closeSent = true;
          out.write(code === CloseCode.NO_STATUS ? EMPTY_CLOSE : encodeClose(code, reason));
        }
        conn.finish(code, reason);
        return;
      }
    }
  }

  private helloReply(): Buffer {
    const conn = this.conn;
    return encodeFrame(V1Opcode.HELLO, this.core.helloReply(conn));
  }

  /** Keeps a copy of a frame that arrived while the hello is being checked (bounded). */
  private hold(opcode: V1Opcode, buf: Buffer, frameStart: number, hs: number, he: number, ps: number, end: number): void {
    this.heldBytes += end - frameStart;
    // Reading is paused while authenticating: only the rest of the read that carried the
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

  /**
   * Checks the hello's credentials; frames after it wait, reading is paused. `refresh`: a hello
   * after the first one; without a token it is simply answered, with one it must verify and
   * name the same identity, and its expiry replaces the connection's.
   */
  private authenticate(text: string, refresh = false): void {
    const conn = this.conn;
    const core = this.core;
    const auth = core.auth;
    let token: unknown;
    try {
      const hello = JSON.parse(text) as Record<string, unknown>;
      if (hello['v'] !== 1) throw new Error('version');
      token = hello['token'];
    } catch {
      throw malformed('hello must be a JSON object with "v": 1');
    }
    if (refresh && token === undefined) {
      conn.out.write(this.helloReply());
      return;
    }
    this.held = [];
    // The frames after the hello may be anything its client may send.
    this.decoder.restrict(undefined);
    conn.pause(Pause.AUTH);
    const credential = typeof token === 'string' ? token : undefined;
    const verdict =
      auth === undefined
        ? Promise.resolve({ ok: true as const, identity: conn.identity ?? 'anonymous', anonymous: true })
        : auth.authenticate(credential);
    verdict.then(
      (result) => {
        if (!conn.open) return;
        if (!result.ok) {
          const e = authProtocolError();
          conn.close(e.closeCode, e.message, 'auth');
          conn.closeDetail = `unauthorized: ${result.detail}`; // logs only: the wire says 'unauthorized'
          // Reading was paused for the check: resume it (the decoder is stopped, input is
          // dropped) so the peer's end is seen now, not at the closing-handshake deadline.
          conn.resume(Pause.AUTH);
          return;
        }
        if (refresh && !result.anonymous && result.identity !== conn.identity) {
          conn.close(CloseCode.POLICY_VIOLATION, 'identity changed', 'auth');
          conn.resume(Pause.AUTH);
          return;
        }
        if (!result.anonymous && !refresh) {
          conn.identity = result.identity;
          if ('claims' in result && result.claims !== undefined && core.describe !== undefined)
            core.whoamiContext.set(conn, { claims: result.claims });
          // Per-client limits follow the identity from now on, as for a WebSocket.
          if (!core.moveLease(conn, result.identity)) {
            core.reject(conn.transport, 'limit', conn.peer, 'per-client connection limit');
            conn.close(CloseCode.TRY_AGAIN_LATER, 'too many connections from this client', 'limit');
            conn.resume(Pause.AUTH);
            return;
          }
        }
        conn.authDeadline = 'validUntil' in result ? (result.validUntil ?? 0) : 0;
        this.awaitingHello = false;
        conn.helloDeadline = 0;
        const held = this.held ?? [];
        this.held = undefined;
        this.heldBytes = 0;
        const out = conn.out;
        out.begin();
        try {
          out.write(this.helloReply());
          for (const f of held) this.onV1Frame(f.opcode, f.buf, 0, f.hs, f.he, f.ps, f.buf.length);
        } catch (err) {
          out.finish();
          conn.fail(err);
          return;
        }
        out.finish();
        conn.resume(Pause.AUTH);
      },
      (err: unknown) => conn.fail(err),
    );
  }

  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void {
    const h = header === undefined ? undefined : Buffer.from(JSON.stringify(header), 'utf8');
    this.conn.out.write(encodeFrame(kind === 'text' ? V1Opcode.TEXT : V1Opcode.BINARY, data, h));
  }

  ping(): void {
    if (!this.closeSent) this.conn.out.write(PING);
  }

  close(code: number, reason: string): void {
    const out = this.conn.out;
    if (!this.closeSent) {
      this.closeSent = true;
      out.write(encodeClose(code, reason));
    } else out.flush();
    if (code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY) {
      this.decoder.stop();
      this.conn.socket.end();
    }
  }
}

/** Bare `len` framing: binary only, no header, no control frames; errors simply close. */
export class LenProtocol implements ProtocolAdapter, FrameSink {
  /** No control frames: TCP keepalive (set on the socket) finds dead peers. */
  readonly canPing = false;
  readonly copiesChunks = true;
  private readonly decoder: LenDecoder;
  private readonly core: EchoCore;

  constructor(private readonly conn: Connection) {
    this.core = conn.host as EchoCore;
    this.decoder = new LenDecoder(this.core.settings.maxFrameBytes);
  }

  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  onData(chunk: Buffer): void {
    this.decoder.push(chunk, this);
  }

  onFrame(buf: Buffer, frameStart: number, bodyStart: number, end: number): void {
    if (this.core.message(this.conn, 'binary', buf, bodyStart, end, undefined)) this.conn.out.region(buf, frameStart, end);
  }

  send(_kind: MessageKind, data: Buffer): void {
    this.conn.out.write(encodeLen(data));
  }

  ping(): void {}

  close(): void {
    this.conn.out.flush();
    this.decoder.stop();
    this.conn.socket.end();
  }
}

/** Raw byte-stream echo (RFC 862 style): every read is written back as it is. */
export class RawProtocol implements ProtocolAdapter {
  readonly bufferedBytes = 0;
  readonly canPing = false;
  readonly copiesChunks = true;
  private readonly core: EchoCore;

  constructor(private readonly conn: Connection) {
    this.core = conn.host as EchoCore;
  }

  onData(chunk: Buffer): void {
    if (this.core.message(this.conn, 'binary', chunk, 0, chunk.length, undefined)) this.conn.out.region(chunk, 0, chunk.length);
  }

  send(_kind: MessageKind, data: Buffer): void {
    this.conn.out.write(data);
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

/** The bytes a refused stream gets before it is closed: a v1 close frame; `len` and raw get none. */
export function refusalBytes(framing: StreamFraming, code: number, reason: string): Buffer | undefined {
  return framing === 'v1' ? encodeClose(code, reason) : undefined;
}
