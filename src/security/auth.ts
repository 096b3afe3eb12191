/**
 * Authentication of a credential string (a bearer token or a JWT), independent of where it came
 * from: the WebSocket upgrade's `Authorization` header or query parameter ({@link extractBearer}),
 * or the TCP `hello` frame.
 *
 * Failures carry a generic `reason` ('unauthorized') meant for the wire, so a client cannot
 * learn which check failed, and a `detail` for logs that never contains the secret or the
 * credential.
 */
import { createHash, createPublicKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { JWTVerifyGetKey, JWTVerifyOptions } from 'jose';
import { CloseCode, ConfigError, ErrorCode, HttpError, ProtocolError } from '../errors.js';

export type AuthMode = 'none' | 'token' | 'jwt';

/**
 * Why a credential was refused, for logs (never sent to the client): a stable word per check.
 * `missing`: no credential; `too-long`: over {@link MAX_CREDENTIAL_BYTES}; `unknown-token`: no
 * static token matches; `malformed`: not a JWS/JWT; `bad-signature`: the signature does not
 * verify; `bad-algorithm`: an algorithm not pinned for the key; `unknown-key`: no JWKS key for
 * its `kid`; `key-unavailable`: the JWKS could not be fetched; `expired`: past `exp` (+
 * tolerance); `not-yet-valid`: before `nbf`; `bad-claim`: `aud`, `iss`, `sub` or another claim
 * failed; `lifetime`: valid for longer than the lifetime cap.
 */
export type AuthFailure =
  | 'missing'
  | 'too-long'
  | 'unknown-token'
  | 'malformed'
  | 'bad-signature'
  | 'bad-algorithm'
  | 'unknown-key'
  | 'key-unavailable'
  | 'expired'
  | 'not-yet-valid'
  | 'bad-claim'
  | 'lifetime';

export type AuthResult =
  | {
      readonly ok: true;
      readonly identity: string;
      readonly anonymous: boolean;
      /** The verified JWT's claims (never the token itself); absent for static tokens. */
      readonly claims?: Readonly<Record<string, unknown>>;
      /**
       * Epoch ms after which the credential no longer verifies (JWT `exp` plus the clock
       * tolerance); undefined for credentials without an expiry (static tokens). A connection
       * authenticated by it is closed then (1008 `token expired`).
       */
      readonly validUntil?: number;
    }
  | {
      readonly ok: false;
      /** For the wire: always `unauthorized`. */
      readonly reason: string;
      readonly cause: AuthFailure;
      /** For logs: the cause in words and what the verifier said; never the credential. */
      readonly detail: string;
    };

export interface JwtOptions {
  /** HS256 shared secret (UTF-8), at least 32 bytes (RFC 7518 §3.2). */
  readonly secret?: string;
  /** SPKI PEM public key; RSA → RS256, EC P-256/P-384 → ES256/ES384, Ed25519 → EdDSA. */
  readonly publicKeyPem?: string;
  /** JWKS endpoint (https, or http on a loopback host only). */
  readonly jwksUrl?: string;
  /** Expected `aud` (any of). Strongly recommended: without it a token minted for another service is accepted. */
  readonly audience?: string | readonly string[];
  /** Expected `iss` (any of). */
  readonly issuer?: string | readonly string[];
  /** Tolerated clock skew for `exp`/`nbf`, in seconds, 0..300. @default 30 (s) */
  readonly clockToleranceSec?: number;
  /** Accepted algorithms; defaults follow the key (HS256 for a secret; RS256, ES256 for a JWKS). */
  readonly algorithms?: readonly string[];
  /** JWKS: refetch at most this often for an unknown `kid`. @default 30_000 (ms) */
  readonly jwksCooldownMs?: number;
  /** JWKS: cached keys are refetched after this long. @default 600_000 (ms) */
  readonly jwksCacheMaxAgeMs?: number;
  /** JWKS: HTTP timeout. @default 5_000 (ms) */
  readonly jwksTimeoutMs?: number;
  /**
   * Longest accepted token lifetime, in seconds: `exp - iat`, or `exp - now` for a token
   * without `iat`. Longer ones are refused (`lifetime`). @default 0 (no cap)
   */
  readonly maxLifetimeSec?: number;
}

export interface AuthenticatorOptions {
  readonly mode: AuthMode;
  /** mode 'token': name → token (see {@link loadTokens}). */
  readonly tokens?: ReadonlyMap<string, string>;
  /** mode 'jwt'. */
  readonly jwt?: JwtOptions;
  /** Clock for JWT time claims, epoch ms. @default Date.now */
  readonly now?: () => number;
}

export interface Authenticator {
  readonly mode: AuthMode;
  authenticate(credential: string | undefined): Promise<AuthResult>;
  /** Configuration that works but is weak (e.g. JWT without audience); log them at start. */
  readonly warnings: readonly string[];
}

/** Longest credential accepted, in bytes; longer ones are refused before any parsing. */
export const MAX_CREDENTIAL_BYTES = 8192;
/** Shortest static token accepted at load, in characters. */
export const MIN_TOKEN_LENGTH = 16;
/** Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size). */
export const MIN_HS256_SECRET_BYTES = 32;
export const AUTH_DEFAULTS = Object.freeze({
  /** s */
  clockToleranceSec: 30,
  /** ms */
  jwksCooldownMs: 30_000,
  /** ms */
  jwksCacheMaxAgeMs: 600_000,
  /** ms */
  jwksTimeoutMs: 5_000,
});

const UNAUTHORIZED = 'unauthorized';
const FAILURE_TEXT: Readonly<Record<AuthFailure, string>> = Object.freeze({
  missing: 'missing credential',
  'too-long': 'credential too long',
  'unknown-token': 'unknown token',
  malformed: 'malformed token',
  'bad-signature': 'bad signature',
  'bad-algorithm': 'algorithm not allowed',
  'unknown-key': 'unknown signing key',
  'key-unavailable': 'signing keys unavailable',
  expired: 'expired',
  'not-yet-valid': 'not yet valid',
  'bad-claim': 'claim check failed',
  lifetime: 'lifetime above the cap',
});
const fail = (cause: AuthFailure, extra?: string): AuthResult => ({
  ok: false,
  reason: UNAUTHORIZED,
  cause,
  detail: extra === undefined ? FAILURE_TEXT[cause] : `${FAILURE_TEXT[cause]} (${extra})`,
});

/** The wire refusal on TCP (close 1008), always with the generic reason. */
export const authProtocolError = (): ProtocolError => new ProtocolError(ErrorCode.AUTH, CloseCode.POLICY_VIOLATION, UNAUTHORIZED);
/**
 * The wire refusal before a WebSocket upgrade (HTTP 401), always with the generic reason; the
 * failure's `detail` rides along as `logDetail` for the reject event (never on the wire).
 */
export const authHttpError = (detail?: string): HttpError & { readonly logDetail?: string } =>
  Object.assign(new HttpError(ErrorCode.AUTH, 401, UNAUTHORIZED), detail === undefined ? {} : { logDetail: `unauthorized: ${detail}` });

// ---------------------------------------------------------------------------------------------
// Credential extraction

// RFC 6750 §2.1 b64token.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The bearer credential of a request: `Authorization: Bearer <token>` (scheme case-insensitive)
 * first, else the `queryParam` of `url` (browsers cannot set headers on a WebSocket). Returns
 * undefined when absent, malformed, or ambiguous (the parameter given twice).
 * Query-string tokens end up in proxy and access logs: log URLs through {@link redactUrl}.
 */
export function extractBearer(authorizationHeader?: string, url?: string, queryParam = 'token'): string | undefined {
  if (authorizationHeader !== undefined && authorizationHeader !== '') {
    const m = /^Bearer +(\S+) *$/i.exec(authorizationHeader);
    const token = m?.[1];
    return token !== undefined && B64TOKEN.test(token) ? token : undefined;
  }
  if (url === undefined) return undefined;
  let values: string[];
  try {
    values = new URL(url, 'http://localhost').searchParams.getAll(queryParam);
  } catch {
    return undefined;
  }
  if (values.length !== 1) return undefined;
  const v = values[0];
  return v !== undefined && v !== '' && v.length <= MAX_CREDENTIAL_BYTES ? v : undefined;
}

/** `url` with the value of `queryParam` replaced by `[REDACTED]`, for logs. */
export function redactUrl(url: string, queryParam = 'token'): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((p) => {
      const eq = p.indexOf('=');
      const name = eq < 0 ? p : p.slice(0, eq);
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // keep the raw name
      }
      return decoded === queryParam ? `${name}=[REDACTED]` : p;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
}

// ---------------------------------------------------------------------------------------------
// Static tokens

/**
 * Parses a token list: a JSON object `{ "name": "token", ... }`, or one `name:token` per line
 * (or separated by commas, for env vars), `#` comments and blank lines ignored. The name is
 * everything before the first colon. Tokens must be at least {@link MIN_TOKEN_LENGTH}
 * characters; names and tokens must be unique. `setting` names the source in errors; token
 * values never appear in them.
 */
export function parseTokens(text: string, setting = 'authTokens'): Map<string, string> {
  const out = new Map<string, string>();
  const add = (name: string, token: string, where: string): void => {
    if (name === '') throw new ConfigError(setting, `${where}: empty name`);
    if (token.length < MIN_TOKEN_LENGTH)
      throw new ConfigError(setting, `${where}: token of '${name}' is shorter than ${MIN_TOKEN_LENGTH} characters`);
    if (/\s/.test(token)) throw new ConfigError(setting, `${where}: token of '${name}' contains whitespace`);
    if (out.has(name)) throw new ConfigError(setting, `${where}: duplicate name '${name}'`);
    for (const [other, t] of out) if (t === token) throw new ConfigError(setting, `${where}: '${name}' has the same token as '${other}'`);
    out.set(name, token);
  };
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      // The message of a JSON.parse error quotes the input; keep tokens out of it.
      throw new ConfigError(setting, 'invalid JSON');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(setting, 'expected a JSON object');
    for (const [name, token] of Object.entries(parsed)) {
      if (typeof token !== 'string') throw new ConfigError(setting, `value of '${name}' is not a string`);
      add(name.trim(), token.trim(), 'JSON');
    }
  } else {
    trimmed.split(/[\r\n,]+/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const colon = line.indexOf(':');
      if (colon < 0) throw new ConfigError(setting, `entry ${i + 1}: expected name:token`);
      add(line.slice(0, colon).trim(), line.slice(colon + 1).trim(), `entry ${i + 1}`);
    });
  }
  if (out.size === 0) throw new ConfigError(setting, 'no tokens');
  return out;
}

