/**
 * The one settings schema (STYLE practice 5). Each row of `SETTINGS` names a setting once and
 * feeds library options, CLI flags, `ECHO_*` env vars, config-file keys, `--help` and the
 * `Settings` type itself, which is derived from the rows (name, kind, choices, nullable): its
 * documentation, units and ranges live in the row and cannot drift. Adding a setting is adding
 * one row. Every value is parsed by its row's `kind`, so all sources accept the same
 * syntax and produce the same error message, which names the setting as the user spelled it.
 */
import { hostname } from 'node:os';
import { usableCpus } from './cpus.js';
import { ConfigError } from '../errors.js';
import { firstInvalidCidr } from '../security/cidr.js';

export type SettingKind = 'port' | 'duration' | 'bytes' | 'int' | 'ratio' | 'string' | 'bool' | 'enum' | 'list' | 'path';

/** The value type of a kind (before `choices` narrow an enum and `nullable` adds null). */
interface KindValue {
  port: number;
  duration: number;
  bytes: number;
  int: number;
  ratio: number;
  string: string;
  bool: boolean;
  enum: string;
  list: string[];
  path: string;
}

/** The value of a row: its kind's type, narrowed to its choices, with null when nullable. */
type RowValue<Kd extends SettingKind, C extends readonly string[], Nl extends boolean> =
  (Kd extends 'enum' ? C[number] : KindValue[Kd]) | (Nl extends true ? null : never);

/** One setting. `V` is its value type (derived from the row by `row()`). */
export interface SettingDefinition<N extends string = string, V = unknown> {
  /** camelCase: the library option and the config-file key. */
  readonly name: N;
  /** CLI flag, e.g. `--ws-port`. */
  readonly flag: `--${string}`;
  /** Environment variable; derived from the flag (`--ws-port` => `ECHO_WS_PORT`) unless given. */
  readonly env: `ECHO_${string}`;
  readonly kind: SettingKind;
  readonly default: V;
  /** Shown by `--help` instead of `default` when the default is computed at start. */
  readonly defaultText?: string;
  /** One sentence for `--help` and docs. */
  readonly doc: string;
  /** Unit of the stored number (`ms`, `bytes`), shown by `--help`. */
  readonly unit?: string;
  /** Allowed values of an `enum`. */
  readonly choices?: readonly string[];
  /** Inclusive bounds of a number (port, int, duration, bytes). */
  readonly min?: number;
  readonly max?: number;
  /** `off`, `none`, `false` or null switch the feature off: the value becomes null. */
  readonly nullable?: boolean;
  /** Words accepted besides the kind's syntax, with the value each stands for (e.g. `auto`). */
  readonly words?: Readonly<Record<string, V>>;
  /** Extra rule after parsing: returns what is wrong, or undefined. Method syntax keeps rows of
   *  different `V` assignable to `SettingDefinition` (methods are checked bivariantly). */
  check?(value: V): string | undefined;
}

// setTimeout clamps delays above 2^31-1 ms to 1 ms (with a TimeoutOverflowWarning), which would
// turn a "very long" timeout into an immediate one; cap durations there.
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * TLS 1.3 suites (all AEAD), then TLS 1.2: forward-secret ECDHE with AES-GCM or ChaCha20-Poly1305
 * only. Node's default list also allows CBC suites (Lucky13-style padding oracles) for TLS 1.2.
 */
// With the server's order honoured, the first suite is what nearly every client gets:
// AES-128-GCM (hardware AES makes it the fastest, ~15% more wss throughput than AES-256-GCM here;
// bench/RESULTS.md 2026-12-01 22:31), then AES-256-GCM and ChaCha20-Poly1305.
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
// sun_path in sockaddr_un: 108 bytes on Linux, 104 on macOS/BSD, including the NUL. Longer
// paths fail at listen() with a confusing EINVAL/ENAMETOOLONG, so reject them up front.
const MAX_UNIX_PATH = process.platform === 'linux' ? 107 : 103;

