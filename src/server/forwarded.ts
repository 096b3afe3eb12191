/**
 * The forwarded chain of an HTTP request (`Forwarded`, RFC 7239, else `X-Forwarded-For`) and
 * the client address it yields. Headers are written by whoever sent the request, so the chain
 * is only believed as far as it was appended by proxies we trust: starting at the socket peer,
 * each hop written by a trusted proxy is accepted, and the client is the rightmost address that
 * is not a trusted proxy (the usual "rightmost untrusted hop" rule; leftmost entries can be
 * anything the client typed). Pure functions: no sockets.
 */
import type { CidrList } from '../security/cidr.js';

/** Hops read from one request at most; more are dropped (and `truncated` says so). */
export const MAX_FORWARDED_HOPS = 32;

export interface ForwardedHop {
  /** The `for` node: an IP address, `unknown`, or an obfuscated `_name` (RFC 7239 §6). */
  readonly for: string;
  readonly port?: string;
  readonly by?: string;
  readonly proto?: string;
  readonly host?: string;
}

export interface ForwardedView {
  /** The header the chain came from; null when the request carried none. */
  readonly header: 'forwarded' | 'x-forwarded-for' | null;
  /** Client first, the proxy closest to us last, as the header lists them. */
  readonly hops: readonly ForwardedHop[];
  readonly truncated: boolean;
  /** Whether the socket peer is in `--trusted-proxies`. */
  readonly peerTrusted: boolean;
  /**
   * True when nothing in the chain was vouched for (the peer is not a trusted proxy): every
   * hop is just what the client wrote.
   */
  readonly clientSupplied: boolean;
  /** The client address we believe: the rightmost untrusted hop, or the peer itself. */
  readonly client: string;
  /** Where `client` came from. */
  readonly clientSource: 'peer' | 'forwarded' | 'x-forwarded-for';
}

/** One value of a `Forwarded` pair: a token or a quoted-string (RFC 7230 §3.2.6). */
function unquote(v: string): string {
  const t = v.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) return t.slice(1, -1).replace(/\\(.)/g, '$1');
  return t;
}

/** Splits on `sep` outside quoted strings. */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\' && quoted && i + 1 < text.length) {
      cur += c + (text[i + 1] as string);
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** A node (`192.0.2.1:8080`, `[2001:db8::1]:443`, `unknown`) split into address and port. */
export function splitNode(node: string): { address: string; port?: string } {
  const n = node.trim();
  if (n.startsWith('[')) {
    const end = n.indexOf(']');
    if (end > 0) {
      const rest = n.slice(end + 1);
      return rest.startsWith(':') && rest.length > 1 ? { address: n.slice(1, end), port: rest.slice(1) } : { address: n.slice(1, end) };
    }
  }
  const colon = n.indexOf(':');
  // One colon: IPv4 (or a name) with a port. More: a bare IPv6 address (X-Forwarded-For style).
  if (colon > 0 && colon === n.lastIndexOf(':')) return { address: n.slice(0, colon), port: n.slice(colon + 1) };
  return { address: n };
}

/** Parses a `Forwarded` header value (elements separated by commas, pairs by semicolons). */
export function parseForwardedHeader(value: string, max = MAX_FORWARDED_HOPS): { hops: ForwardedHop[]; truncated: boolean } {
  const elements = splitOutsideQuotes(value, ',').filter((e) => e.trim() !== '');
  const hops: ForwardedHop[] = [];
  for (const element of elements.slice(-max)) {
    const fields: Record<string, string> = {};
    for (const pair of splitOutsideQuotes(element, ';')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim().toLowerCase();
      if (!(name in fields)) fields[name] = unquote(pair.slice(eq + 1));
    }
    const node = splitNode(fields['for'] ?? 'unknown');
    hops.push({
      for: node.address,
      ...(node.port !== undefined && { port: node.port }),
      ...(fields['by'] !== undefined && { by: fields['by'] }),
      ...(fields['proto'] !== undefined && { proto: fields['proto'] }),
      ...(fields['host'] !== undefined && { host: fields['host'] }),
    });
  }
  return { hops, truncated: elements.length > max };
}

/** Parses an `X-Forwarded-For` value: comma-separated addresses, optionally with ports. */
export function parseXForwardedFor(value: string, max = MAX_FORWARDED_HOPS): { hops: ForwardedHop[]; truncated: boolean } {
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  const hops = entries.slice(-max).map((e): ForwardedHop => {
    const node = splitNode(e);
    return node.port === undefined ? { for: node.address } : { for: node.address, port: node.port };
  });
  return { hops, truncated: entries.length > max };
}

/** Strips the IPv4-mapped prefix a dual-stack socket reports (`::ffff:127.0.0.1`). */
export function plainAddress(address: string): string {
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * The chain of a request and the client address it yields, given the socket peer and the
 * trusted proxies. `Forwarded` wins over `X-Forwarded-For` when both are present (it is the
 * standard); a proxy that writes one should strip the other.
 */
export function resolveForwarded(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  peer: string | undefined,
  trusted: CidrList,
): ForwardedView {
  const fwd = headerValue(headers['forwarded']);
  const xff = headerValue(headers['x-forwarded-for']);
  const header = fwd !== undefined ? 'forwarded' : xff !== undefined ? 'x-forwarded-for' : null;
  const { hops, truncated } =
    fwd !== undefined ? parseForwardedHeader(fwd) : xff !== undefined ? parseXForwardedFor(xff) : { hops: [], truncated: false };
  const peerAddress = plainAddress(peer ?? 'unknown');
  const peerTrusted = trusted.matches(peerAddress);
  let client = peerAddress;
  let clientSource: ForwardedView['clientSource'] = 'peer';
  if (peerTrusted && header !== null) {
    // Walk from the proxy nearest to us towards the client while the writer of each hop is trusted.
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = (hops[i] as ForwardedHop).for;
      client = plainAddress(hop);
      clientSource = header;
      if (!trusted.matches(client)) break;
    }
  }
  return { header, hops, truncated, peerTrusted, clientSupplied: !peerTrusted, client, clientSource };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v.join(', ') : v;
  return s.trim() === '' ? undefined : s;
}
