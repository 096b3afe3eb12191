/**
 * TLS material: certificate files or a generated self-signed certificate, mTLS settings,
 * reload on file change or SIGHUP, and the client-certificate identity.
 *
 * Reload: `server.setSecureContext(material.secureContextOptions)` swaps the certificate for
 * new handshakes; established connections keep theirs (Node docs, tls.Server#setSecureContext).
 */
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContextOptions, type Server as TlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { Worker } from 'node:worker_threads';
import { TLS_CIPHERS } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { SelfSignedRequest } from './self-signed-worker.js';

export type ClientAuth = 'none' | 'optional' | 'require';

export interface TlsMaterialOptions {
  /** PEM certificate (chain), leaf first. With `keyFile`; both or neither. */
  readonly certFile?: string;
  /** PEM private key (unencrypted). */
  readonly keyFile?: string;
  /** PEM CA bundle that signs client certificates (mTLS). Required unless clientAuth is 'none'. */
  readonly caFile?: string;
  /** @default 'none' */
  readonly clientAuth?: ClientAuth;
  /** Names the generated certificate is valid for, besides localhost, 127.0.0.1 and ::1. */
  readonly hostnames?: readonly string[];
  /** ALPN protocols offered by the server, e.g. `['http/1.1']` on the WebSocket listener. @default none */
  readonly alpnProtocols?: readonly string[];
  /** Generated certificate validity. @default 365 (days) */
  readonly selfSignedDays?: number;
  /** Clock for the generated certificate's validity, epoch ms. @default Date.now */
  readonly now?: () => number;
  /**
   * OpenSSL cipher list (TLS 1.2 names, and `TLS_*` TLS 1.3 suites), in the server's order of
   * preference. @default TLS_DEFAULTS.ciphers (ECDHE with AES-GCM or ChaCha20-Poly1305)
   */
  readonly ciphers?: string;
}

export interface TlsMaterial {
  /** For `tls.createSecureContext()` and `server.setSecureContext()` (key, cert, ca, minVersion). */
  readonly secureContextOptions: SecureContextOptions;
  /** For `tls.createServer()` / `https.createServer()`: the above plus requestCert/rejectUnauthorized. */
  readonly serverOptions: TlsOptions;
  /** SHA-256 fingerprint of the leaf certificate, `AA:BB:...` (what `openssl x509 -fingerprint -sha256` prints). */
  readonly fingerprint256: string;
  /** True when the certificate was generated at start (no files given). */
  readonly selfSigned: boolean;
  /** The generated certificate, PEM (public; give it to clients to trust). */
  readonly generatedCertPem?: string;
  readonly subject: string;
  readonly notAfter: Date;
  /** Non-fatal problems to log (e.g. a certificate that expires soon). */
  readonly warnings: readonly string[];
}

export const TLS_DEFAULTS = Object.freeze({
  minVersion: 'TLSv1.2' as const,
  /** The `tlsCiphers` setting's default (src/config/schema.ts): no CBC, no static RSA, no DHE. */
  ciphers: TLS_CIPHERS,
  /** days */
  selfSignedDays: 365,
  /** ms: coalesces the several events one file rotation produces */
  watchDebounceMs: 500,
});

const DAY_MS = 86_400_000;
/** Deadline for generating the self-signed certificate (it takes ~100 ms). */
const SELF_SIGNED_TIMEOUT_MS = 30_000;

async function readPem(file: string, setting: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(setting, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function isIpHost(h: string): boolean {
  return isIP(h) !== 0;
}

/**
 * Generates a self-signed ECDSA P-256 certificate for `hostnames` + localhost, 127.0.0.1, ::1,
 * in a worker thread (self-signed-worker.ts) so that the certificate library is not kept in
 * the server's heap.
 */
export async function generateSelfSigned(
  hostnames: readonly string[],
  options: { days?: number; now?: number; timeoutMs?: number } = {},
): Promise<{ cert: string; key: string }> {
  const now = options.now ?? Date.now();
  const days = options.days ?? TLS_DEFAULTS.selfSignedDays;
  const given = hostnames.map((h) => h.replace(/^\[(.*)\]$/, '$1')).filter((h) => h !== '' && h !== '0.0.0.0' && h !== '::');
  const names = [...new Set([...given, 'localhost', '127.0.0.1', '::1'])];
  const dns = names.filter((h) => !isIpHost(h));
  const ips = names.filter(isIpHost);
  // Back-date a little: a client whose clock is behind ours would otherwise see "not yet valid".
  const request: SelfSignedRequest = { dns, ips, notBefore: now - 5 * 60_000, notAfter: now + days * DAY_MS };
  const timeoutMs = options.timeoutMs ?? SELF_SIGNED_TIMEOUT_MS;
  return new Promise((resolvePems, reject) => {
    const worker = new Worker(new URL('./self-signed-worker.js', import.meta.url), { workerData: request });
    // Start-up must not hang on it: past the deadline the worker is stopped and start fails.
    const timer = setTimeout(() => {
      reject(new Error(`certificate generation took longer than ${timeoutMs} ms`));
      void worker.terminate();
    }, timeoutMs);
    worker.once('message', (pems: { cert: string; key: string }) => resolvePems(pems));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`certificate generation stopped (worker exit code ${code})`));
    });
  });
}

