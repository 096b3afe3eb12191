/**
 * WebSocket transport: the upgrade (on our own HTTP listener or an application's), then our
 * own echo path over `WsReceiver`. Echoes of all frames of one read are written into the read
 * buffer itself, behind the parse position (a server frame is always 4 bytes shorter than the
 * masked client frame it answers), and sent with one write: no allocation, one syscall.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCode, HttpError, ProtocolError, ErrorCode } from '../errors.js';
import { Pause, type Connection, type ProtocolAdapter } from '../core/connection.js';
import { clientKeyOf, destroySoon, type EchoCore } from '../core/core.js';
import { injectionHttpError, type ConnectionInjection } from '../core/injection.js';
import type { MessageKind } from '../core/types.js';
import { parseHeader, type MetadataHeader } from '../protocol/header.js';
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

/** Buffers idle in the pool now (at most POOL_MAX; the detailed /info reports it). */
export function pooledBuffers(): number {
  return pool.length;
}
const EMPTY = Buffer.alloc(0);
/** parseBody's result for `echo.v1` messages, reused (parsing is synchronous). */
const V1_PARTS = newBodyParts();

export class WsProtocol implements ProtocolAdapter, WsReceiverHandler {
  readonly canPing = true;
  /** Partial headers, fragments and control payloads are copies; echoes are written in the read. */
  readonly copiesChunks = true;
  private readonly receiver: WsReceiver;
  private readonly core: EchoCore;
  private closeSent = false;

  constructor(
    private readonly conn: Connection,
    /** `echo.v1`: every message is a binary message carrying a v1 body. */
    private readonly v1: boolean,
  ) {
    this.core = conn.host as EchoCore;
    this.receiver = new WsReceiver(this, { maxMessageBytes: this.core.settings.maxFrameBytes, allocate });
  }

  get bufferedBytes(): number {
    return this.receiver.bufferedBytes;
  }

  onData(chunk: Buffer): void {
    this.receiver.push(chunk);
  }

  onMessage(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    if (this.v1) return this.onV1Message(opcode, buf, start, end, inPlace);
    const kind: MessageKind = opcode === WsOpcode.TEXT ? 'text' : 'binary';
    if (this.core.message(this.conn, kind, buf, start, end, undefined)) this.echo(opcode, buf, start, end, inPlace);
  }

  /**
   * Echo: same opcode, byte-identical payload, one frame. In place, the echo is written into
   * the read buffer behind the parse position (a server frame is 4 bytes shorter than the
   * masked client frame it answers) and joins the batch's one write.
   */
  private echo(opcode: number, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    const len = end - start;
    const out = this.conn.out;
    if (inPlace) {
      const at = out.nextOffset(buf);
      const h = writeHeader(buf, at, opcode, len);
      // copyWithin: a memmove with no allocation (Buffer.copy allocates a view per call).
      if (at + h !== start) buf.copyWithin(at + h, start, end);
      out.region(buf, at, at + h + len);
    } else {
      // A message collected across reads: its buffer has header room in front.
      const h = headerSize(len);
      writeHeader(buf, start - h, opcode, len);
      // A pooled buffer goes back to the pool once the kernel has the bytes.
      out.write(buf.subarray(start - h, end), pooled.has(buf) ? () => release(buf) : undefined);
    }
  }

  private onV1Message(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    if (opcode !== WsOpcode.BINARY)
      throw new ProtocolError(ErrorCode.PROTOCOL, CloseCode.UNSUPPORTED_DATA, 'echo.v1 messages must be binary');
    const conn = this.conn;
    const limits: V1Limits = this.core.settings;
    // Copied out at once: V1_PARTS is shared by every connection.
    const { opcode: op, headerStart, headerEnd, payloadStart } = parseBody(buf, start, end, limits, V1_PARTS);
    switch (op) {
      case V1Opcode.TEXT:
      case V1Opcode.BINARY: {
        const kind: MessageKind = op === V1Opcode.TEXT ? 'text' : 'binary';
        const header = headerStart >= 0 ? parseHeader(buf, headerStart, headerEnd) : undefined;
        if (!this.core.message(conn, kind, buf, payloadStart, end, header)) return;
        if (header === undefined) return this.echo(WsOpcode.BINARY, buf, start, end, inPlace);
        this.sendBody(encodeBody(op, buf.subarray(payloadStart, end), this.core.stamp(conn, header)));
        return;
      }
      case V1Opcode.PING:
        conn.out.controls++;
        if (this.closeSent) return;
        this.sendBody(encodeBody(V1Opcode.PONG, buf.subarray(payloadStart, end)));
        return;
      case V1Opcode.HELLO: {
        if (!conn.open) return;
        // With authentication on, a hello carrying a token refreshes the credential (a JWT
        // connection is closed when its token expires), as on TCP.
        const token = this.core.auth === undefined ? undefined : helloToken(buf.toString('utf8', payloadStart, end));
        if (token !== undefined) return this.refresh(token);
        this.sendBody(this.helloReply());
        return;
      }
      default:
        return; // pong, and close (the WebSocket close frame closes a WebSocket)
    }
  }

