/**
 * WebSocket framing (RFC 6455 §5), server side, sans-I/O: `WsReceiver` is a state machine fed
 * the chunks a socket reads; the encoder functions are pure. Limits are checked the moment a
 * length is known, before any allocation. Extensions are never negotiated, so RSV bits must
 * be zero.
 */
import { CloseCode, invalidUtf8, malformed, tooBig } from '../errors.js';
import { maskCopy, unmaskInPlace } from './mask.js';
import { isUtf8, Utf8Validator } from './utf8.js';

export const WsOpcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;
export type WsOpcode = (typeof WsOpcode)[keyof typeof WsOpcode];
export type WsDataOpcode = typeof WsOpcode.TEXT | typeof WsOpcode.BINARY;

/** Bytes of an unmasked (server) frame header for a payload of `len` bytes. */
export function headerSize(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

/** Writes an unmasked frame header at `buf[at]`; returns its size. */
export function writeHeader(buf: Buffer, at: number, opcode: number, len: number, fin = true): number {
  buf[at] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) {
    buf[at + 1] = len;
    return 2;
  }
  if (len < 65536) {
    buf[at + 1] = 126;
    buf.writeUInt16BE(len, at + 2);
    return 4;
  }
  buf[at + 1] = 127;
  buf.writeUInt32BE(Math.floor(len / 0x100000000), at + 2);
  buf.writeUInt32BE(len >>> 0, at + 6);
  return 10;
}

