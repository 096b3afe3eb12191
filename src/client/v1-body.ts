/**
 * Framing v1 for the client, on Uint8Array only (no Buffer, no node:*), so the browser build can
 * use it: a body codec (what one `echo.v1` WebSocket message carries) and an incremental
 * length-prefix splitter for byte streams. Same rules as src/protocol/v1.ts (docs/PROTOCOL.md
 * §1), checked against the same vectors (test/unit/client-v1-body.test.ts).
 */
import { CloseCode, invalidUtf8 as badUtf8, malformed, tooBig } from '../errors.js';

export const Op = { TEXT: 0x1, BINARY: 0x2, HELLO: 0x3, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Kind flag: a metadata header follows the kind byte (text and binary only). */
const FLAG_HEADER = 0x80;

export interface BodyLimits {
  /** Largest body (kind byte included), bytes. */
  readonly maxFrameBytes: number;
  /** Largest metadata header, bytes. */
  readonly maxHeaderBytes: number;
}

export interface DecodedBody {
  readonly opcode: Op;
  /** The metadata header (text and binary only), when the flag is set. */
  readonly header: Record<string, unknown> | undefined;
  /** A view into the decoded bytes (copy it to keep it past the next push). */
  readonly payload: Uint8Array;
}

const utf8 = new TextEncoder();
// fatal: invalid UTF-8 throws instead of turning into U+FFFD (a text frame must be valid).
const strict = new TextDecoder('utf-8', { fatal: true });

/** Decodes strict UTF-8; throws ProtocolError 1007 on invalid bytes. */
export function decodeUtf8(bytes: Uint8Array, what = 'text payload'): string {
  try {
    return strict.decode(bytes);
  } catch {
    throw badUtf8(`invalid UTF-8 in ${what}`);
  }
}

export function encodeUtf8(text: string): Uint8Array {
  return utf8.encode(text);
}

const validCloseCode = (c: number): boolean =>
  (c >= 1000 && c <= 1014 && c !== 1004 && c !== 1005 && c !== 1006) || (c >= 3000 && c <= 4999);

/** Validates and splits one body; throws ProtocolError (1002, 1007, 1009) like the server. */
export function decodeBody(body: Uint8Array, limits: BodyLimits): DecodedBody {
  if (body.length < 1) throw malformed('empty frame');
  if (body.length > limits.maxFrameBytes) throw tooBig(`frame of ${body.length} bytes exceeds the limit of ${limits.maxFrameBytes}`);
  const kind = body[0] as number;
  const opcode = kind & 0x0f;
  const flags = kind & 0xf0;
  let p = 1;
  let header: Record<string, unknown> | undefined;
  let headerBytes: Uint8Array | undefined;
  if (flags !== 0) {
    if (flags !== FLAG_HEADER) throw malformed(`unknown flags 0x${flags.toString(16)}`);
    if (opcode !== Op.TEXT && opcode !== Op.BINARY) throw malformed('header flag on a control frame');
    if (body.length - p < 2) throw malformed('truncated header length');
    const hlen = ((body[1] as number) << 8) | (body[2] as number);
    if (hlen > limits.maxHeaderBytes) throw tooBig(`header of ${hlen} bytes exceeds the limit of ${limits.maxHeaderBytes}`);
    p = 3 + hlen;
    if (p > body.length) throw malformed('header longer than the frame');
    headerBytes = body.subarray(3, p);
  }
  const payload = body.subarray(p);
  switch (opcode) {
    case Op.TEXT:
      decodeUtf8(payload);
      break;
    case Op.BINARY:
    case Op.PING:
    case Op.PONG:
      break;
    case Op.HELLO:
      decodeUtf8(payload, 'hello');
      break;
    case Op.CLOSE:
      if (payload.length === 1) throw malformed('close frame with a 1-byte payload');
      if (payload.length >= 2) {
        const code = ((payload[0] as number) << 8) | (payload[1] as number);
        if (!validCloseCode(code)) throw malformed(`invalid close code ${code}`);
        decodeUtf8(payload.subarray(2), 'close reason');
      }
      break;
    default:
      throw malformed(`unknown opcode 0x${opcode.toString(16)}`);
  }
  if (headerBytes !== undefined) {
    // Checked after the payload so errors come in the server's order (payload UTF-8 is 1007).
    let text: string;
    try {
      text = strict.decode(headerBytes);
    } catch {
      throw malformed('metadata header is not UTF-8'); // 1002, as the server: a bad header, not bad text
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw malformed('metadata header is not valid JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed('metadata header must be a JSON object');
    header = value as Record<string, unknown>;
  }
  return { opcode: opcode as Op, header, payload };
}

/** Encodes a body (no length prefix). `header` is the UTF-8 JSON bytes, when present. */
export function encodeBody(opcode: Op, payload: Uint8Array, header?: Uint8Array): Uint8Array {
  const h = header === undefined ? 0 : 2 + header.length;
  if (header !== undefined && header.length > 0xffff) throw new RangeError(`header of ${header.length} bytes is over 65535`);
  const out = new Uint8Array(1 + h + payload.length);
  out[0] = opcode | (header !== undefined ? FLAG_HEADER : 0);
  let p = 1;
  if (header !== undefined) {
    out[1] = header.length >>> 8;
    out[2] = header.length & 0xff;
    out.set(header, 3);
    p = 3 + header.length;
  }
  out.set(payload, p);
  return out;
}

/** Prefixes a body with its u32be length: one whole stream frame. */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Close payload: code (u16be) + UTF-8 reason, cut to 123 bytes at a character boundary. */
export function encodeClosePayload(code: number, reason = ''): Uint8Array {
  let r = utf8.encode(reason);
  if (r.length > 123) {
    let n = 123;
    // Step back over continuation bytes (10xxxxxx) so no character is cut in half.
    while (n > 0 && ((r[n] as number) & 0xc0) === 0x80) n--;
    r = r.subarray(0, n);
  }
  const out = new Uint8Array(2 + r.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(r, 2);
  return out;
}

/** Reads a (validated) close payload: `{ code, reason }`, 1005 when empty. */
export function decodeClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length < 2) return { code: CloseCode.NO_STATUS, reason: '' };
  return { code: ((payload[0] as number) << 8) | (payload[1] as number), reason: decodeUtf8(payload.subarray(2)) };
}

/**
 * Splits a byte stream into v1 bodies: `push(chunk)` returns every complete body. The length is
 * checked against the limit as soon as its 4 bytes are in, before buffering the body.
 */
export class FrameSplitter {
  private buf = new Uint8Array(0);

  constructor(private readonly maxFrameBytes: number) {}

  push(chunk: Uint8Array): Uint8Array[] {
    let data: Uint8Array;
    if (this.buf.length === 0) data = chunk;
    else {
      data = new Uint8Array(this.buf.length + chunk.length);
      data.set(this.buf, 0);
      data.set(chunk, this.buf.length);
    }
    const bodies: Uint8Array[] = [];
    let p = 0;
    while (data.length - p >= 4) {
      const len = new DataView(data.buffer, data.byteOffset + p, 4).getUint32(0);
      if (len === 0) throw malformed('zero-length frame');
      if (len > this.maxFrameBytes) throw tooBig(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
      if (data.length - p - 4 < len) break;
      // A copy: the caller may keep it, and `data` may be the stream's own chunk.
      bodies.push(data.slice(p + 4, p + 4 + len));
      p += 4 + len;
    }
    this.buf = p === data.length ? new Uint8Array(0) : data.slice(p);
    return bodies;
  }
}