  private helloReply(): Buffer {
    return encodeBody(V1Opcode.HELLO, this.core.helloReply(this.conn));
  }

  /**
   * Checks a refresh hello's token: it must verify and name the connection's identity (else
   * close 1008); its expiry replaces the connection's. Reading pauses meanwhile; messages that
   * arrived in the same read are echoed before the reply.
   */
  private refresh(token: string): void {
    const conn = this.conn;
    const auth = this.core.auth as NonNullable<EchoCore['auth']>;
    conn.pause(Pause.AUTH);
    auth.authenticate(token).then(
      (result) => {
        if (!conn.open) return;
        if (!result.ok) {
          conn.close(CloseCode.POLICY_VIOLATION, 'unauthorized', 'auth');
          conn.closeDetail = `unauthorized: ${result.detail}`; // logs only: the wire says 'unauthorized'
        } else if (!result.anonymous && result.identity !== conn.identity) {
          conn.close(CloseCode.POLICY_VIOLATION, 'identity changed', 'auth');
        } else {
          conn.authDeadline = result.validUntil ?? 0;
          const out = conn.out;
          out.begin();
          this.sendBody(this.helloReply());
          out.finish();
        }
        conn.resume(Pause.AUTH);
      },
      (err: unknown) => conn.fail(err),
    );
  }

  private sendBody(body: Buffer): void {
    this.conn.out.write(frame(WsOpcode.BINARY, body));
  }

  send(kind: MessageKind, data: Buffer, header?: MetadataHeader): void {
    if (this.v1) {
      const h = header === undefined ? undefined : Buffer.from(JSON.stringify(header), 'utf8');
      this.sendBody(encodeBody(kind === 'text' ? V1Opcode.TEXT : V1Opcode.BINARY, data, h));
      return;
    }
    this.conn.out.write(frame(kind === 'text' ? WsOpcode.TEXT : WsOpcode.BINARY, data));
  }

  ping(): void {
    if (!this.closeSent) this.conn.out.write(PING_FRAME);
  }

  close(code: number, reason: string): void {
    const out = this.conn.out;
    if (!this.closeSent) {
      this.closeSent = true;
      out.write(frame(WsOpcode.CLOSE, encodeClosePayload(code, reason)));
    } else out.flush();
    // Failing the connection (protocol error): no need to wait for the peer's answer.
    if (code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY) {
      this.receiver.stop();
      this.conn.socket.end();
    }
  }

  onPing(payload: Buffer): void {
    this.conn.out.controls++;
    if (this.closeSent) return;
    this.conn.out.write(frame(WsOpcode.PONG, payload));
  }

  onPong(): void {
    // Activity is recorded per read; nothing else to do.
  }

