/**
 * IP addresses and CIDR ranges, IPv4 and IPv6, as byte arrays (no sockets): the
 * `--trusted-proxies` list and the client address behind them. An IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.1`, what a dual-stack listener reports for an IPv4 peer) matches IPv4 ranges,
 * so one list works whether the server binds `0.0.0.0` or `::`.
 */
import { isIP } from 'node:net';

export interface CidrRange {
  /** 4 bytes (IPv4) or 16 (IPv6). */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** As given, for messages. */
  readonly text: string;
}

/** 4 or 16 bytes; undefined when `text` is not an IP literal. A zone (`fe80::1%eth0`) is ignored. */
export function parseIp(text: string): Uint8Array | undefined {
  const t = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = t.indexOf('%');
  const ip = zone < 0 ? t : t.slice(0, zone);
  const family = isIP(ip);
  if (family === 4) return Uint8Array.from(ip.split('.').map(Number));
  if (family !== 6) return undefined;
  return parseIpv6(ip);
}

function parseIpv6(ip: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  let text = ip;
  // A trailing dotted quad (::ffff:1.2.3.4) is the last 32 bits.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  const dotted = tail.includes('.');
  if (dotted) {
    out.set(tail.split('.').map(Number), 12);
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const rest = halves.length > 1 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  const groups = halves.length > 1 ? [...head, ...new Array<string>(8 - head.length - rest.length).fill('0'), ...rest] : head;
  if (groups.length !== 8) return undefined;
  groups.forEach((g, i) => {
    if (dotted && i >= 6) return; // already set from the dotted quad
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else the input. */
export function unmap(bytes: Uint8Array): Uint8Array {
  if (bytes.length !== 16) return bytes;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return bytes;
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) return bytes;
  return bytes.subarray(12);
}

/** Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128); undefined when invalid. */
export function parseCidr(text: string): CidrRange | undefined {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = slash < 0 ? t : t.slice(0, slash);
  const raw = parseIp(addr);
  if (raw === undefined) return undefined;
  const bytes = unmap(raw);
  const max = bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    // A mapped range (::ffff:10.0.0.0/104) is the IPv4 range with 96 fewer bits.
    if (bytes !== raw) prefix -= 96;
    if (prefix < 0 || prefix > max) return undefined;
  }
  return { bytes, prefix, text: t };
}

/** Whether `address` (bytes from {@link parseIp}) is inside `range`. IPv4 never matches an IPv6 range and the reverse. */
export function inRange(address: Uint8Array, range: CidrRange): boolean {
  const a = unmap(address);
  if (a.length !== range.bytes.length) return false;
  const full = range.prefix >> 3;
  for (let i = 0; i < full; i++) if (a[i] !== range.bytes[i]) return false;
  const bits = range.prefix & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return ((a[full] ?? 0) & mask) === ((range.bytes[full] ?? 0) & mask);
}

/** A compiled list of ranges: `matches(ip)` for an address in text form. */
export interface CidrList {
  readonly ranges: readonly CidrRange[];
  matches(address: string | undefined): boolean;
}

/**
 * Compiles a list of addresses and ranges; throws a TypeError naming an entry that does not
 * parse (settings are checked earlier with {@link firstInvalidCidr}, so this is a programming error).
 */
export function compileCidrList(entries: readonly string[]): CidrList {
  const ranges: CidrRange[] = [];
  for (const e of entries) {
    const r = parseCidr(e);
    if (r === undefined) throw new TypeError(`not an IP address or CIDR range: '${e}'`);
    ranges.push(r);
  }
  return Object.freeze({
    ranges: Object.freeze(ranges),
    matches(address: string | undefined): boolean {
      if (address === undefined || ranges.length === 0) return false;
      const bytes = parseIp(address);
      if (bytes === undefined) return false;
      for (const r of ranges) if (inRange(bytes, r)) return true;
      return false;
    },
  });
}

/** The first entry of `entries` that is not an address or range, for settings validation. */
export function firstInvalidCidr(entries: readonly string[]): string | undefined {
  return entries.find((e) => parseCidr(e) === undefined);
}
