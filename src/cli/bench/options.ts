/**
 * `echoserver bench` flags: parsed with node:util's strict parseArgs, then every value checked
 * on its own, so a bad flag gives one line naming it (the caller exits 2).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseTarget, type Target } from './target.js';

export interface BenchOptions {
  readonly target: Target;
  /** Connections in total (spread over the threads). @default 10 */
  readonly connections: number;
  /** Payload bytes per message. @default 64 */
  readonly size: number;
  /** Messages in flight per connection at most. @default 1 */
  readonly window: number;
  /** Fixed total send rate, messages/s; undefined: closed loop (send as soon as the window allows). */
  readonly rate: number | undefined;
  /** Measured time, ms. @default 10000 */
  readonly durationMs: number;
  /** Load before measuring (not recorded), ms. @default 1000 */
  readonly warmupMs: number;
  /** Worker threads generating the load. @default 1 */
  readonly threads: number;
  /** Time allowed to open each connection (TCP, TLS, upgrade or hello), ms. @default 10000 */
  readonly connectTimeoutMs: number;
  /** Print the result as one JSON document instead of the table. */
  readonly json: boolean;
  /** Write a self-contained HTML report to this file. */
  readonly html: string | undefined;
  readonly tls: BenchTlsOptions;
  /** Token or JWT: `Authorization: Bearer` on WebSocket, the hello frame on v1 streams. */
  readonly token: string | undefined;
  /** WebSocket client: our own frame codec (ws-own-link.ts) or the `ws` package. @default 'own' */
  readonly wsClient: 'own' | 'ws';
}

export interface BenchTlsOptions {
  /** PEM CA certificate(s) to trust instead of the system's. */
  readonly ca: string | undefined;
  /** PEM client certificate and key (mTLS). */
  readonly cert: string | undefined;
  readonly key: string | undefined;
  /** Accept any certificate. */
  readonly insecure: boolean;
  /** Accept exactly the certificate with this SHA-256 fingerprint (upper-case hex, colon-separated, as the server logs it). */
  readonly fingerprint: string | undefined;
}

/** A usage error: one line, exit code 2. */
export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

export const BENCH_HELP = `Usage: echoserver bench URL [options]

Load generator for an echo server. Opens --connections connections, keeps up to --window
messages in flight on each (or sends at a fixed total --rate), checks every echo byte for
byte, and prints throughput, latency percentiles (HDR histogram), connect times and errors.

URL:
  ws://HOST:PORT/PATH, wss://...      WebSocket, binary messages (plain echo, no subprotocol)
  tcp://HOST:PORT, tls://HOST:PORT    framing v1 (binary frames, no header); --framing len for
                                      the bare [u32be length][payload] framing
  unix:PATH                           framing v1 (or len) over a Unix socket

Load:
  --connections N     connections in total, spread over the threads       (default 10)
  --size BYTES        payload bytes per message, e.g. 64, 4KiB, 1MiB       (default 64)
  --window N          messages in flight per connection                    (default 1)
  --rate N            fixed total rate in messages/s; latency is measured from each message's
                      intended send time, so a stalled server is not hidden (coordinated
                      omission); without it the load is closed-loop and latency is measured
                      from the actual send
  --duration TIME     measured time, e.g. 10s, 500ms, 2m                   (default 10s)
  --warmup TIME       load before measuring, not recorded; 0 for none      (default 1s)
  --threads N         worker threads generating the load                   (default 1)
  --framing v1|len    framing for tcp://, tls://, unix:                    (default v1)
  --connect-timeout TIME  time to open each connection                     (default 10s)
  --ws-client own|ws  WebSocket client: our own frame codec, or the ws package (about 1/3 of
                      the messages/s on one core; for comparison)                (default own)

TLS and auth:
  --ca FILE           trust this PEM CA (e.g. the server's self-signed certificate)
  --fingerprint FP    trust exactly the certificate with this SHA-256 fingerprint, in the form
                      the server logs (AA:BB:...; colons and case optional)
  --insecure          do not verify the server's certificate
  --cert FILE --key FILE  client certificate and key (mTLS)
  --token TOKEN       token or JWT: Authorization: Bearer on WebSocket, hello on tcp/tls/unix

Output:
  --json              print the result as JSON (same fields as the table)
  --html FILE         also write a self-contained HTML report (latency over time, percentiles)
  -h, --help          show this help

On a terminal a live line shows the rate, errors and p99 so far (stderr, once a second).
Exit codes: 0 every echo verified, 1 errors (mismatch, lost, closed, connect...), 2 bad usage.
`;

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/i;
const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE = /^(\d+(?:\.\d+)?)(b|kb|kib|mb|mib)?$/i;
const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 * 1024 };

/** Largest payload: far above the server's default frame limit, far below what would exhaust memory. */
export const MAX_SIZE = 64 * 1024 * 1024;
const MAX_CONNECTIONS = 100_000;
const MAX_WINDOW = 100_000;
const MAX_THREADS = 64;

function bad(flag: string, expected: string, raw: string): never {
  throw new BenchUsageError(`${flag} must be ${expected}, got '${raw}'`);
}

function integer(flag: string, raw: string | undefined, fallback: number, lo: number, hi: number): number {
  if (raw === undefined) return fallback;
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  return Number.isSafeInteger(n) && n >= lo && n <= hi ? n : bad(flag, `an integer from ${lo} to ${hi}`, raw);
}

