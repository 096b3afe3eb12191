/**
 * Origin allow-list for browser WebSocket clients, against cross-site WebSocket hijacking
 * (RFC 6455 §10.2): a page on another site can open a WebSocket to us with the user's cookies
 * or client certificate; only the browser-set `Origin` header tells us who asked.
 */
import { ConfigError } from '../errors.js';

export type OriginCheck = (origin: string | undefined) => boolean;

/**
 * The serialized origin (RFC 6454 §6.2) of `value`: lower-case scheme and host, IDNA host,
 * default port dropped. Undefined when `value` is not an http(s) origin — a path, query,
 * fragment or credentials make it something else.
 */
export function normalizeOrigin(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
  if (url.pathname !== '/' || /^[a-z]+:\/\/[^/]*\/./i.test(value)) return undefined;
  return url.origin;
}

/**
 * Builds the check from an allow-list (`--allowed-origins`):
 * - entries are exact origins (`https://app.example.com`, `http://localhost:5173`), compared
 *   after normalization (host case, default port, trailing slash); no wildcards in host names;
 * - `*` allows every origin (for public echo services; then authenticate instead);
 * - a request without `Origin` is allowed: browsers always send it on WebSocket upgrades, so its
 *   absence means a non-browser client, which could forge any Origin anyway;
 * - `Origin: null` (sandboxed iframes, `file:` pages) matches only `*`;
 * - an empty list allows no browser origin at all.
 * Invalid entries throw a ConfigError naming `allowedOrigins`.
 */
export function createOriginCheck(allowed: readonly string[]): OriginCheck {
  const set = new Set<string>();
  let any = false;
  for (const entry of allowed) {
    const e = entry.trim();
    if (e === '*') {
      any = true;
      continue;
    }
    // WHATWG URL accepts '*' in a host name; a user writing one expects a wildcard, which
    // this list does not do: say so rather than silently never match.
    if (e.includes('*'))
      throw new ConfigError('allowedOrigins', `'${entry}': wildcards are not supported; list each origin, or use * alone`);
    const n = normalizeOrigin(e);
    if (n === undefined) throw new ConfigError('allowedOrigins', `'${entry}' is not an origin (scheme://host[:port], http or https)`);
    set.add(n);
  }
  if (any)
    return function allowAnyOrigin() {
      return true;
    };
  return function checkOrigin(origin) {
    if (origin === undefined) return true;
    const n = normalizeOrigin(origin.trim());
    return n !== undefined && set.has(n);
  };
}

/**
 * The server's own origins, for the default allow-list (same-origin, so the debug console page
 * served by the same listener can connect): `scheme://host:port` for each host name. Built from
 * the configured host names, not from the request's `Host` header, which a DNS-rebinding page
 * controls.
 */
export function selfOrigins(hostnames: readonly string[], port: number, secure: boolean): string[] {
  const scheme = secure ? 'https' : 'http';
  const out = new Set<string>();
  for (const h of ['localhost', '127.0.0.1', '::1', ...hostnames]) {
    if (h === '' || h === '0.0.0.0' || h === '::') continue;
    const host = h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
    const n = normalizeOrigin(`${scheme}://${host}:${port}`);
    if (n !== undefined) out.add(n);
  }
  return [...out];
}
