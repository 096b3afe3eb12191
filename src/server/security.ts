/**
 * Builds the security context of one server from its settings, at `listen()` (certificates and
 * token files are read then): TLS material, the authenticator, the origin check, per-client
 * limits and the replay guard. Each piece is undefined when its feature is off, so the hot path
 * tests one field.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Settings } from '../config/index.js';
import { ConfigError } from '../errors.js';
import { createAuthenticator, loadTokens, parseTokens, type Authenticator } from '../security/auth.js';
import { createOriginCheck, selfOrigins, type OriginCheck } from '../security/origin.js';
import { ClientLimits, rateLimitEnabled, type RateLimitOptions } from '../security/rate-limit.js';
import { ReplayGuards } from '../security/replay.js';
import { loadTlsMaterial, type TlsMaterial } from '../security/tls.js';
import { fdLimitWarning, readOpenFileLimit } from './fd-limit.js';

export interface SecurityContext {
  /** TLS for every network listener; undefined with `insecure`. */
  tls: TlsMaterial | undefined;
  readonly auth: Authenticator | undefined;
  readonly authQueryParam: string;
  /** Origin check for WebSocket upgrades; undefined = any origin. */
  origin: OriginCheck | undefined;
  /** Per-client rate and connection limits; undefined when none is set. */
  readonly clients: ClientLimits | undefined;
  /** Per-connection rate; undefined when unlimited. */
  readonly connectionRate: RateLimitOptions | undefined;
  readonly replay: ReplayGuards | undefined;
  /** Configuration that works but is weak: the CLI logs these. */
  readonly warnings: string[];
}

export function tlsHostnames(settings: Readonly<Settings>): string[] {
  const names = new Set<string>([hostname(), ...settings.tlsHostnames]);
  if (settings.host !== '0.0.0.0' && settings.host !== '::') names.add(settings.host);
  return [...names];
}

export async function loadTls(settings: Readonly<Settings>): Promise<TlsMaterial> {
  return loadTlsMaterial({
    certFile: settings.tlsCert ?? undefined,
    keyFile: settings.tlsKey ?? undefined,
    caFile: settings.tlsCa ?? undefined,
    clientAuth: settings.tlsClientAuth,
    hostnames: tlsHostnames(settings),
    alpnProtocols: ['http/1.1'],
    ciphers: settings.tlsCiphers,
  });
}

export async function createSecurity(settings: Readonly<Settings>, env: NodeJS.ProcessEnv = process.env): Promise<SecurityContext> {
  const warnings: string[] = [];
  const networkListeners =
    settings.wsPort !== null || settings.tcpPort !== null || settings.rawPort !== null || settings.adminPort !== null;
  const tls = settings.insecure || !networkListeners ? undefined : await loadTls(settings);
  if (settings.insecure && (settings.tlsCert !== null || settings.tlsClientAuth !== 'none')) {
    throw new ConfigError('insecure', 'cannot be combined with --tls-cert or --tls-client-auth');
  }

  let auth: Authenticator | undefined;
  if (settings.auth === 'token') {
    const tokens =
      settings.authTokens !== null
        ? parseTokens(settings.authTokens, 'authTokens')
        : await loadTokens({ file: settings.authTokensFile ?? undefined, env: env['ECHO_AUTH_TOKENS'] });
    auth = createAuthenticator({ mode: 'token', tokens });
  } else if (settings.auth === 'jwt') {
    const publicKeyPem = settings.jwtPublicKey === null ? undefined : await readKey(settings.jwtPublicKey);
    auth = createAuthenticator({
      mode: 'jwt',
      jwt: {
        secret: settings.jwtSecret ?? undefined,
        publicKeyPem,
        jwksUrl: settings.jwtJwksUrl ?? undefined,
        audience: settings.jwtAudience ?? undefined,
        issuer: settings.jwtIssuer ?? undefined,
        clockToleranceSec: settings.jwtClockToleranceMs / 1000,
        maxLifetimeSec: settings.jwtMaxLifetimeMs / 1000,
      },
    });
  }
  if (auth !== undefined) warnings.push(...auth.warnings);
  // Every connection holds a file descriptor: say so when the OS limit is below maxConnections.
  const fdWarning = fdLimitWarning(settings.maxConnections, readOpenFileLimit());
  if (fdWarning !== undefined) warnings.push(fdWarning);
  // Framings without a hello cannot carry credentials: only a client certificate can identify them.
  if (auth !== undefined && settings.tlsClientAuth !== 'require') {
    if (settings.tcpPort !== null && settings.tcpFraming === 'len')
      throw new ConfigError('tcpFraming', "'len' carries no credentials: use v1 (hello) or --tls-client-auth require with --auth");
    if (settings.rawPort !== null)
      throw new ConfigError('rawPort', 'the raw echo carries no credentials: turn it off or use --tls-client-auth require with --auth');
  }

  const burstSec = settings.rateBurstMs / 1000;
  const ceilingFactor = settings.rateCeiling > 0 ? settings.rateCeiling : undefined;
  const connectionRate: RateLimitOptions = {
    messagesPerSec: settings.rateMessages,
    bytesPerSec: settings.rateBytes,
    burstSec,
    ceilingFactor,
  };
  const clientRate: RateLimitOptions = {
    messagesPerSec: settings.clientRateMessages,
    bytesPerSec: settings.clientRateBytes,
    burstSec,
    ceilingFactor,
  };
  const clients =
    rateLimitEnabled(clientRate) || settings.maxConnectionsPerClient > 0
      ? new ClientLimits({ rate: clientRate, maxConnectionsPerClient: settings.maxConnectionsPerClient, maxEntries: settings.maxClients })
      : undefined;

  // Browsers send ambient credentials only with client certificates (we use no cookies): that is
  // when cross-site WebSocket hijacking matters, so only then does the default narrow to our own origins.
  let origin: OriginCheck | undefined;
  if (settings.allowedOrigins !== null) origin = createOriginCheck(settings.allowedOrigins);

  return {
    tls,
    auth,
    authQueryParam: settings.authQueryParam,
    origin,
    clients,
    connectionRate: rateLimitEnabled(connectionRate) ? connectionRate : undefined,
    replay:
      settings.replayWindowMs === null
        ? undefined
        : new ReplayGuards({ windowMs: settings.replayWindowMs, maxEntries: settings.replayMaxEntries }),
    warnings,
  };
}

/** The default origin list once the WebSocket port is known (mTLS on, no explicit list). */
export function defaultOriginCheck(settings: Readonly<Settings>, port: number, secure: boolean): OriginCheck | undefined {
  if (settings.allowedOrigins !== null || settings.tlsClientAuth === 'none') return undefined;
  return createOriginCheck(selfOrigins(tlsHostnames(settings), port, secure));
}

async function readKey(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError('jwtPublicKey', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