function duration(flag: string, raw: string | undefined, fallback: number, lo: number): number {
  if (raw === undefined) return fallback;
  const m = DURATION.exec(raw.trim());
  // A bare number is seconds here (a duration on a command line for a benchmark is rarely ms).
  const ms = m ? Number(m[1]) * (m[2] === undefined ? 1000 : (DURATION_UNITS[m[2].toLowerCase()] ?? NaN)) : NaN;
  const hi = 24 * 3_600_000;
  return ms >= lo && ms <= hi ? Math.round(ms) : bad(flag, `a duration from ${lo} ms to 24h (e.g. 10, 10s, 500ms, 2m)`, raw);
}

function size(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const m = SIZE.exec(raw.trim());
  const n = m ? Number(m[1]) * (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? NaN) : NaN;
  return Number.isSafeInteger(n) && n >= 1 && n <= MAX_SIZE
    ? n
    : bad(flag, `a size from 1 to ${MAX_SIZE} bytes (e.g. 64, 4KiB, 1MiB)`, raw);
}

function readPem(flag: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new BenchUsageError(`${flag}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Upper-case, colon-separated SHA-256 (`AA:BB:...`), the form `X509Certificate.fingerprint256` and the server's log use. */
export function normalizeFingerprint(raw: string): string | undefined {
  const hex = raw
    .trim()
    .replace(/^sha256[:=]/i, '')
    .replace(/:/g, '')
    .toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return undefined;
  return hex.match(/../g)?.join(':');
}

/** Parses `bench` arguments (after the word `bench`); returns 'help' for -h/--help. Throws BenchUsageError. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        connections: { type: 'string' },
        size: { type: 'string' },
        window: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        threads: { type: 'string' },
        framing: { type: 'string' },
        'connect-timeout': { type: 'string' },
        'ws-client': { type: 'string' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        insecure: { type: 'boolean' },
        fingerprint: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    // parseArgs' messages can span lines ("argument is ambiguous. Did you forget..."): keep the first sentence.
    const first = ((err as Error).message.split('\n')[0] ?? '').split('. ')[0] ?? '';
    throw new BenchUsageError(`${first.replace(/\.$/, '') || 'invalid arguments'} (see echoserver bench --help)`);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  const [url, extra] = parsed.positionals;
  if (url === undefined) throw new BenchUsageError('bench needs a URL, e.g. echoserver bench ws://127.0.0.1:8080/ (see bench --help)');
  if (extra !== undefined) throw new BenchUsageError(`unexpected argument '${extra}' (one URL only)`);
  const framing = v.framing;
  if (framing !== undefined && framing !== 'v1' && framing !== 'len') bad('--framing', 'v1 or len', framing);
  const target = parseTarget(url, framing);

  const connections = integer('--connections', v.connections, 10, 1, MAX_CONNECTIONS);
  const window = integer('--window', v.window, 1, 1, MAX_WINDOW);
  let rate: number | undefined;
  if (v.rate !== undefined) {
    const n = /^\d+(\.\d+)?$/.test(v.rate.trim()) ? Number(v.rate) : NaN;
    rate = n > 0 && n <= 10_000_000 ? n : bad('--rate', 'a number of messages/s above 0 and at most 10000000', v.rate);
  }
  const threads = integer('--threads', v.threads, 1, 1, MAX_THREADS);
  if (threads > connections) throw new BenchUsageError(`--threads (${threads}) must not exceed --connections (${connections})`);

  const fingerprint = v.fingerprint === undefined ? undefined : normalizeFingerprint(v.fingerprint);
  if (v.fingerprint !== undefined && fingerprint === undefined) {
    bad('--fingerprint', 'a SHA-256 fingerprint (64 hex digits, colons optional)', v.fingerprint);
  }
  if (v.insecure === true && (v.ca !== undefined || fingerprint !== undefined)) {
    throw new BenchUsageError('--insecure cannot be combined with --ca or --fingerprint');
  }
  if ((v.cert === undefined) !== (v.key === undefined)) throw new BenchUsageError('--cert and --key go together');
  const tlsGiven = v.ca !== undefined || fingerprint !== undefined || v.insecure === true || v.cert !== undefined;
  if (tlsGiven && !target.tls) throw new BenchUsageError(`TLS options need a wss:// or tls:// URL, got ${target.scheme}`);
  if (v.token !== undefined && (v.token.trim() === '' || /[\r\n]/.test(v.token))) {
    throw new BenchUsageError('--token must be a non-empty single-line string');
  }
  if (v.token !== undefined && target.framing === 'len')
    throw new BenchUsageError('--token needs framing v1 or WebSocket (len has no hello)');
  const wsClient = v['ws-client'] ?? 'own';
  if (wsClient !== 'own' && wsClient !== 'ws') bad('--ws-client', 'own or ws', wsClient);
  if (v['ws-client'] !== undefined && target.framing !== 'ws') throw new BenchUsageError('--ws-client needs a ws:// or wss:// URL');
  if (v.html !== undefined && v.html.trim() === '') throw new BenchUsageError('--html needs a file name');

  return {
    target,
    connections,
    size: size('--size', v.size, 64),
    window,
    rate,
    durationMs: duration('--duration', v.duration, 10_000, 100),
    warmupMs: duration('--warmup', v.warmup, 1000, 0),
    threads,
    connectTimeoutMs: duration('--connect-timeout', v['connect-timeout'], 10_000, 1),
    json: v.json === true,
    html: v.html,
    tls: {
      ca: readPem('--ca', v.ca),
      cert: readPem('--cert', v.cert),
      key: readPem('--key', v.key),
      insecure: v.insecure === true,
      fingerprint,
    },
    token: v.token,
    wsClient,
  };
}