// Paths the HTTP side already serves (http-routes.ts): the request echo may not shadow them.
const RESERVED_PATHS: readonly string[] = ['/healthz', '/readyz', '/info', '/metrics', '/metrics/design', '/console', '/whoami'];

/** What a row is written as: the value type follows from `kind`, `choices` and `nullable`. */
interface RowInput<N extends string, Kd extends SettingKind, C extends readonly string[], Nl extends boolean> {
  readonly name: N;
  readonly flag: `--${string}`;
  readonly env?: `ECHO_${string}`;
  readonly kind: Kd;
  readonly choices?: C;
  readonly nullable?: Nl;
  readonly default: RowValue<Kd, C, Nl>;
  readonly defaultText?: string;
  readonly doc: string;
  readonly unit?: string;
  readonly min?: number;
  readonly max?: number;
  readonly words?: Readonly<Record<string, RowValue<Kd, C, Nl>>>;
  check?(value: RowValue<Kd, C, Nl>): string | undefined;
}

function row<
  const N extends string,
  const Kd extends SettingKind,
  const C extends readonly string[] = [],
  const Nl extends boolean = false,
>(input: RowInput<N, Kd, C, Nl>): SettingDefinition<N, RowValue<Kd, C, Nl>> {
  const env = input.env ?? (`ECHO_${input.flag.slice(2).replace(/-/g, '_').toUpperCase()}` as const);
  const dflt = Array.isArray(input.default) ? Object.freeze([...(input.default as string[])]) : input.default;
  return Object.freeze({ ...input, env, default: dflt as RowValue<Kd, C, Nl> });
}

