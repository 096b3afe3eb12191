/**
 * The v1 metadata header: a UTF-8 JSON object. The echo keeps the client's fields unchanged
 * and adds `srv` (docs/PROTOCOL.md §Metadata).
 */
import { malformed } from '../errors.js';
import { isUtf8 } from './utf8.js';

export type MetadataHeader = Record<string, unknown>;

/**
 * Deepest nesting of objects and arrays accepted in a header (the header object itself is
 * level 1). Headers carry ids, timestamps and routing hints; thousands of nested arrays within
 * `maxHeaderBytes` only serve to exhaust the stack of the recursive code that walks a parsed
 * value (JSON.stringify of the echo, application hooks).
 */
export const MAX_HEADER_DEPTH = 32;

/**
 * The nesting depth of the JSON text `buf[start, end)`, in one pass over the bytes: `[` and `{`
 * outside strings open a level, `]` and `}` close one; inside a string a backslash skips the
 * next byte (so `\"` does not end it). UTF-8 continuation bytes are never ASCII, so bytes are
 * enough. Stops as soon as the depth exceeds `limit`. Meaningful for valid JSON; on anything
 * else the parser that follows refuses it anyway.
 */
export function jsonDepth(buf: Uint8Array, start = 0, end = buf.length, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = start; i < end; i++) {
    const c = buf[i] as number;
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * Parses `buf[start, end)`; throws ProtocolError 1002 unless it is a UTF-8 JSON object nested at
 * most {@link MAX_HEADER_DEPTH} levels deep.
 */
export function parseHeader(buf: Buffer, start: number, end: number): MetadataHeader {
  // toString('utf8') would turn invalid bytes into U+FFFD, and the echo would then not carry
  // the client's fields unchanged: JSON text must be UTF-8 (RFC 8259 §8.1).
  if (!isUtf8(buf.subarray(start, end))) throw malformed('metadata header is not UTF-8');
  // Before JSON.parse: a deep value would only blow the stack later (1011 instead of 1002).
  if (jsonDepth(buf, start, end, MAX_HEADER_DEPTH) > MAX_HEADER_DEPTH)
    throw malformed(`metadata header nested deeper than ${MAX_HEADER_DEPTH} levels`);
  let value: unknown;
  try {
    value = JSON.parse(buf.toString('utf8', start, end));
  } catch {
    throw malformed('metadata header is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw malformed('metadata header must be a JSON object');
  }
  return value as MetadataHeader;
}

/** What the server adds to an echoed header. Times are epoch milliseconds (µs precision). */
export interface ServerStamp {
  /** Instance (replica) name. */
  readonly instance: string;
  /** Worker id under `--workers` (absent otherwise). */
  readonly worker?: string;
  /** Connection id. */
  readonly conn: string;
  /** Per-connection message sequence number, from 1. */
  readonly seq: number;
  /** Receive time. */
  readonly rx: number;
  /** Send time (for a delayed echo: when it is due to leave). */
  readonly tx: number;
  /** Milliseconds the echo was held back by latency injection (only on delayed echoes). */
  readonly delay?: number;
}

/** The echoed header: the client's fields, then `srv` (replacing any client-sent `srv`). */
export function stampHeader(header: MetadataHeader, stamp: ServerStamp): Buffer {
  return Buffer.from(JSON.stringify({ ...header, srv: stamp }), 'utf8');
}
