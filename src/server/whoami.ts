/**
 * What the server saw of a client: the view behind `GET /whoami` (and, on the wire, the
 * `whoami` field of a v1 `hello` reply), and the request echo behind `/echo`.
 *
 * Secrets never come back: `Authorization`, `Proxy-Authorization` and `Cookie` headers and the
 * token query parameter are replaced by `[REDACTED]`, and an authenticated client gets its
 * identity and JWT claims, never the token. Everything else the client sent is shown as the
 * server received it; addresses behind proxies are believed only as far as `--trusted-proxies`
 * allows (forwarded.ts).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { CidrList } from '../security/cidr.js';
import { isUtf8 } from '../protocol/utf8.js';
import { redactUrl } from '../security/auth.js';
import { resolveForwarded, type ForwardedView } from './forwarded.js';

export const REDACTED = '[REDACTED]';
/** Request headers whose values are credentials. */
export const REDACTED_HEADERS: readonly string[] = Object.freeze(['authorization', 'proxy-authorization', 'cookie']);

/**
 * Environment variables read for the Kubernetes fields (set them from the downward API; see
 * deploy/ and the README): pod name, namespace and node.
 */
export const KUBERNETES_ENV = Object.freeze({ pod: 'POD_NAME', namespace: 'POD_NAMESPACE', node: 'NODE_NAME' });

/** Where the server runs: fixed for the life of the process. */
export interface PlacementView {
  readonly instance: string;
  /** The worker id under `--workers` (the `workerId` setting, as in the srv stamp), else null. */
  readonly worker: string | null;
  /** From the downward-API variables; null when none is set. */
  readonly kubernetes: { readonly pod: string | null; readonly namespace: string | null; readonly node: string | null } | null;
}

export interface TlsView {
  readonly version: string | null;
  readonly cipher: string | null;
  /** SNI: the host name the client asked for; null when it sent none. */
  readonly sni: string | null;
  readonly alpn: string | null;
  /** The client certificate, when one was presented. */
  readonly clientCertificate: {
    readonly subject: string;
    readonly issuer: string;
    readonly fingerprint256: string;
    readonly serialNumber: string;
    readonly validTo: string;
    /** Whether it verified against `--tls-ca`. */
    readonly authorized: boolean;
    readonly authorizationError: string | null;
  } | null;
}

export interface AuthView {
  /** The authentication mode of the server. */
  readonly mode: 'none' | 'token' | 'jwt';
  /** The authenticated identity (token name, JWT `sub`, or client certificate CN); null when anonymous. */
  readonly identity: string | null;
  /** The verified JWT's claims; null otherwise. */
  readonly claims: Readonly<Record<string, unknown>> | null;
}

export interface WhoamiView extends PlacementView {
  readonly remote: { readonly address: string | null; readonly port: number | null };
  /** The forwarded chain and the client address it yields (null on transports without HTTP). */
  readonly forwarded: ForwardedView | null;
  /** The request line and headers, redacted (null on transports without HTTP). */
  readonly request: {
    readonly method: string;
    readonly url: string;
    readonly httpVersion: string;
    readonly headers: Readonly<Record<string, string | string[]>>;
  } | null;
  readonly tls: TlsView | null;
  readonly auth: AuthView;
}

/** The socket facts a view needs (a net.Socket, a TLSSocket, or an in-process stream). */
export interface PeerSocket {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/** What one request showed (method, url, headers) — an IncomingMessage fits. */
export interface RequestLike {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly httpVersion?: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

export function placement(instance: string, workerId: string | null, env: NodeJS.ProcessEnv = process.env): PlacementView {
  const pick = (name: string): string | null => {
    const v = env[name];
    return v === undefined || v === '' ? null : v;
  };
  const pod = pick(KUBERNETES_ENV.pod);
  const namespace = pick(KUBERNETES_ENV.namespace);
  const node = pick(KUBERNETES_ENV.node);
  return Object.freeze({
    instance,
    worker: workerId,
    kubernetes: pod === null && namespace === null && node === null ? null : Object.freeze({ pod, namespace, node }),
  });
}

/** Headers with credential values replaced; everything else as received. */
export function redactHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out[name] = REDACTED_HEADERS.includes(name) ? REDACTED : value;
  }
  return out;
}