const ROWS = [
  row({ name: 'host', flag: '--host', kind: 'string', default: '0.0.0.0', doc: 'Bind address for network listeners.' }),
  row({
    name: 'wsPort',
    flag: '--ws-port',
    kind: 'port',
    nullable: true,
    default: 8080,
    doc: "WebSocket listener port; 0 picks a free port, 'off' disables it.",
  }),
  row({
    name: 'wsPaths',
    flag: '--ws-path',
    kind: 'list',
    default: ['/', '/ws'],
    doc: 'Comma-separated URL paths that accept WebSocket upgrades.',
    check: (paths) => (paths.every((p) => p.startsWith('/')) ? undefined : "each path must start with '/'"),
  }),
  row({
    name: 'tcpPort',
    flag: '--tcp-port',
    kind: 'port',
    nullable: true,
    default: 9000,
    doc: "TCP listener port (framed protocol); 0 picks a free port, 'off' disables it.",
  }),
  row({
    name: 'tcpFraming',
    flag: '--tcp-framing',
    kind: 'enum',
    choices: ['v1', 'len'],
    default: 'v1',
    doc: 'Framing on TCP and Unix sockets: v1 (typed frames with metadata) or len (length prefix only).',
  }),
  row({
    name: 'unixPath',
    flag: '--unix',
    kind: 'path',
    nullable: true,
    default: null,
    doc: 'Unix socket path for the framed protocol; off by default.',
    // Windows named pipes (\\.\pipe\name) are not bound by sun_path.
    check: (p) =>
      p === null || /^\\\\[.?]\\pipe\\/i.test(p) || Buffer.byteLength(p) <= MAX_UNIX_PATH
        ? undefined
        : `must be at most ${MAX_UNIX_PATH} bytes (the OS limit for socket paths)`,
  }),
  row({
    name: 'rawPort',
    flag: '--raw-port',
    kind: 'port',
    nullable: true,
    default: null,
    doc: 'Raw TCP echo port (RFC 862, no framing); off by default.',
  }),
  row({
    name: 'insecure',
    flag: '--insecure',
    kind: 'bool',
    default: false,
    doc: 'Turn TLS off on the network listeners (plaintext); logs a warning when the bind address is not loopback.',
  }),
  row({
    name: 'instance',
    flag: '--instance',
    kind: 'string',
    default: hostname(),
    defaultText: 'the host name',
    doc: 'Instance name reported in hello messages, logs and metrics.',
  }),
  row({
    name: 'maxConnections',
    flag: '--max-connections',
    kind: 'int',
    min: 1,
    default: 100_000,
    doc: 'Maximum concurrent connections across all listeners; more are refused.',
  }),
  row({
    name: 'maxFrameBytes',
    flag: '--max-frame-bytes',
    kind: 'bytes',
    unit: 'bytes',
    min: 1,
    max: 2 ** 31 - 1,
    // 16 MiB: the largest messages of the standard WebSocket conformance suite (Autobahn 9.x)
    // echo; memory per connection stays bounded by it.
    default: 16_777_216,
    doc: 'Largest v1/len frame body and largest WebSocket message (sum of fragments).',
  }),
  // The echo adds `srv` (~150 bytes) to the header, whose length field is a u16: keep room for it.
  row({
    name: 'maxHeaderBytes',
    flag: '--max-header-bytes',
    kind: 'bytes',
    unit: 'bytes',
    min: 2,
    max: 64_512,
    default: 4096,
    doc: 'Largest v1 metadata header.',
  }),
  // Below 1 KiB the queue would pause reading after every small message.
  row({
    name: 'maxQueueBytes',
    flag: '--max-queue-bytes',
    kind: 'bytes',
    unit: 'bytes',
    min: 1024,
    default: 1_048_576,
    doc: 'Per-connection send-queue high water; above it the server stops reading that peer.',
  }),
  // A pod with 256 MiB of memory: 64 MiB of partial frames plus the server itself fits.
  row({
    name: 'maxBufferedBytes',
    flag: '--max-buffered-bytes',
    kind: 'bytes',
    unit: 'bytes',
    min: 65_536,
    default: 67_108_864,
    doc: 'Server-wide budget for bytes held in partly received frames; above it the server stops reading the peers holding large partial frames (they are throttled, not dropped).',
  }),
  row({
    name: 'socketIo',
    flag: '--socket-io',
    kind: 'enum',
    choices: ['direct', 'stream'],
    default: 'direct',
    doc: 'Plaintext TCP, Unix and WebSocket sockets: direct (reads into one shared buffer, writes straight to the socket while nothing is queued) or stream (through Node streams, as TLS always is).',
  }),
  row({
    name: 'stallTimeoutMs',
    flag: '--stall-timeout',
    kind: 'duration',
    unit: 'ms',
    default: 30_000,
    doc: 'Close a connection whose send queue stays above max-queue-bytes this long; 0 = never.',
  }),
  row({
    name: 'idleTimeoutMs',
    flag: '--idle-timeout',
    kind: 'duration',
    unit: 'ms',
    default: 600_000,
    doc: 'Close a connection with no message either way for this long; 0 = off.',
  }),
  row({
    name: 'keepaliveIntervalMs',
    flag: '--keepalive-interval',
    kind: 'duration',
    unit: 'ms',
    default: 30_000,
    doc: 'Ping every interval and drop a peer silent for two intervals; 0 = off.',
  }),
  row({
    name: 'handshakeTimeoutMs',
    flag: '--handshake-timeout',
    kind: 'duration',
    unit: 'ms',
    min: 1,
    default: 10_000,
    doc: 'Deadline for the WebSocket upgrade or v1 hello.',
  }),
  row({
    name: 'drainTimeoutMs',
    flag: '--drain-timeout',
    kind: 'duration',
    unit: 'ms',
    default: 10_000,
    doc: 'Graceful-shutdown deadline; connections still open then are closed.',
  }),
  row({
    name: 'logLevel',
    flag: '--log-level',
    kind: 'enum',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    doc: 'Minimum log level.',
  }),
  row({
    name: 'logFormat',
    flag: '--log-format',
    kind: 'enum',
    choices: ['auto', 'json', 'pretty'],
    default: 'auto',
    doc: 'Log format; auto is pretty when stdout is a TTY, JSON otherwise.',
  }),
  row({
    name: 'workers',
    flag: '--workers',
    kind: 'int',
    min: 1,
    max: 64,
    default: 1,
    words: { auto: Math.min(64, usableCpus()) },
    doc: "Worker processes sharing the listeners ('auto' = one per CPU the process may use, within a container's CPU limit); a crashed worker is replaced; /readyz is ready when every worker is; /metrics answers for all of them; SIGTERM drains them all.",
  }),
  row({
    name: 'workerId',
    flag: '--worker-id',
    kind: 'string',
    nullable: true,
    default: null,
    doc: 'Worker id shown in the srv stamp, the hello reply, /info, logs and metrics labels; the --workers primary sets it (1..N) for each worker.',
  }),
  row({
    name: 'metrics',
    flag: '--metrics',
    kind: 'bool',
    default: true,
    doc: 'Serve Prometheus metrics at /metrics (lint-clean names) and /metrics/design (the design-document names).',
  }),
  row({
    name: 'console',
    flag: '--console',
    kind: 'bool',
    default: true,
    doc: 'Serve the debug console at /console (and / to browsers) on the WebSocket port; --no-console turns it off.',
  }),
  row({
    name: 'adminPort',
    flag: '--admin-port',
    kind: 'port',
    nullable: true,
    default: null,
    doc: "Separate HTTP port for /metrics, /healthz, /readyz and /info; 'off' keeps them on the WebSocket port only.",
  }),
  row({
    name: 'traceSampleRatio',
    flag: '--trace-sample-ratio',
    kind: 'ratio',
    default: 0.01,
    doc: 'Fraction of messages traced when OTEL_EXPORTER_OTLP_ENDPOINT is set (0..1); a traceparent in the header follows its parent.',
  }),
  row({
    name: 'tlsCert',
    flag: '--tls-cert',
    kind: 'path',
    nullable: true,
    default: null,
    doc: 'PEM certificate chain for every network listener (with --tls-key); re-read on change and SIGHUP. Default: a self-signed certificate generated at start.',
  }),
  row({ name: 'tlsKey', flag: '--tls-key', kind: 'path', nullable: true, default: null, doc: 'PEM private key for --tls-cert.' }),
  row({
    name: 'tlsCa',
    flag: '--tls-ca',
    kind: 'path',
    nullable: true,
    default: null,
    doc: 'PEM CA bundle that signs client certificates (mTLS).',
  }),
  row({
    name: 'tlsClientAuth',
    flag: '--tls-client-auth',
    kind: 'enum',
    choices: ['none', 'optional', 'require'],
    default: 'none',
    doc: "Client certificates (mTLS): none, optional or require (needs --tls-ca); the certificate's subject becomes the identity.",
  }),
  row({
    name: 'tlsHostnames',
    flag: '--tls-hostname',
    kind: 'list',
    default: [],
    doc: 'Extra names for the generated certificate (localhost, 127.0.0.1, ::1 and the host name are always included).',
  }),
  row({
    name: 'auth',
    flag: '--auth',
    kind: 'enum',
    choices: ['none', 'token', 'jwt'],
    default: 'none',
    doc: 'Authentication: none, token (static bearer tokens) or jwt. WebSocket: Authorization: Bearer or ?token=; TCP: the hello frame.',
  }),
  row({
    name: 'authTokensFile',
    flag: '--auth-tokens-file',
    kind: 'path',
    nullable: true,
    default: null,
    doc: 'File of name:token lines (or a JSON object) for --auth token.',
  }),
  row({
    name: 'authTokens',
    flag: '--auth-tokens',
    kind: 'string',
    nullable: true,
    default: null,
    doc: 'Tokens inline as name:token,name2:token2 (prefer ECHO_AUTH_TOKENS or the file: flags show in ps).',
  }),
  row({
    name: 'authQueryParam',
    flag: '--auth-query-param',
    kind: 'string',
    default: 'token',
    doc: 'Query parameter that may carry the token on WebSocket upgrades (browsers cannot set headers).',
  }),
  row({
    name: 'jwtSecret',
    flag: '--jwt-secret',
    kind: 'string',
    nullable: true,
    default: null,
    doc: 'JWT HS256 secret, at least 32 bytes (prefer ECHO_JWT_SECRET).',
  }),
  row({
    name: 'jwtPublicKey',
    flag: '--jwt-public-key',
    kind: 'path',
    nullable: true,
    default: null,
    doc: 'JWT verification key file (PEM: RSA, EC or Ed25519).',
  }),
  row({
    name: 'jwtJwksUrl',
    flag: '--jwt-jwks-url',
    kind: 'string',
    nullable: true,
    default: null,
    doc: 'JWKS URL (https, or http on loopback); keys are cached.',
  }),
  row({ name: 'jwtAudience', flag: '--jwt-audience', kind: 'list', nullable: true, default: null, doc: 'Accepted JWT audiences (aud).' }),
  row({ name: 'jwtIssuer', flag: '--jwt-issuer', kind: 'list', nullable: true, default: null, doc: 'Accepted JWT issuers (iss).' }),
  row({
    name: 'jwtClockToleranceMs',
    flag: '--jwt-clock-tolerance',
    kind: 'duration',
    unit: 'ms',
    max: 300_000,
    default: 30_000,
    doc: 'Clock skew tolerated for JWT exp and nbf.',
  }),
  row({
    name: 'allowedOrigins',
    flag: '--allowed-origins',
    kind: 'list',
    nullable: true,
    default: null,
    doc: "Browser origins allowed to open WebSocket connections ('*' = any); others get 403. Default: any, or only our own when mTLS is on.",
  }),
  row({
    name: 'rateMessages',
    flag: '--rate-messages',
    kind: 'int',
    unit: 'messages/s',
    default: 0,
    doc: 'Per-connection message rate; over it the server stops reading until tokens return (nothing is lost); 0 = unlimited.',
  }),
  row({
    name: 'rateBytes',
    flag: '--rate-bytes',
    kind: 'bytes',
    unit: 'bytes/s',
    default: 0,
    doc: 'Per-connection byte rate; 0 = unlimited.',
  }),
  row({
    name: 'clientRateMessages',
    flag: '--client-rate-messages',
    kind: 'int',
    unit: 'messages/s',
    default: 0,
    doc: 'Per-client message rate (identity, else IP), all its connections together; 0 = unlimited.',
  }),
  row({
    name: 'clientRateBytes',
    flag: '--client-rate-bytes',
    kind: 'bytes',
    unit: 'bytes/s',
    default: 0,
    doc: 'Per-client byte rate; 0 = unlimited.',
  }),
  row({
    name: 'rateBurstMs',
    flag: '--rate-burst',
    kind: 'duration',
    unit: 'ms',
    min: 1,
    default: 1000,
    doc: 'Burst allowance, as time at the rate (1s = one second worth of messages may arrive at once).',
  }),
  row({
    name: 'rateCeiling',
    flag: '--rate-ceiling',
    kind: 'int',
    default: 0,
    doc: 'Hard ceiling: close with 1008 a client that keeps sending at more than N times its rate; 0 = off.',
  }),
  row({
    name: 'maxConnectionsPerClient',
    flag: '--max-connections-per-client',
    kind: 'int',
    default: 0,
    doc: 'Open connections per client (identity, else IP); more get 503 / close 1013; 0 = unlimited.',
  }),
  row({
    name: 'maxClients',
    flag: '--max-clients',
    kind: 'int',
    min: 1,
    default: 100_000,
    doc: 'Clients tracked for per-client limits (a memory cap; keep it >= --max-connections).',
  }),
  row({
    name: 'replayWindowMs',
    flag: '--replay-window',
    kind: 'duration',
    unit: 'ms',
    min: 1,
    nullable: true,
    default: null,
    doc: "Replay protection: refuse (1008) a header id seen within this window or a ts outside it; 'off' by default.",
  }),
  row({
    name: 'replayMaxEntries',
    flag: '--replay-max-entries',
    kind: 'int',
    min: 1,
    default: 10_000,
    doc: 'Replay protection: message ids remembered per client, for up to 1024 clients (when a client is full, its new ids are refused).',
  }),
  row({
    name: 'trustedProxies',
    flag: '--trusted-proxies',
    kind: 'list',
    default: [],
    defaultText: 'none (no proxy is trusted)',
    doc: 'Proxies (IPs or CIDR ranges, IPv4 and IPv6) whose Forwarded / X-Forwarded-For entries are believed; /whoami then reports the client behind them.',
    check: (list) => {
      const bad = firstInvalidCidr(list);
      return bad === undefined ? undefined : `'${bad}' is not an IP address or CIDR range`;
    },
  }),
  row({
    name: 'httpEchoPath',
    flag: '--http-echo-path',
    kind: 'string',
    nullable: true,
    default: '/echo',
    doc: "Path where any HTTP method gets the request back as JSON (method, headers redacted, body); 'off' disables it.",
    check: (p) =>
      p === null
        ? undefined
        : !p.startsWith('/')
          ? "must start with '/'"
          : RESERVED_PATHS.includes(p)
            ? `${p} is already served by the server`
            : undefined,
  }),
  row({
    name: 'maxDelayMs',
    flag: '--max-delay',
    kind: 'duration',
    unit: 'ms',
    default: 30_000,
    doc: 'Longest echo delay a client may ask for (?delay= on the URL, delay in a v1 header); larger requests are refused.',
  }),
  row({
    name: 'faultInjection',
    flag: '--fault-injection',
    kind: 'bool',
    default: false,
    doc: 'Let clients ask for faults (?close=CODE&after=N, ?drop=P, ?stall=MS, header close/drop); refused (403 / close 1008) without it.',
  }),
  row({
    name: 'tlsCiphers',
    flag: '--tls-ciphers',
    kind: 'string',
    default: TLS_CIPHERS,
    defaultText: 'ECDHE with AES-GCM or ChaCha20-Poly1305, TLS 1.3 suites',
    doc: 'OpenSSL cipher list offered on every TLS listener (colon-separated; TLS_* names are TLS 1.3 suites).',
  }),
  row({
    name: 'jwtMaxLifetimeMs',
    flag: '--jwt-max-lifetime',
    kind: 'duration',
    unit: 'ms',
    max: MAX_TIMER_MS,
    default: 0,
    doc: 'Refuse JWTs valid for longer than this (exp - iat, or exp - now without iat); 0 = no cap.',
  }),
] as const;