  onClose(code: number, reason: string): void {
    const out = this.conn.out;
    if (!this.closeSent) {
      // Answer with the same code (§5.5.1); 1005 means the peer sent none, so neither do we.
      this.closeSent = true;
      out.write(frame(WsOpcode.CLOSE, code === CloseCode.NO_STATUS ? EMPTY : encodeClosePayload(code, reason)));
    } else out.flush();
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
   * identity (or undefined, or the identity with its verified JWT claims), or throw an
   * HttpError to refuse.
   */
  readonly admit?: ((req: IncomingMessage) => Promise<Admission> | Admission) | undefined;
}

/**
 * What an admission check resolves to: the identity, optionally with its JWT claims (for whoami)
 * and when its credential expires (epoch ms; the connection is closed then).
 */
export type Admission =
  | string
  | undefined
  | {
      readonly identity: string | undefined;
      readonly claims?: Readonly<Record<string, unknown>>;
      readonly validUntil?: number | undefined;
    };

export function peerOf(socket: Duplex & { remoteAddress?: string; remotePort?: number }): string {
  const a = socket.remoteAddress;
  if (a === undefined) return 'unknown';
  return a.includes(':') ? `[${a}]:${socket.remotePort ?? 0}` : `${a}:${socket.remotePort ?? 0}`;
}

function refuse(socket: Duplex, status: number, message: string, extra: readonly string[] = []): void {
  destroySoon(socket, httpErrorResponse(status, message, extra));
}

/**
 * Handles an HTTP upgrade request. Returns false when the path is not ours and the listener
 * is not exclusive (someone else may take it).
 */
export function handleUpgrade(core: EchoCore, opts: WsUpgradeOptions, req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const remote = (socket as Duplex & { remoteAddress?: string }).remoteAddress;
  const peer = peerOf(socket as Duplex & { remoteAddress?: string });
  if (!opts.paths.includes(path)) {
    if (!opts.exclusive) return false;
    // http has removed its own listeners from an upgraded socket: without this, a peer that
    // resets before the 404 is written crashes the process (unhandled 'error', ECONNRESET).
    socket.on('error', noop);
    refuse(socket, 404, `no WebSocket endpoint at ${path}`);
    return true;
  }
  socket.on('error', noop); // until the connection owns the socket
  let verdict;
  try {
    verdict = validateUpgrade(req);
  } catch (err) {
    const e = err as HttpError;
    core.reject('ws', 'handshake', peer, e.message);
    refuse(socket, e.status ?? 400, e.message, e.status === 426 ? ['Sec-WebSocket-Version: 13'] : []);
    return true;
  }
  // Latency and fault injection asked for on the URL: refused before the upgrade (400 / 403).
  let injection: ConnectionInjection | undefined;
  if (q !== -1) {
    const parsed = core.parseUrlInjection(url);
    if (!parsed.ok) {
      const e = injectionHttpError(parsed);
      core.reject('ws', 'policy', peer, e.message);
      refuse(socket, e.status, e.message);
      return true;
    }
    if (!parsed.empty) injection = parsed.value;
  }
  const accept = (admission: Admission): void => {
    if (socket.destroyed) return;
    const identity = typeof admission === 'object' ? admission.identity : admission;
    const admitted = core.admit('ws', peer, clientKeyOf('ws', identity, remote));
    if ('reason' in admitted) {
      refuse(socket, 503, admitted.message, ['Retry-After: 1']);
      return;
    }
    socket.removeListener('error', noop);
    const s = socket as Duplex & { setNoDelay?: (v: boolean) => void; setTimeout?: (ms: number) => void };
    s.setTimeout?.(0);
    s.setNoDelay?.(true);
    socket.write(upgradeResponse(verdict));
    if (head.length > 0) socket.unshift(head);
    const v1 = verdict.protocol === SUBPROTOCOL_V1;
    const conn = core.accept(socket, 'ws', peer, (c) => new WsProtocol(c, v1), admitted, identity);
    if (conn === undefined) return;
    // echo.v1 has a hello, whose reply carries the whoami view: keep what the socket cannot tell.
    if (v1 && core.describe !== undefined)
      core.whoamiContext.set(conn, { request: req, claims: typeof admission === 'object' ? admission.claims : undefined });
    if (injection !== undefined) core.applyUrlInjection(conn, injection);
    // A JWT connection is closed when its token expires (the core's sweep).
    if (typeof admission === 'object') conn.authDeadline = admission.validUntil ?? 0;
  };
  const admit = opts.admit;
  if (admit === undefined) {
    accept(undefined);
    return true;
  }
  // Authentication may take a while (JWKS): the upgrade holds a place under the limit meanwhile.
  const refusal = core.reserve('ws', peer);
  if (refusal !== undefined) {
    refuse(socket, 503, refusal.message, ['Retry-After: 1']);
    return true;
  }
  Promise.resolve()
    .then(() => admit(req))
    .then(
      (admission) => {
        core.unreserve();
        accept(admission);
      },
      (err: unknown) => {
        core.unreserve();
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof HttpError ? err.message : 'internal error';
        // An auth refusal carries its cause for the log (never the credential); the wire gets `message`.
        const detail = (err as { logDetail?: unknown }).logDetail;
        core.reject(
          'ws',
          status === 401 ? 'auth' : status === 403 ? 'policy' : 'handshake',
          peer,
          typeof detail === 'string' ? detail : message,
        );
        refuse(socket, status, message, status === 401 ? ['WWW-Authenticate: Bearer'] : []);
      },
    );
  return true;
}

function noop(): void {}

/** The `token` of an echo.v1 hello payload, if it is a JSON object with a string token. */
function helloToken(text: string): string | undefined {
  try {
    const hello = JSON.parse(text) as unknown;
    const token = hello !== null && typeof hello === 'object' ? (hello as Record<string, unknown>)['token'] : undefined;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}