/** Tokens from a file (`--auth-tokens-file`) or the env value (`ECHO_AUTH_TOKENS`); the file wins. */
export async function loadTokens(source: { file?: string; env?: string }): Promise<Map<string, string>> {
  if (source.file !== undefined) {
    let text: string;
    try {
      text = await readFile(source.file, 'utf8');
    } catch (err) {
      throw new ConfigError('authTokensFile', `cannot read ${source.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    return parseTokens(text, 'authTokensFile');
  }
  if (source.env !== undefined) return parseTokens(source.env, 'ECHO_AUTH_TOKENS');
  throw new ConfigError('authTokensFile', '--auth token needs --auth-tokens-file or ECHO_AUTH_TOKENS');
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function tokenAuthenticator(tokens: ReadonlyMap<string, string>): Authenticator['authenticate'] {
  // Hashing both sides gives equal-length buffers for timingSafeEqual and hides the token
  // length; comparing against every entry without an early exit hides which one matched.
  const table = [...tokens].map(([name, token]) => ({ name, digest: sha256(token) }));
  return async function authenticateToken(credential) {
    if (credential === undefined || credential === '') return fail('missing', 'token');
    if (Buffer.byteLength(credential) > MAX_CREDENTIAL_BYTES) return fail('too-long', 'token');
    const digest = sha256(credential);
    let match: string | undefined;
    for (const e of table) if (timingSafeEqual(e.digest, digest) && match === undefined) match = e.name;
    return match === undefined ? fail('unknown-token', 'token') : { ok: true, identity: match, anonymous: false };
  };
}

// ---------------------------------------------------------------------------------------------
// JWT

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

function algorithmsForKey(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256'];
    case 'rsa-pss':
      return ['PS256'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return ['ES256'];
      if (curve === 'secp384r1') return ['ES384'];
      if (curve === 'secp521r1') return ['ES512'];
      throw new ConfigError('jwtPublicKey', `unsupported EC curve ${curve ?? 'unknown'}`);
    }
    case 'ed25519':
      return ['EdDSA'];
    default:
      throw new ConfigError('jwtPublicKey', `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}

function jwtAuthenticator(jwt: JwtOptions, now: () => number): { authenticate: Authenticator['authenticate']; warnings: string[] } {
  const sources = [jwt.secret, jwt.publicKeyPem, jwt.jwksUrl].filter((x) => x !== undefined && x !== '').length;
  if (sources !== 1) throw new ConfigError('jwt', 'give exactly one of --jwt-secret, --jwt-public-key, --jwt-jwks-url');
  const tolerance = jwt.clockToleranceSec ?? AUTH_DEFAULTS.clockToleranceSec;
  if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 300)
    throw new ConfigError('jwtClockTolerance', `must be 0..300 seconds, got ${tolerance}`);
  const maxLifetime = jwt.maxLifetimeSec ?? 0;
  if (!Number.isFinite(maxLifetime) || maxLifetime < 0)
    throw new ConfigError('jwtMaxLifetime', `must be a duration >= 0, got ${maxLifetime}`);

  // jose is imported only when JWT authentication is configured (kept out of the server's heap
  // otherwise); the first verification waits for it.
  const jose = import('jose');
  let key: JWTVerifyGetKey | KeyObject | Uint8Array | Promise<JWTVerifyGetKey>;
  let algorithms: string[];
  if (jwt.secret !== undefined && jwt.secret !== '') {
    const secret = new TextEncoder().encode(jwt.secret);
    if (secret.length < MIN_HS256_SECRET_BYTES) throw new ConfigError('jwtSecret', `must be at least ${MIN_HS256_SECRET_BYTES} bytes`);
    key = secret;
    algorithms = ['HS256'];
  } else if (jwt.publicKeyPem !== undefined && jwt.publicKeyPem !== '') {
    let k: KeyObject;
    try {
      k = createPublicKey(jwt.publicKeyPem);
    } catch {
      throw new ConfigError('jwtPublicKey', 'not a PEM public key');
    }
    key = k;
    algorithms = algorithmsForKey(k);
  } else {
    let url: URL;
    try {
      url = new URL(jwt.jwksUrl ?? '');
    } catch {
      throw new ConfigError('jwtJwksUrl', 'not a URL');
    }
    // Keys fetched over plain http could be swapped in transit, and then any token verifies.
    if (!(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))))
      throw new ConfigError('jwtJwksUrl', 'must be https (http only on a loopback host)');
    const jwksOptions = {
      cooldownDuration: jwt.jwksCooldownMs ?? AUTH_DEFAULTS.jwksCooldownMs,
      cacheMaxAge: jwt.jwksCacheMaxAgeMs ?? AUTH_DEFAULTS.jwksCacheMaxAgeMs,
      timeoutDuration: jwt.jwksTimeoutMs ?? AUTH_DEFAULTS.jwksTimeoutMs,
    };
    key = jose.then((j) => j.createRemoteJWKSet(url, jwksOptions));
    algorithms = ['RS256', 'ES256'];
  }
  if (jwt.algorithms !== undefined) {
    // An HMAC algorithm with a public key would let anyone sign with the public key as the
    // secret (algorithm confusion); jose refuses that too, but say it at start.
    const symmetric = jwt.algorithms.filter((a) => a.startsWith('HS'));
    const isSecret = key instanceof Uint8Array;
    if (
      jwt.algorithms.length === 0 ||
      jwt.algorithms.includes('none') ||
      (isSecret ? symmetric.length !== jwt.algorithms.length : symmetric.length > 0)
    )
      throw new ConfigError('jwtAlgorithms', `not valid for this key: ${jwt.algorithms.join(',')}`);
    algorithms = [...jwt.algorithms];
  }

  const warnings: string[] = [];
  if (jwt.audience === undefined)
    warnings.push('JWT audience is not checked (--jwt-audience): tokens issued for other services are accepted');
  if (jwt.issuer === undefined) warnings.push('JWT issuer is not checked (--jwt-issuer)');
  const base: JWTVerifyOptions = {
    algorithms,
    clockTolerance: tolerance,
    // A token without exp would be valid forever; without sub there is no identity.
    requiredClaims: ['exp', 'sub'],
    ...(jwt.audience !== undefined && { audience: typeof jwt.audience === 'string' ? jwt.audience : [...jwt.audience] }),
    ...(jwt.issuer !== undefined && { issuer: typeof jwt.issuer === 'string' ? jwt.issuer : [...jwt.issuer] }),
  };

  const verifyKey = key;
  async function authenticateJwt(credential: string | undefined): Promise<AuthResult> {
    if (credential === undefined || credential === '') return fail('missing', 'jwt');
    if (Buffer.byteLength(credential) > MAX_CREDENTIAL_BYTES) return fail('too-long', 'jwt');
    const { jwtVerify, errors } = await jose;
    const k = await verifyKey;
    try {
      const at = now();
      const options: JWTVerifyOptions = { ...base, currentDate: new Date(at) };
      // Two calls because jwtVerify's overloads take a key or a key resolver, not the union.
      const { payload } = typeof k === 'function' ? await jwtVerify(credential, k, options) : await jwtVerify(credential, k, options);
      if (typeof payload.sub !== 'string' || payload.sub === '') return fail('bad-claim', 'jwt: empty sub');
      // requiredClaims made jose check that exp is present and a number.
      const exp = payload.exp as number;
      if (maxLifetime > 0) {
        const from = typeof payload.iat === 'number' ? Math.min(payload.iat, at / 1000) : at / 1000;
        if (exp - from > maxLifetime) return fail('lifetime', `jwt: ${Math.round(exp - from)} s > ${maxLifetime} s`);
      }
      return {
        ok: true,
        identity: payload.sub,
        anonymous: false,
        validUntil: (exp + tolerance) * 1000,
        claims: Object.freeze({ ...payload }),
      };
    } catch (err) {
      const { cause, text } = describeJoseError(errors, err);
      return fail(cause, `jwt: ${text}`);
    }
  }
  return { authenticate: authenticateJwt, warnings };
}