type Row = (typeof ROWS)[number];

/** Resolved settings, derived from the rows (each row documents its field: unit, range, default). */
export type Settings = { -readonly [R in Row as R['name']]: R extends SettingDefinition<string, infer V> ? V : never };

export const SETTINGS: readonly SettingDefinition[] = Object.freeze(ROWS);
type AnyDefinition = SettingDefinition<keyof Settings, Settings[keyof Settings]>;
const BY_NAME: ReadonlyMap<string, AnyDefinition> = new Map(SETTINGS.map((d) => [d.name, d as AnyDefinition]));

/** Where a value came from; decides how errors name the setting. */
export type SettingSource = 'option' | 'flag' | 'env' | { readonly file: string };

/** The setting as the user spelled it: `maxFrameBytes`, `--max-frame-bytes`, `ECHO_MAX_FRAME_BYTES`,
 *  `cfg.yaml: maxFrameBytes`. */
export function labelFor(source: SettingSource, name: string): string {
  const def = BY_NAME.get(name);
  if (typeof source === 'object') return `${source.file}: ${name}`;
  if (source === 'flag' && def) return def.flag;
  if (source === 'env' && def) return def.env;
  return name;
}

const OFF_WORDS = new Set(['off', 'none', 'false']);
const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);
const DURATION_UNITS: ReadonlyMap<string, number> = new Map([
  ['', 1],
  ['ms', 1],
  ['s', 1000],
  ['m', 60_000],
  ['h', 3_600_000],
]);
// KB/MB/GB are SI (1000-based), KiB/MiB/GiB binary (1024-based), as the IEC names say.
const SIZE_UNITS: ReadonlyMap<string, number> = new Map([
  ['', 1],
  ['b', 1],
  ['kb', 1e3],
  ['kib', 2 ** 10],
  ['mb', 1e6],
  ['mib', 2 ** 20],
  ['gb', 1e9],
  ['gib', 2 ** 30],
]);