/**
 * Loads (or generates) the TLS material once, at start and on each reload. Throws a ConfigError
 * naming the setting when a file is missing or the key does not match the certificate; on
 * reload, keep the previous context when this throws.
 */
export async function loadTlsMaterial(options: TlsMaterialOptions): Promise<TlsMaterial> {
  const clientAuth = options.clientAuth ?? 'none';
  if (clientAuth !== 'none' && clientAuth !== 'optional' && clientAuth !== 'require')
    throw new ConfigError('tlsClientAuth', `must be none, optional or require, got ${String(clientAuth)}`);
  if ((options.certFile === undefined) !== (options.keyFile === undefined))
    throw new ConfigError(options.certFile === undefined ? 'tlsCert' : 'tlsKey', '--tls-cert and --tls-key go together');
  if (clientAuth !== 'none' && options.caFile === undefined)
    throw new ConfigError('tlsCa', `--tls-client-auth ${clientAuth} needs --tls-ca (the CA that signs client certificates)`);
  const now = options.now?.() ?? Date.now();

  let cert: string;
  let key: string;
  let generatedCertPem: string | undefined;
  if (options.certFile !== undefined && options.keyFile !== undefined) {
    [cert, key] = await Promise.all([readPem(options.certFile, 'tlsCert'), readPem(options.keyFile, 'tlsKey')]);
  } else {
    ({ cert, key } = await generateSelfSigned(options.hostnames ?? [], {
      days: options.selfSignedDays ?? TLS_DEFAULTS.selfSignedDays,
      now,
    }));
    generatedCertPem = cert;
  }
  const ca = options.caFile !== undefined ? await readPem(options.caFile, 'tlsCa') : undefined;

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new ConfigError('tlsCert', 'not a PEM certificate');
  }
  // Fail now, naming the setting, rather than at the first handshake.
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new ConfigError('tlsKey', 'not a PEM private key (encrypted keys are not supported)');
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new ConfigError('tlsKey', 'the private key does not match the certificate');
  if (ca !== undefined) {
    try {
      createSecureContext({ ca });
    } catch {
      throw new ConfigError('tlsCa', 'not a PEM CA bundle');
    }
  }
  const ciphers = options.ciphers ?? TLS_DEFAULTS.ciphers;
  try {
    createSecureContext({ ciphers, minVersion: TLS_DEFAULTS.minVersion });
  } catch {
    throw new ConfigError('tlsCiphers', `not a cipher list OpenSSL accepts: ${ciphers}`);
  }
  // The cipher list is part of the secure context, so a certificate reload keeps it.
  const secureContextOptions: SecureContextOptions = Object.freeze({
    key,
    cert,
    ...(ca !== undefined && { ca }),
    minVersion: TLS_DEFAULTS.minVersion,
    ciphers,
    // Our order, not the client's: a client preferring a weaker suite of the list does not get it.
    honorCipherOrder: true,
  });

  const notAfter = new Date(leaf.validTo);
  const warnings: string[] = [];
  if (notAfter.getTime() <= now) warnings.push(`certificate expired on ${notAfter.toISOString()}`);
  else if (notAfter.getTime() - now < 14 * DAY_MS) warnings.push(`certificate expires on ${notAfter.toISOString()}`);

  const serverOptions: TlsOptions = Object.freeze({
    ...secureContextOptions,
    requestCert: clientAuth !== 'none',
    // 'optional': the handshake succeeds without (or with an unverified) certificate and
    // `socket.authorized` says whether it verified; peerIdentity() only trusts verified ones.
    rejectUnauthorized: clientAuth === 'require',
    ...(options.alpnProtocols !== undefined && { ALPNProtocols: [...options.alpnProtocols] }),
  });
  return Object.freeze({
    secureContextOptions,
    serverOptions,
    fingerprint256: leaf.fingerprint256,
    selfSigned: generatedCertPem !== undefined,
    ...(generatedCertPem !== undefined && { generatedCertPem }),
    subject: leaf.subject,
    notAfter,
    warnings: Object.freeze(warnings),
  });
}

/**
 * The verified client certificate's identity: its subject CN, else the whole subject
 * (`O=...,OU=...`). Undefined without a certificate or when it did not verify against the CA
 * (with `--tls-client-auth optional`, an unverified certificate is just ignored).
 */
