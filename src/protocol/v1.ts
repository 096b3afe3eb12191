/**
 * Framing v1 (docs/PROTOCOL.md): `length:u32be body`, body = `kind:u8 [hlen:u16be header] payload`.
 * Opcodes follow RFC 6455. Pure codec: bytes in, validated frames out; bytes out from values.
 */
import { CloseCode, invalidUtf8, malformed, tooBig } from '../errors.js';
import { LengthPrefixSplitter, type FrameSink } from './length-prefix.js';
import { isUtf8 } from './utf8.js';
import { isValidCloseCode, truncateUtf8 } from './ws-frame.js';

export const V1Opcode = {
  TEXT: 0x1,
  BINARY: 0x2,
  HELLO: 0x3,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;
export type V1Opcode = (typeof V1Opcode)[keyof typeof V1Opcode];

/** Kind flag: a metadata header follows the kind byte (text and binary only). */
export const FLAG_HEADER = 0x80;

export interface V1Limits {
  /** Largest body (kind byte included), bytes. */
  readonly maxFrameBytes: number;
  /** Largest metadata header, bytes. */
  readonly maxHeaderBytes: number;
}

/** A decoded frame, as offsets into `buf` (valid only during the callback). */
export interface V1FrameHandler {
  /**
   * `buf[frameStart, end)` is the whole frame as received (length prefix included), so a
   * header-less echo can send it back byte for byte. `headerStart === -1` when no header.
   */
  onV1Frame(
    opcode: V1Opcode,
    buf: Buffer,
    frameStart: number,
    headerStart: number,
    headerEnd: number,
    payloadStart: number,
    end: number,
  ): void;
}

/** The parts of a v1 body, as offsets into its buffer (`headerStart === -1`: no header). */
export interface V1BodyParts {
  opcode: V1Opcode;
  headerStart: number;
  headerEnd: number;
  payloadStart: number;
}

/** A fresh {@link V1BodyParts} for parseBody to fill (hot paths keep one and reuse it). */
export function newBodyParts(): V1BodyParts {
  return { opcode: V1Opcode.BINARY, headerStart: -1, headerEnd: -1, payloadStart: 0 };
}

/**
 * Validates one body (`buf[bodyStart, end)`) and returns its parts; throws ProtocolError.
 * Also used by the WebSocket `echo.v1` subprotocol, whose messages are bodies. The hot paths
 * pass their own `out` to fill, so that decoding allocates nothing per frame.
 */
export function parseBody(buf: Buffer, bodyStart: number, end: number, limits: V1Limits, out: V1BodyParts = newBodyParts()): V1BodyParts {
  if (end - bodyStart < 1) throw malformed('empty frame');
  const kind = buf[bodyStart] as number;
  const opcode = kind & 0x0f;
  const flags = kind & 0xf0;
  let headerStart = -1;
  let headerEnd = -1;
  let payloadStart = bodyStart + 1;
  if (flags !== 0) {
    if (flags !== FLAG_HEADER) throw malformed(`unknown flags 0x${flags.toString(16)}`);
    if (opcode !== V1Opcode.TEXT && opcode !== V1Opcode.BINARY) throw malformed('header flag on a control frame');
    if (end - payloadStart < 2) throw malformed('truncated header length');
    const hlen = buf.readUInt16BE(payloadStart);
    if (hlen > limits.maxHeaderBytes) throw tooBig(`header of ${hlen} bytes exceeds the limit of ${limits.maxHeaderBytes}`);
    headerStart = payloadStart + 2;
    headerEnd = headerStart + hlen;
    if (headerEnd > end) throw malformed('header longer than the frame');
    payloadStart = headerEnd;
  }
  if ((opcode === V1Opcode.CLOSE || opcode === V1Opcode.PING || opcode === V1Opcode.PONG) && end - payloadStart > MAX_CONTROL_PAYLOAD)
    throw malformed(`control frame payload over ${MAX_CONTROL_PAYLOAD} bytes`);
  switch (opcode) {
    case V1Opcode.TEXT:
      if (!isUtf8(buf.subarray(payloadStart, end))) throw invalidUtf8();
      break;
    case V1Opcode.BINARY:
    case V1Opcode.PING:
    case V1Opcode.PONG:
      break;
    case V1Opcode.HELLO:
      if (!isUtf8(buf.subarray(payloadStart, end))) throw invalidUtf8('hello is not UTF-8');
      break;
    case V1Opcode.CLOSE: {
      const n = end - payloadStart;
      if (n === 1) throw malformed('close frame with a 1-byte payload');
      if (n >= 2) {
        const code = buf.readUInt16BE(payloadStart);
        if (!isValidCloseCode(code)) throw malformed(`invalid close code ${code}`);
        if (!isUtf8(buf.subarray(payloadStart + 2, end))) throw invalidUtf8('invalid UTF-8 in close reason');
      }
      break;
    }
    default:
      throw malformed(`unknown opcode 0x${opcode.toString(16)}`);
  }
  out.opcode = opcode as V1Opcode;
  out.headerStart = headerStart;
  out.headerEnd = headerEnd;
  out.payloadStart = payloadStart;
  return out;
}

/**
 * parseBody's result for every V1Decoder, reused: it is read only to pass its fields to the
 * handler, before any other frame can be parsed.
 */
const DECODER_PARTS = newBodyParts();

/** Incremental decoder: `push(chunk)` calls the handler for every complete, valid frame. */
/** Largest payload of a control frame (ping, pong, close), as in WebSocket (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/** Control frames carry at most 125 payload bytes: refused at the kind byte, before buffering. */
function checkControlLength(firstByte: number, bodyLength: number): void {
  const op = firstByte & 0x0f;
  if ((op === V1Opcode.PING || op === V1Opcode.PONG || op === V1Opcode.CLOSE) && bodyLength - 1 > MAX_CONTROL_PAYLOAD)
    throw malformed(`control frame payload over ${MAX_CONTROL_PAYLOAD} bytes`);
}

export class V1Decoder implements FrameSink {
  private readonly splitter: LengthPrefixSplitter;

  constructor(
    private readonly handler: V1FrameHandler,
    private readonly limits: V1Limits,
  ) {
    this.splitter = new LengthPrefixSplitter(limits.maxFrameBytes, 1);
    this.splitter.firstByteCheck = checkControlLength;
  }

  get bufferedBytes(): number {
    return this.splitter.bufferedBytes;
  }

  stop(): void {
    this.splitter.stop();
  }

  /**
   * Narrows what the next frames may be (before authentication: only a small `hello`), checked
   * at the length and the kind byte, before any body is buffered; `undefined` restores the limits.
   */
  restrict(restriction: { maxBody: number; kind: (opcode: number, bodyLength: number) => void } | undefined): void {
    const s = this.splitter;
    if (restriction === undefined) {
      s.maxBody = this.limits.maxFrameBytes;
      s.firstByteCheck = checkControlLength;
    } else {
      s.maxBody = Math.min(restriction.maxBody, this.limits.maxFrameBytes);
      const kind = restriction.kind;
      s.firstByteCheck = (b, len) => {
        checkControlLength(b, len);
        kind(b & 0x0f, len);
      };
    }
  }

  push(chunk: Buffer): void {
    this.splitter.push(chunk, this);
  }

  onFrame(buf: Buffer, frameStart: number, bodyStart: number, end: number): void {
    let p;
    try {
      p = parseBody(buf, bodyStart, end, this.limits, DECODER_PARTS);
    } catch (err) {
      this.splitter.stop();
      throw err;
    }
    this.handler.onV1Frame(p.opcode, buf, frameStart, p.headerStart, p.headerEnd, p.payloadStart, end);
  }
}

/** Size of the encoded body for a payload and an (already encoded) header. */
export function bodySize(payloadLength: number, headerLength = -1): number {
  return 1 + (headerLength >= 0 ? 2 + headerLength : 0) + payloadLength;
}

/**
 * Writes a body at `out[at]`: kind, optional header (UTF-8 JSON bytes), payload. Returns the
 * end offset.
 */
export function writeBody(out: Buffer, at: number, opcode: V1Opcode, payload: Uint8Array, header?: Uint8Array): number {
  let p = at;
  out[p++] = opcode | (header !== undefined ? FLAG_HEADER : 0);
  if (header !== undefined) {
    out.writeUInt16BE(header.length, p);
    p += 2;
    out.set(header, p);
    p += header.length;
  }
  out.set(payload, p);
  return p + payload.length;
}

/** Encodes a body (no length prefix): the data of one `echo.v1` WebSocket message. */
export function encodeBody(opcode: V1Opcode, payload: Uint8Array, header?: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(bodySize(payload.length, header?.length ?? -1));
  writeBody(out, 0, opcode, payload, header);
  return out;
}

/** Encodes a whole frame: length prefix + body. */
export function encodeFrame(opcode: V1Opcode, payload: Uint8Array, header?: Uint8Array): Buffer {
  const size = bodySize(payload.length, header?.length ?? -1);
  const out = Buffer.allocUnsafe(4 + size);
  out.writeUInt32BE(size, 0);
  writeBody(out, 4, opcode, payload, header);
  return out;
}

/** Close frame payload: code (u16be) + UTF-8 reason (at most 123 bytes, as on WebSocket). */
export function encodeClose(code: number, reason = ''): Buffer {
  const r = truncateUtf8(Buffer.from(reason, 'utf8'), 123);
  const payload = Buffer.allocUnsafe(2 + r.length);
  payload.writeUInt16BE(code, 0);
  r.copy(payload, 2);
  return encodeFrame(V1Opcode.CLOSE, payload);
}

/** Reads a close payload: `{ code, reason }` (1005 when empty). */
export function decodeClose(buf: Buffer, start: number, end: number): { code: number; reason: string } {
  if (end - start < 2) return { code: CloseCode.NO_STATUS, reason: '' };
  return { code: buf.readUInt16BE(start), reason: buf.toString('utf8', start + 2, end) };
}