function show(raw: unknown): string {
  if (typeof raw === 'string') return `'${raw}'`;
  if (raw === undefined || typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
  try {
    return JSON.stringify(raw) ?? String(raw);
  } catch {
    return String(raw);
  }
}

/** A number with an optional unit suffix, scaled to the base unit; NaN when it does not parse. */
function quantity(raw: unknown, units: ReadonlyMap<string, number>): number {
  if (typeof raw === 'number') return raw;
  if (typeof raw !== 'string') return NaN;
  const m = /^(-?\d+(?:\.\d+)?)([a-z]*)$/i.exec(raw.trim());
  const factor = m ? units.get((m[2] ?? '').toLowerCase()) : undefined;
  if (!m || factor === undefined) return NaN;
  const v = Number(m[1]) * factor;
  // 1.1 * 1000 is 1100.0000000000002 in binary floating point; snap such noise to the integer.
  return Math.abs(v - Math.round(v)) < 1e-6 ? Math.round(v) : v;
}

function integer(raw: unknown): number {
  if (typeof raw === 'number') return raw;
  return typeof raw === 'string' && /^[+-]?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
}

/** Parse one raw value (typed or string form) for `def`; throws ConfigError naming `label`. */
export function parseSetting<K extends keyof Settings>(def: SettingDefinition<K, Settings[K]>, raw: unknown, label: string): Settings[K] {
  const fail = (expected: string): never => {
    throw new ConfigError(label, `must be ${expected}, got ${show(raw)}`);
  };
  const off = def.nullable ? " or 'off'" : '';
  const offWord = typeof raw === 'string' && OFF_WORDS.has(raw.trim().toLowerCase());
  if (def.nullable && (raw === null || raw === false || offWord)) return null as Settings[K];
  const alias = typeof raw === 'string' ? def.words?.[raw.trim().toLowerCase()] : undefined;
  if (alias !== undefined) return alias;
  // One message shape for every number: "must be an integer from 1 to 65535, got '70000'".
  const inRange = (n: number, what: string, lo: number, hi: number, tail = ''): number =>
    Number.isSafeInteger(n) && n >= lo && n <= hi ? n : fail(`${what} from ${lo} to ${hi}${tail}${off}`);
  let value: unknown;
  switch (def.kind) {
    case 'port':
      value = inRange(integer(raw), 'an integer', def.min ?? 0, def.max ?? 65_535);
      break;
    case 'int':
      value = inRange(integer(raw), 'an integer', def.min ?? 0, def.max ?? Number.MAX_SAFE_INTEGER);
      break;
    case 'ratio': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
      value = n >= 0 && n <= 1 ? n : fail('a number from 0 to 1');
      break;
    }
    case 'duration':
      value = inRange(
        quantity(raw, DURATION_UNITS),
        'a duration',
        def.min ?? 0,
        def.max ?? MAX_TIMER_MS,
        ' ms (e.g. 500, 500ms, 1.5s, 5m, 1h)',
      );
      break;
    case 'bytes':
      value = inRange(
        quantity(raw, SIZE_UNITS),
        'a size',
        def.min ?? 0,
        def.max ?? Number.MAX_SAFE_INTEGER,
        ' bytes (e.g. 4096, 64KiB, 1MiB, 4kb)',
      );
      break;
    case 'string':
      // Surrounding blanks come from env files and YAML quoting, never from intent.
      value = typeof raw === 'string' && raw.trim() !== '' ? raw.trim() : fail(`a non-empty string${off}`);
      break;
    case 'path':
      value = typeof raw === 'string' && raw !== '' ? raw : fail(`a non-empty path${off}`);
      break;
    case 'bool': {
      const word = typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
      if (typeof raw === 'boolean') value = raw;
      else if (word !== undefined && TRUE_WORDS.has(word)) value = true;
      else if (word !== undefined && FALSE_WORDS.has(word)) value = false;
      else fail('true or false');
      break;
    }
    case 'enum': {
      const choices = def.choices ?? [];
      const word = typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
      value = choices.find((c) => c === word) ?? fail(`one of ${choices.join(', ')}`);
      break;
    }
    case 'list': {
      const items: unknown[] = typeof raw === 'string' ? raw.split(',') : Array.isArray(raw) ? (raw as unknown[]) : fail('a list');
      const list = items.map((i) => (typeof i === 'string' ? i.trim() : fail('a list of strings'))).filter((i) => i !== ''); // `/a,,/b` and a trailing comma are harmless
      // A list whose default is empty may be empty (e.g. tlsHostnames); others need an entry.
      const mayBeEmpty = Array.isArray(def.default) && def.default.length === 0;
      value = list.length > 0 || mayBeEmpty ? Object.freeze(list) : fail('a non-empty list');
      break;
    }
  }
  const problem = def.check?.(value as Settings[K]);
  if (problem !== undefined) throw new ConfigError(label, `${problem}, got ${show(raw)}`);
  return value as Settings[K];
}