/** The query of `url` as an object (repeated names give arrays), the token parameter redacted. */
export function redactedQuery(url: string, tokenParam: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let params: URLSearchParams;
  try {
    params = new URL(url, 'http://localhost').searchParams;
  } catch {
    return out;
  }
  for (const [name, raw] of params) {
    const value = name === tokenParam ? REDACTED : raw;
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

/** `[a, b]` for repeated subject fields, as `peerIdentity` writes them. */
function dn(fields: Record<string, string | string[] | undefined> | undefined): string {
  if (fields === undefined) return '';
  return Object.entries(fields)
    .filter((e): e is [string, string | string[]] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(',');
}

export function tlsView(socket: unknown): TlsView | null {
  if (!(socket instanceof TLSSocket)) return null;
  const cipher = socket.getCipher() as { name?: string; standardName?: string } | undefined;
  const cert = socket.getPeerCertificate();
  // Node returns {} when the client sent no certificate.
  const hasCert = cert !== undefined && cert !== null && typeof cert.fingerprint256 === 'string';
  const servername = (socket as TLSSocket & { servername?: string | false | null }).servername;
  return {
    version: socket.getProtocol() ?? null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    sni: typeof servername === 'string' && servername !== '' ? servername : null,
    alpn: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
    clientCertificate: hasCert
      ? {
          subject: dn(cert.subject as unknown as Record<string, string | string[] | undefined>),
          issuer: dn(cert.issuer as unknown as Record<string, string | string[] | undefined>),
          fingerprint256: cert.fingerprint256,
          serialNumber: cert.serialNumber,
          validTo: cert.valid_to,
          authorized: socket.authorized,
          authorizationError: socket.authorized ? null : String(socket.authorizationError ?? 'unverified'),
        }
      : null,
  };
}

export interface WhoamiInput {
  readonly placement: PlacementView;
  readonly socket: PeerSocket;
  /** The HTTP request (upgrade or plain); undefined on TCP, Unix and in-process connections. */
  readonly request?: RequestLike | undefined;
  readonly trustedProxies: CidrList;
  readonly tokenParam: string;
  readonly auth: AuthView;
}

export function buildWhoami(input: WhoamiInput): WhoamiView {
  const { socket, request } = input;
  return {
    ...input.placement,
    remote: { address: socket.remoteAddress ?? null, port: socket.remotePort ?? null },
    forwarded: request === undefined ? null : resolveForwarded(request.headers, socket.remoteAddress, input.trustedProxies),
    request:
      request === undefined
        ? null
        : {
            method: request.method ?? 'GET',
            url: redactUrl(request.url ?? '/', input.tokenParam),
            httpVersion: request.httpVersion ?? '1.1',
            headers: redactHeaders(request.headers),
          },
    tls: tlsView(socket),
    auth: input.auth,
  };
}

export interface RequestEchoView {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string | string[]>>;
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** The body as text when it is valid UTF-8, else base64 (`bodyEncoding` says which). */
  readonly body: string;
  readonly bodyEncoding: 'utf8' | 'base64';
  readonly bodyBytes: number;
  readonly instance: string;
}

export function buildRequestEcho(request: RequestLike, body: Buffer, tokenParam: string, instance: string): RequestEchoView {
  const url = request.url ?? '/';
  const q = url.indexOf('?');
  const utf8 = isUtf8(body);
  return {
    method: request.method ?? 'GET',
    path: q < 0 ? url : url.slice(0, q),
    query: redactedQuery(url, tokenParam),
    headers: redactHeaders(request.headers),
    body: utf8 ? body.toString('utf8') : body.toString('base64'),
    bodyEncoding: utf8 ? 'utf8' : 'base64',
    bodyBytes: body.length,
    instance,
  };
}
