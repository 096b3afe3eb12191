/**
 * The v1 metadata header: a UTF-8 JSON object. The echo keeps the client's fields unchanged
 * and adds `srv` (docs/PROTOCOL.md §Metadata).
 */
import { malformed } from '../errors.js';
import { isUtf8 } from './utf8.js';

export type MetadataHeader = Record<string, unknown>;

/** Parses `buf[start, end)`; throws ProtocolError 1002 unless it is a UTF-8 JSON object. */
export function parseHeader(buf: Buffer, start: number, end: number): MetadataHeader {
  // toString('utf8') would turn invalid bytes into U+FFFD, and the echo would then not carry
  // the client's fields unchanged: JSON text must be UTF-8 (RFC 8259 §8.1).
  if (!isUtf8(buf.subarray(start, end))) throw malformed('metadata header is not UTF-8');
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