/**
 * Parse one source's values (camelCase keys). `undefined` means "not set here". Unknown keys are
 * an error naming the key, so a typo never silently falls back to a default.
 */
export function parseLayer(values: Readonly<Record<string, unknown>>, source: SettingSource): Partial<Settings> {
  const out: Partial<Record<keyof Settings, unknown>> = {};
  for (const [key, raw] of Object.entries(values)) {
    const def = BY_NAME.get(key);
    if (!def) throw new ConfigError(labelFor(source, key), source === 'option' ? 'unknown option' : 'unknown setting');
    if (raw !== undefined) out[def.name] = parseSetting(def, raw, labelFor(source, key));
  }
  return out as Partial<Settings>;
}

const DEFAULT_VALUES = Object.fromEntries(SETTINGS.map((d) => [d.name, d.default])) as unknown as Settings;

/** Merge parsed layers over the defaults, lowest precedence first, and freeze the result. */
export function mergeSettings(...layers: readonly Partial<Settings>[]): Readonly<Settings> {
  const merged: Settings = Object.assign({}, DEFAULT_VALUES, ...layers);
  return Object.freeze({ ...merged, wsPaths: Object.freeze([...merged.wsPaths]) as string[] });
}

export const DEFAULTS: Readonly<Settings> = mergeSettings();

/**
 * Validate & complete library options (camelCase keys, values already typed, but also accept the
 * string forms). Unknown keys -> ConfigError. Returns frozen Settings.
 */
export function resolveSettings(options: Partial<Record<keyof Settings, unknown>> = {}): Readonly<Settings> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigError('options', `must be an object, got ${show(options)}`);
  }
  return mergeSettings(parseLayer(options, 'option'));
}