/**
 * Encodes one frame. Servers send unmasked frames; pass `maskKey` (4 bytes) to encode a
 * client frame (tests and the client codec).
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options: { fin?: boolean; maskKey?: Uint8Array; rsv?: number } = {},
): Buffer {
  const len = payload.length;
  const hs = headerSize(len);
  const maskLen = options.maskKey === undefined ? 0 : 4;
  const out = Buffer.allocUnsafe(hs + maskLen + len);
  writeHeader(out, 0, opcode, len, options.fin ?? true);
  if (options.rsv !== undefined) out[0] = (out[0] as number) | ((options.rsv & 7) << 4);
  if (options.maskKey === undefined) {
    out.set(payload, hs);
  } else {
    out[1] = (out[1] as number) | 0x80;
    out.set(options.maskKey.subarray(0, 4), hs);
    for (let i = 0; i < len; i++) out[hs + 4 + i] = (payload[i] as number) ^ (options.maskKey[i & 3] as number);
  }
  return out;
}

/** The payload of a close frame: code (u16be) + UTF-8 reason, cut to the 123 bytes allowed. */
export function encodeClosePayload(code: number, reason = ''): Buffer {
  if (code === CloseCode.NO_STATUS) return Buffer.alloc(0);
  let r: Buffer = Buffer.from(reason, 'utf8');
  if (r.length > 123) r = truncateUtf8(r, 123);
  const out = Buffer.allocUnsafe(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** Cuts a UTF-8 buffer to at most `max` bytes without splitting a character. */
export function truncateUtf8(buf: Buffer, max: number): Buffer {
  let end = max;
  while (end > 0 && ((buf[end] as number) & 0xc0) === 0x80) end--;
  return buf.subarray(0, end);
}

/** Close codes a peer may send (RFC 6455 §7.4; 1012–1014 registered by IANA since). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

export interface WsReceiverHandler {
  /**
   * A complete data message; its unmasked payload is `buf[start, end)`.
   * `inPlace`: the bytes live in the chunk given to `push()`, and every byte of that chunk
   * before `start - 4 - 2` (the current frame's header) has been consumed: the handler may
   * overwrite bytes below the frame's start (the echo fast path writes echoes there).
   * Otherwise `buf` was allocated for this message and belongs to the handler, with `start`
   * free bytes in front of the payload (room for an outgoing header).
   */
  onMessage(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean, frameStart: number): void;
  onPing(payload: Buffer): void;
  onPong(payload: Buffer): void;
  /** The peer's close frame, validated. `code` is 1005 when the frame carried none. */
  onClose(code: number, reason: string): void;
}

export interface WsLimits {
  /** Largest message (sum of fragments) accepted, in bytes. */
  readonly maxMessageBytes: number;
  /**
   * Allocates the buffer a frame spanning reads is collected into (at least `size` bytes).
   * The echo path passes a pool here. @default Buffer.allocUnsafe
   */
  readonly allocate?: (size: number) => Buffer;
}

const enum State {
  HEADER,
  PAYLOAD,
  CLOSED,
}

/** A payload spanning reads larger than this is collected in a buffer that grows as it arrives. */
const GROW_ABOVE = 256 * 1024;

/** Header room reserved in front of a separately allocated payload (largest server header). */
export const RESERVE = 10;

/**
 * Incremental frame parser. Call `push(chunk)` with each read; it calls the handler for every
 * complete message and control frame, in order, and throws a `ProtocolError` (with the close
 * code to send) on the first violation, after which it ignores further input.
 */
export class WsReceiver {
  private state = State.HEADER;
  /** Unconsumed bytes of an incomplete header. */
  private rest: Buffer | undefined = undefined;
  // Frame whose payload is being collected across reads.
  private target: Buffer | undefined = undefined;
  private targetAt = 0;
  private targetEnd = 0;
  private readonly key = Buffer.allocUnsafe(4);
  private phase = 0;
  private opcode = 0;
  private fin = false;
  // Fragmented message in progress.
  private fragOpcode = 0;
  private fragments: Buffer[] | undefined = undefined;
  private fragBytes = 0;
  private utf8: Utf8Validator | undefined = undefined;
  /** The text payload being collected across reads is validated as it arrives (fail fast). */
  private streamText = false;

  constructor(
    private readonly handler: WsReceiverHandler,
    private readonly limits: WsLimits,
  ) {}

  /** Bytes held for incomplete frames: bounded by one header plus one message. */
  get bufferedBytes(): number {
    return (this.rest?.length ?? 0) + (this.target?.length ?? 0) + this.fragBytes;
  }

  get closed(): boolean {
    return this.state === State.CLOSED;
  }

  /** Stop parsing (after a close frame was sent or received, or an error). */
  stop(): void {
    this.state = State.CLOSED;
    this.rest = this.target = this.fragments = undefined;
    this.fragBytes = 0;
  }

  push(chunk: Buffer): void {
    if (this.state === State.CLOSED) return;
    try {
      this.parse(chunk);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  private parse(chunk: Buffer): void {
    let buf = chunk;
    let pos = 0;
    if (this.state === State.PAYLOAD) {
      pos = this.fill(buf, 0);
      if (this.state === State.PAYLOAD || this.state === State.CLOSED) return;
    } else if (this.rest !== undefined) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    const len = buf.length;
    while (pos < len && this.state === State.HEADER) {
      if (len - pos < 2) break;
      const b0 = buf[pos] as number;
      const b1 = buf[pos + 1] as number;
      if ((b0 & 0x70) !== 0) throw malformed('reserved bits set');
      if ((b1 & 0x80) === 0) throw malformed('client frames must be masked');
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      let plen = b1 & 0x7f;
      let hlen = 6;
      if (opcode >= 0x8) {
        if (opcode > 0xa) throw malformed(`reserved opcode ${opcode}`);
        if (!fin) throw malformed('fragmented control frame');
        if (plen > 125) throw malformed('control frame payload over 125 bytes');
      } else if (opcode > 0x2) {
        throw malformed(`reserved opcode ${opcode}`);
      } else if (opcode === WsOpcode.CONTINUATION) {
        if (this.fragments === undefined) throw malformed('continuation frame without a message');
      } else if (this.fragments !== undefined) {
        throw malformed('new message inside a fragmented message');
      }
      if (plen === 126) {
        if (len - pos < 8) break;
        plen = buf.readUInt16BE(pos + 2);
        hlen = 8;
      } else if (plen === 127) {
        if (len - pos < 14) break;
        const hi = buf.readUInt32BE(pos + 2);
        if (hi > 0x7fffffff) throw malformed('payload length with the most significant bit set');
        if (hi !== 0) throw tooBig();
        plen = buf.readUInt32BE(pos + 6);
        hlen = 14;
      } else if (len - pos < 6) {
        break;
      }
      // Bounds before bytes: the limit is checked before anything is allocated for the frame.
      if (opcode < 0x8 && this.fragBytes + plen > this.limits.maxMessageBytes) throw tooBig();
      const keyAt = pos + hlen - 4;
      const start = pos + hlen;
      const end = start + plen;
      this.opcode = opcode;
      this.fin = fin;
      if (end <= len) {
        if (plen > 0) unmaskInPlace(buf, start, end, buf, keyAt, 0);
        const frameStart = pos;
        pos = end;
        this.frame(buf, start, end, true, frameStart);
      } else {
        // The payload continues in later reads: collect it (unmasked), with header room in
        // front for the echo, into a buffer that grows with what has arrived (a peer that
        // declares 16 MiB and sends 4 holds 4, not 16).
        buf.copy(this.key, 0, keyAt, keyAt + 4);
        this.phase = 0;
        const size = RESERVE + plen;
        this.target = (this.limits.allocate ?? Buffer.allocUnsafe)(
          size <= GROW_ABOVE ? size : Math.min(size, Math.max(GROW_ABOVE, len - start)),
        );
        this.targetAt = RESERVE;
        this.targetEnd = RESERVE + plen;
        this.state = State.PAYLOAD;
        this.streamText = opcode === WsOpcode.TEXT || (opcode === WsOpcode.CONTINUATION && this.fragOpcode === WsOpcode.TEXT);
        if (opcode === WsOpcode.TEXT) {
          this.utf8 ??= new Utf8Validator();
          this.utf8.reset();
        }
        pos = this.fill(buf, start);
      }
    }
    // A copy (at most one frame header): the read buffer may be reused after this read (core/direct-io.ts).
    if (pos < len && this.state === State.HEADER) this.rest = Buffer.from(buf.subarray(pos));
  }

  /** Copies payload bytes from `buf[pos]` into the target; returns the new position. */
  private fill(buf: Buffer, pos: number): number {
    let target = this.target as Buffer;
    const n = Math.min(buf.length - pos, this.targetEnd - this.targetAt);
    if (this.targetAt + n > target.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.targetEnd, Math.max(this.targetAt + n, 2 * target.length)));
      target.copy(grown, 0, 0, this.targetAt);
      this.target = target = grown;
    }
    maskCopy(buf, pos, pos + n, target, this.targetAt, this.key, 0, this.phase);
    if (this.streamText && !(this.utf8 as Utf8Validator).push(target, this.targetAt, this.targetAt + n)) throw invalidUtf8();
    this.targetAt += n;
    this.phase = (this.phase + n) & 3;
    if (this.targetAt === this.targetEnd) {
      this.target = undefined;
      this.state = State.HEADER;
      const validated = this.streamText;
      this.streamText = false;
      this.frame(target, RESERVE, this.targetEnd, false, 0, validated);
    }
    return pos + n;
  }

  /** One complete frame with its payload unmasked at `buf[start, end)`. */
  /** `validated`: a text payload already fed to `this.utf8` while it was collected. */
  private frame(buf: Buffer, start: number, end: number, inPlace: boolean, frameStart: number, validated = false): void {
    const opcode = this.opcode;
    if (opcode >= 0x8) return this.control(opcode, buf, start, end);
    if (opcode !== WsOpcode.CONTINUATION && this.fin) {
      if (opcode === WsOpcode.TEXT) {
        if (validated ? !(this.utf8 as Utf8Validator).complete : !isUtf8(buf.subarray(start, end))) throw invalidUtf8();
      }
      this.handler.onMessage(opcode as WsDataOpcode, buf, start, end, inPlace, frameStart);
      return;
    }
    // Fragmented message: validate text as it arrives (fail fast), keep a copy of each part.
    if (opcode !== WsOpcode.CONTINUATION) {
      this.fragOpcode = opcode;
      this.fragments = [];
      this.fragBytes = 0;
      if (opcode === WsOpcode.TEXT && !validated) {
        this.utf8 ??= new Utf8Validator();
        this.utf8.reset();
      }
    }
    const isText = this.fragOpcode === WsOpcode.TEXT;
    const utf8 = this.utf8 as Utf8Validator;
    if (isText && !validated && !utf8.push(buf, start, end)) throw invalidUtf8();
    const fragments = this.fragments as Buffer[];
    if (end > start) {
      fragments.push(inPlace ? Buffer.from(buf.subarray(start, end)) : buf.subarray(start, end));
      this.fragBytes += end - start;
    }
    if (!this.fin) return;
    if (isText && !utf8.complete) throw invalidUtf8('invalid UTF-8: message ends inside a character');
    const msg = Buffer.allocUnsafe(RESERVE + this.fragBytes);
    let at = RESERVE;
    for (const f of fragments) {
      f.copy(msg, at);
      at += f.length;
    }
    this.fragments = undefined;
    this.fragBytes = 0;
    this.handler.onMessage(this.fragOpcode as WsDataOpcode, msg, RESERVE, at, false, 0);
  }

  private control(opcode: number, buf: Buffer, start: number, end: number): void {
    // Copy: the bytes may be overwritten by in-place echoes once we return.
    const payload = Buffer.from(buf.subarray(start, end));
    if (opcode === WsOpcode.PING) return this.handler.onPing(payload);
    if (opcode === WsOpcode.PONG) return this.handler.onPong(payload);
    // Close (§5.5.1): empty, or a valid code and a UTF-8 reason.
    if (payload.length === 1) throw malformed('close frame with a 1-byte payload');
    let code: number = CloseCode.NO_STATUS;
    let reason = '';
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) throw malformed(`invalid close code ${code}`);
      const r = payload.subarray(2);
      if (!isUtf8(r)) throw invalidUtf8('invalid UTF-8 in close reason');
      reason = r.toString('utf8');
    }
    this.stop();
    this.handler.onClose(code, reason);
  }
}