export function peerIdentity(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  // Node returns {} when the peer sent no certificate.
  const subject = (cert as { subject?: Record<string, string | string[] | undefined> } | undefined)?.subject;
  if (subject === undefined) return undefined;
  const cn = subject.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  const parts = Object.entries(subject)
    .filter((e): e is [string, string | string[]] => e[1] !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`);
  return parts.length > 0 ? parts.join(',') : undefined;
}

// ---------------------------------------------------------------------------------------------
// Renegotiation

/**
 * Refuses TLS renegotiation on every connection of `server` (a `tls.Server` or `https.Server`).
 * Node limits renegotiations to 3 per 10 minutes and then only *emits* `ERR_TLS_SESSION_ATTACK`
 * on the socket, which stays open; each renegotiation costs the server a handshake (a CPU
 * amplification, and a way to keep an unauthenticated connection busy). We need none: client
 * certificates are asked for in the first handshake, and TLS 1.3 has no renegotiation at all.
 */
export function refuseRenegotiation(server: TlsServer): void {
  server.on('secureConnection', onSecureConnection);
}

function onSecureConnection(socket: TLSSocket): void {
  socket.disableRenegotiation();
  // First in line: the HTTP server's own error handler would answer 400 on the socket, which a
  // client in the middle of its renegotiation handshake does not read as the end.
  socket.prependListener('error', onTlsSocketError);
}

/** A renegotiation attempt is an error event on the socket: end the connection there. */
function onTlsSocketError(this: TLSSocket, err: NodeJS.ErrnoException): void {
  if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || err.code === 'ERR_TLS_SESSION_ATTACK') this.destroy();
}

// ---------------------------------------------------------------------------------------------
// Reload

export interface TlsWatchOptions {
  /** Quiet time after the last file event before reloading. @default 500 (ms) */
  readonly debounceMs?: number;
  /** Called when reading the files for the change check fails (e.g. mid-rotation). */
  readonly onError?: (err: Error) => void;
}

export interface TlsWatcher {
  /** Reloads now (what SIGHUP does), without checking whether the files changed. */
  reload(): void;
  /** Stops watching; idempotent. No watcher or timer is left behind. */
  close(): void;
}

/**
 * Watches certificate files and calls `onChange` when their content changes, debounced.
 *
 * It watches the files' *directories*, not the files: editors and cert-manager replace files by
 * rename (Kubernetes swaps a `..data` symlink), after which a watch on the old inode goes
 * silent. Any event in a watched directory schedules a check; `onChange` runs only when the
 * SHA-256 of the files' contents differs from the last seen, so unrelated files in the same
 * directory cause no reload.
 */
export function watchTlsFiles(files: readonly string[], onChange: () => void, options: TlsWatchOptions = {}): TlsWatcher {
  const debounceMs = options.debounceMs ?? TLS_DEFAULTS.watchDebounceMs;
  const paths = [...new Set(files.map((f) => resolve(f)))];
  const dirs = [...new Set(paths.map((p) => dirname(p)))];
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let lastDigest: string | undefined;
  let checking: Promise<void> | undefined;

  const digest = async (): Promise<string> => {
    const h = createHash('sha256');
    for (const p of paths)
      h.update(p)
        .update('\0')
        .update(await readFile(p))
        .update('\0');
    return h.digest('hex');
  };
  // The baseline: files as they are now (the caller loaded them just before).
  void digest().then(
    (d) => {
      lastDigest ??= d;
    },
    () => undefined,
  );

  const check = async (): Promise<void> => {
    let d: string;
    try {
      d = await digest();
    } catch (err) {
      if (!closed) options.onError?.(err as Error);
      return;
    }
    if (closed || d === lastDigest) return;
    lastDigest = d;
    onChange();
  };
  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(function tlsWatchDebounced() {
      timer = undefined;
      // Serialize checks so two digests never race and fire onChange twice.
      checking = (checking ?? Promise.resolve()).then(check);
    }, debounceMs);
  };

  const names = new Set(paths.map((p) => basename(p)));
  for (const dir of dirs) {
    const w = watch(dir, { persistent: true }, function onTlsDirEvent(_event, filename) {
      // filename may be null on some platforms; then any event counts. Symlink swaps
      // (`..data`) change no watched name, so events on dot-entries count too.
      if (filename === null || names.has(String(filename)) || String(filename).startsWith('..')) schedule();
    });
    w.on('error', (err: Error) => options.onError?.(err));
    watchers.push(w);
  }

  return {
    reload(): void {
      if (closed) return;
      void digest().then(
        (d) => {
          lastDigest = d;
        },
        () => undefined,
      );
      onChange();
    },
    close(): void {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      for (const w of watchers) w.close();
      watchers.length = 0;
    },
  };
}

/** Minimal signal source (process, or an EventEmitter in tests). */
export interface SignalSource {
  on(event: 'SIGHUP', listener: () => void): unknown;
  off(event: 'SIGHUP', listener: () => void): unknown;
}

/**
 * Makes SIGHUP reload the TLS material. For the CLI only (the library never owns the process):
 * `const detach = onSighupReload(watcher, process)`; call `detach()` at shutdown.
 */
export function onSighupReload(watcher: Pick<TlsWatcher, 'reload'>, source: SignalSource): () => void {
  const listener = function reloadTlsOnSighup(): void {
    watcher.reload();
  };
  source.on('SIGHUP', listener);
  return () => {
    source.off('SIGHUP', listener);
  };
}