/** The cause of a jose failure and a log text: its stable code and message (jose messages quote no values). */
function describeJoseError(joseErrors: typeof import('jose').errors, err: unknown): { cause: AuthFailure; text: string } {
  if (err instanceof joseErrors.JWTExpired) return { cause: 'expired', text: `${err.code} (${err.claim}: ${err.reason})` };
  if (err instanceof joseErrors.JWTClaimValidationFailed)
    return { cause: err.claim === 'nbf' ? 'not-yet-valid' : 'bad-claim', text: `${err.code} (${err.claim}: ${err.reason})` };
  if (err instanceof joseErrors.JOSEError) {
    const text = `${err.code}: ${err.message}`;
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { cause: 'bad-signature', text };
    if (err instanceof joseErrors.JOSEAlgNotAllowed) return { cause: 'bad-algorithm', text };
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys)
      return { cause: 'unknown-key', text };
    if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) return { cause: 'key-unavailable', text };
    return { cause: 'malformed', text };
  }
  // Anything else (a bug, a network error of the JWKS fetch) — the name only.
  return { cause: 'key-unavailable', text: err instanceof Error ? err.name : 'error' };
}

// ---------------------------------------------------------------------------------------------

/** Validates the options once, at start (errors are ConfigErrors naming the setting). */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const now = options.now ?? Date.now;
  switch (options.mode) {
    case 'none':
      return Object.freeze({
        mode: 'none',
        warnings: [],
        async authenticate(): Promise<AuthResult> {
          return { ok: true, identity: 'anonymous', anonymous: true };
        },
      });
    case 'token': {
      if (options.tokens === undefined || options.tokens.size === 0)
        throw new ConfigError('authTokensFile', '--auth token needs at least one token');
      for (const [name, t] of options.tokens)
        if (t.length < MIN_TOKEN_LENGTH)
          throw new ConfigError('authTokensFile', `token of '${name}' is shorter than ${MIN_TOKEN_LENGTH} characters`);
      return Object.freeze({ mode: 'token', warnings: [], authenticate: tokenAuthenticator(options.tokens) });
    }
    case 'jwt': {
      if (options.jwt === undefined) throw new ConfigError('jwt', '--auth jwt needs --jwt-secret, --jwt-public-key or --jwt-jwks-url');
      const { authenticate, warnings } = jwtAuthenticator(options.jwt, now);
      return Object.freeze({ mode: 'jwt', warnings: Object.freeze(warnings), authenticate });
    }
    default:
      throw new ConfigError('auth', `must be none, token or jwt, got ${String(options.mode as unknown)}`);
  }
}
