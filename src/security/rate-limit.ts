/**
 * Rate limiting without sockets or timers: token buckets fed an explicit `now` (epoch or
 * monotonic milliseconds, the caller's choice, as long as it is the same clock throughout).
 *
 * How a transport uses it (PROTOCOL-NOTES "Rates, queues, limits"): for each decoded message it
 * calls `takeAll([connLimiter, clientLimiter], bytes, now)`. `0` means go on; a positive number
 * is how long to stop reading that peer (pause the socket, hold the one message already decoded,
 * retry it after that many milliseconds). Nothing is dropped; TCP flow control pushes back on
 * the client. `noteArrival()` feeds the optional hard ceiling, which closes with 1008.
 */
import { isIPv6 } from 'node:net';
import { CloseCode, ConfigError, ErrorCode, ProtocolError } from '../errors.js';

export interface TokenBucketOptions {
  /** Refill rate in tokens per second. Must be > 0 and finite. */
  readonly ratePerSec: number;
  /** Capacity in tokens. Must be > 0 and finite. @default one second's worth (`ratePerSec`) */
  readonly burst?: number;
}

// Float arithmetic: 1 - 0.99 is 0.010000000000000009, which would round a 1 ms wait up to 2 ms,
// and a refill can come out a hair short at exactly the promised time. Waits are rounded with a
// relative slack of 1e-12 and the comparison tolerates a relative 1e-9, so a retry at the
// promised time always succeeds and exact waits stay exact.
const EPSILON = 1e-9;
const ROUNDING_SLACK = 1 - 1e-12;

function positive(setting: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(setting, `must be a positive finite number, got ${value}`);
  return value;
}

/**
 * A token bucket that may go into debt.
 *
 * A request of `n` tokens is granted when the bucket holds at least `min(n, burst)` tokens; the
 * full `n` is then subtracted, possibly leaving a negative balance (debt). So a message larger
 * than the burst is admitted once the bucket is full, and the debt it leaves delays whatever
 * comes next until the average rate is respected again. Without debt such a message could
 * never pass; with it, large and small messages cost exactly their size over time.
 */
export class TokenBucket {
  readonly ratePerSec: number;
  readonly burst: number;
  #tokens: number;
  #last: number;

  /** The bucket starts full at `now`. */
  constructor(options: TokenBucketOptions, now: number) {
    this.ratePerSec = positive('ratePerSec', options.ratePerSec);
    this.burst = positive('burst', options.burst ?? options.ratePerSec);
    this.#tokens = this.burst;
    this.#last = now;
  }

  #refill(now: number): void {
    // A clock that steps backwards refills nothing (and never un-refills).
    if (now <= this.#last) return;
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.ratePerSec) / 1000);
    this.#last = now;
  }

  /** Tokens available at `now` (negative while in debt). */
  available(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  /** True when the bucket is full: a fresh bucket would behave identically, so it may be forgotten. */
  isFull(now: number): boolean {
    return this.available(now) >= this.burst * (1 - EPSILON);
  }

  /** Milliseconds until `take(n)` would succeed; 0 if it would now. Consumes nothing. */
  wait(n: number, now: number): number {
    if (!(n > 0)) return 0;
    this.#refill(now);
    const need = Math.min(n, this.burst);
    const missing = need - this.#tokens;
    if (missing <= EPSILON * Math.max(1, need)) return 0;
    return Math.max(1, Math.ceil(((missing * 1000) / this.ratePerSec) * ROUNDING_SLACK));
  }

  /** Subtracts `n` tokens unconditionally (the bucket may go into debt). */
  consume(n: number, now: number): void {
    this.#refill(now);
    if (n > 0) this.#tokens -= n;
  }

  /**
   * Takes `n` tokens: returns 0 when taken, else the milliseconds (>= 1) until they will be
   * available; nothing is taken then. `n <= 0` is always granted.
   */
  take(n: number, now: number): number {
    const w = this.wait(n, now);
    if (w === 0) this.consume(n, now);
    return w;
  }
}

export interface RateLimitOptions {
  /** Messages per second; undefined or 0 = unlimited. @default undefined (unlimited) */
  readonly messagesPerSec?: number;
  /** Payload bytes per second; undefined or 0 = unlimited. @default undefined (unlimited) */
  readonly bytesPerSec?: number;
  /**
   * Bucket capacity, in seconds of the rate (e.g. 2 = a client may send two seconds' worth at
   * once after being idle). @default 1 (seconds)
   */
  readonly burstSec?: number;
  /**
   * Hard ceiling factor N: see {@link RateLimiter.noteArrival}. undefined or 0 = no ceiling.
   * Must be >= 1 when set. @default undefined (off)
   */
  readonly ceilingFactor?: number;
}

export const RATE_LIMIT_DEFAULTS = Object.freeze({
  /** seconds of rate the bucket holds */
  burstSec: 1,
});

function validateRate(options: RateLimitOptions): void {
  const nonNegative = (name: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new ConfigError(name, `must be a finite number >= 0, got ${v}`);
  };
  nonNegative('rateMessages', options.messagesPerSec);
  nonNegative('rateBytes', options.bytesPerSec);
  if (options.burstSec !== undefined) positive('rateBurst', options.burstSec);
  if (options.ceilingFactor !== undefined && options.ceilingFactor !== 0) {
    if (!Number.isFinite(options.ceilingFactor) || options.ceilingFactor < 1)
      throw new ConfigError('rateCeiling', `must be 0 (off) or a factor >= 1, got ${options.ceilingFactor}`);
  }
}

/** True when the options limit anything at all (callers may skip creating limiters otherwise). */
export function rateLimitEnabled(options: RateLimitOptions): boolean {
  return (options.messagesPerSec ?? 0) > 0 || (options.bytesPerSec ?? 0) > 0;
}

/**
 * A messages/s bucket and a bytes/s bucket, taken together (all or nothing), plus an optional
 * hard ceiling.
 */
export class RateLimiter {
  readonly #messages: TokenBucket | undefined;
  readonly #bytes: TokenBucket | undefined;
  readonly #ceilMessages: TokenBucket | undefined;
  readonly #ceilBytes: TokenBucket | undefined;
  #ceilingExceeded = false;

  constructor(options: RateLimitOptions, now: number) {
    validateRate(options);
    const burstSec = options.burstSec ?? RATE_LIMIT_DEFAULTS.burstSec;
    const m = options.messagesPerSec ?? 0;
    const b = options.bytesPerSec ?? 0;
    const f = options.ceilingFactor ?? 0;
    if (m > 0) this.#messages = new TokenBucket({ ratePerSec: m, burst: m * burstSec }, now);
    if (b > 0) this.#bytes = new TokenBucket({ ratePerSec: b, burst: b * burstSec }, now);
    if (f > 0 && m > 0) this.#ceilMessages = new TokenBucket({ ratePerSec: m * f, burst: m * burstSec * f }, now);
    if (f > 0 && b > 0) this.#ceilBytes = new TokenBucket({ ratePerSec: b * f, burst: b * burstSec * f }, now);
  }

  /** Milliseconds until one message of `bytes` may pass (0 = now). Consumes nothing. */
  wait(bytes: number, now: number): number {
    return Math.max(this.#messages?.wait(1, now) ?? 0, this.#bytes?.wait(bytes, now) ?? 0);
  }

  /** Charges one message of `bytes` unconditionally. */
  consume(bytes: number, now: number): void {
    this.#messages?.consume(1, now);
    this.#bytes?.consume(bytes, now);
  }

  /** One message of `bytes`: 0 when admitted (both buckets charged), else ms to wait (nothing charged). */
  take(bytes: number, now: number): number {
    const w = this.wait(bytes, now);
    if (w === 0) this.consume(bytes, now);
    return w;
  }

  /**
   * The hard ceiling. Call once per message as it *arrives* (before any throttling, and not
   * again when a held message is retried). The ceiling is a second pair of buckets with N times
   * the rate and N times the burst, without debt forgiveness: it is exceeded when an arriving
   * message does not fit, i.e. when the client has sent more than N x burst beyond N x rate —
   * it kept sending at more than N times its rate for about burstSec seconds. While the server
   * pauses reading, arrivals are bounded by what one read returns, so a well-behaved client
   * never gets here; a transport that cannot pause (or a flood packed into huge reads) does.
   * Returns true (and stays true) once exceeded: the caller closes with 1008
   * ({@link rateCeilingError}).
   */
  noteArrival(bytes: number, now: number): boolean {
    if (this.#ceilingExceeded) return true;
    const wm = this.#ceilMessages?.take(1, now) ?? 0;
    const wb = this.#ceilBytes?.take(bytes, now) ?? 0;
    if (wm > 0 || wb > 0) this.#ceilingExceeded = true;
    return this.#ceilingExceeded;
  }

  /**
   * Charges a whole read batch at once: the echo path accounts per read, not per message (the
   * buckets may go into debt; `wait(1, now)` then says how long reading must pause).
   */
  consumeBatch(messages: number, bytes: number, now: number): void {
    this.#messages?.consume(messages, now);
    this.#bytes?.consume(bytes, now);
  }

  /**
   * {@link noteArrival} for a batch of `messages` totalling `bytes` (one read). The whole batch
   * must fit in the ceiling buckets: `take()` would admit any batch into debt whenever the bucket
   * is full, and since reading is paused until the debt is repaid, the bucket is always full
   * again by the next read — a flood packed into big reads would then never reach the ceiling.
   * (A read is bounded by the socket's read size, so one large message spread over several
   * reads is charged piecewise and is not refused for its size alone.)
   */
  noteArrivals(messages: number, bytes: number, now: number): boolean {
    if (this.#ceilingExceeded) return true;
    if (!fits(this.#ceilMessages, messages, now) || !fits(this.#ceilBytes, bytes, now)) {
      this.#ceilingExceeded = true;
      return true;
    }
    if (messages > 0) this.#ceilMessages?.consume(messages, now);
    if (bytes > 0) this.#ceilBytes?.consume(bytes, now);
    return false;
  }

  get ceilingExceeded(): boolean {
    return this.#ceilingExceeded;
  }

  /** True when every bucket is full (the limiter is indistinguishable from a fresh one). */
  isIdle(now: number): boolean {
    for (const b of [this.#messages, this.#bytes, this.#ceilMessages, this.#ceilBytes]) if (b && !b.isFull(now)) return false;
    return true;
  }
}

/** True when `bucket` (if any) holds `n` tokens now, whole (no debt). */
function fits(bucket: TokenBucket | undefined, n: number, now: number): boolean {
  return bucket === undefined || n <= 0 || bucket.available(now) >= n * (1 - EPSILON);
}

/**
 * Takes one message from several limiters at once (e.g. the connection's and the client's):
 * 0 when every limiter admitted it (all charged), else the longest wait (none charged).
 */
export function takeAll(limiters: readonly (RateLimiter | undefined)[], bytes: number, now: number): number {
  let w = 0;
  for (const l of limiters) if (l) w = Math.max(w, l.wait(bytes, now));
  if (w > 0) return w;
  for (const l of limiters) l?.consume(bytes, now);
  return 0;
}

/** The close for a client over its hard ceiling (1008). */
export const rateCeilingError = (): ProtocolError => new ProtocolError(ErrorCode.RATE, CloseCode.POLICY_VIOLATION, 'rate limit exceeded');

// ---------------------------------------------------------------------------------------------
// Per-client registry

/**
 * The key for per-client limits: the authenticated identity, else the remote IP. IPv4-mapped
 * IPv6 addresses count as their IPv4 address, and an IPv6 address counts as its /64 prefix
 * (one subscriber typically owns a whole /64, so per-address keys would be free to rotate).
 */
export function clientKey(identity: string | undefined, remoteAddress: string | undefined): string {
  if (identity !== undefined && identity !== '') return `id:${identity}`;
  if (remoteAddress === undefined || remoteAddress === '') return 'ip:unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped?.[1] !== undefined) return `ip:${mapped[1]}`;
  if (isIPv6(remoteAddress)) return `ip:${ipv6Prefix64(remoteAddress)}::/64`;
  return `ip:${remoteAddress}`;
}

/** The first four groups of an IPv6 address, expanded, lower case (zone ids dropped). */
function ipv6Prefix64(address: string): string {
  const noZone = address.split('%')[0] ?? address;
  const [head = '', tail] = noZone.toLowerCase().split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::ffff:a.b.c.d handled above; others are rare) takes two groups.
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return groups
    .slice(0, 4)
    .map((g) => (g.includes('.') ? '0' : g.replace(/^0+(?=.)/, '')))
    .join(':');
}

export interface ClientLimitsOptions {
  /** Rate applied per client (shared by all of its connections). */
  readonly rate: RateLimitOptions;
  /** Open connections per client; 0 = unlimited. @default 0 (unlimited) */
  readonly maxConnectionsPerClient?: number;
  /**
   * Hard cap on tracked clients. Set it >= the instance's connection limit: entries with open
   * connections are never evicted, so a full table of connected clients refuses new ones.
   * @default 100_000 (entries)
   */
  readonly maxEntries?: number;
}

export const CLIENT_LIMITS_DEFAULTS = Object.freeze({
  /** entries */
  maxEntries: 100_000,
  /** connections per client; 0 = unlimited */
  maxConnectionsPerClient: 0,
});

/** Held by one connection while it is open; `release()` is idempotent. */
export interface ClientLease {
  readonly key: string;
  /** The client's shared limiter; undefined when the rate options limit nothing. */
  readonly limiter: RateLimiter | undefined;
  /** Call when the connection closes. */
  release(now: number): void;
}

export type ClientRefusal = 'per-client-limit' | 'table-full';

interface ClientEntry {
  readonly limiter: RateLimiter | undefined;
  connections: number;
}

// When the table is full, how many least-recently-used unpinned entries to inspect for an idle
// one before evicting the least recently used outright; bounds the work per new client.
const EVICTION_SCAN = 32;

/**
 * Per-client state: a shared rate limiter and an open-connection count, keyed by
 * {@link clientKey}. Memory is capped at `maxEntries`:
 *
 * - entries with open connections are pinned (evicting them would reset a count and let the
 *   client exceed its connection limit);
 * - when full, an unpinned entry is evicted: an idle one (full buckets: forgetting it changes
 *   nothing) among the 32 least recently used if any, else the least recently used — which
 *   forgives that client's unpaid debt; it must reconnect (TLS + auth) to profit, a cost we
 *   accept over unbounded memory;
 * - if every entry is pinned, `open()` refuses with `'table-full'` (answer 503 / 1013).
 *
 * Every operation is O(1) (eviction O(32)); `sweep()` is O(entries) and optional.
 */
export class ClientLimits {
  readonly maxEntries: number;
  readonly maxConnectionsPerClient: number;
  readonly #rate: RateLimitOptions;
  readonly #pinned = new Map<string, ClientEntry>();
  // Map iteration order is insertion order: the first entries are the least recently released.
  readonly #unpinned = new Map<string, ClientEntry>();

  constructor(options: ClientLimitsOptions) {
    validateRate(options.rate);
    this.#rate = options.rate;
    const max = options.maxEntries ?? CLIENT_LIMITS_DEFAULTS.maxEntries;
    if (!Number.isSafeInteger(max) || max < 1) throw new ConfigError('clientLimitsMaxEntries', `must be an integer >= 1, got ${max}`);
    this.maxEntries = max;
    const perClient = options.maxConnectionsPerClient ?? CLIENT_LIMITS_DEFAULTS.maxConnectionsPerClient;
    if (!Number.isSafeInteger(perClient) || perClient < 0)
      throw new ConfigError('maxConnectionsPerClient', `must be an integer >= 0, got ${perClient}`);
    this.maxConnectionsPerClient = perClient;
  }

  /** Tracked clients. */
  get size(): number {
    return this.#pinned.size + this.#unpinned.size;
  }

  /** Open connections of `key` (0 if unknown). */
  connections(key: string): number {
    return this.#pinned.get(key)?.connections ?? 0;
  }

  /** Registers a new connection of client `key`; refuses over the per-client or table limit. */
  open(key: string, now: number): ClientLease | { readonly refused: ClientRefusal } {
    let entry = this.#pinned.get(key);
    if (entry) {
      if (this.maxConnectionsPerClient > 0 && entry.connections >= this.maxConnectionsPerClient) return { refused: 'per-client-limit' };
    } else {
      entry = this.#unpinned.get(key);
      if (entry) {
        this.#unpinned.delete(key);
      } else {
        if (this.size >= this.maxEntries && !this.#evict(now)) return { refused: 'table-full' };
        entry = { limiter: rateLimitEnabled(this.#rate) ? new RateLimiter(this.#rate, now) : undefined, connections: 0 };
      }
      this.#pinned.set(key, entry);
    }
    entry.connections++;
    return this.#lease(key, entry);
  }

  #lease(key: string, entry: ClientEntry): ClientLease {
    let released = false;
    const release = (now: number): void => {
      if (released) return;
      released = true;
      entry.connections--;
      if (entry.connections > 0 || this.#pinned.get(key) !== entry) return;
      this.#pinned.delete(key);
      // Forget a client with nothing left to remember right away; keep one still in debt.
      if (entry.limiter !== undefined && !entry.limiter.isIdle(now)) this.#unpinned.set(key, entry);
    };
    return { key, limiter: entry.limiter, release };
  }

  /** Removes idle unpinned entries; returns how many. Optional housekeeping on a slow interval. */
  sweep(now: number): number {
    let n = 0;
    for (const [k, e] of this.#unpinned) {
      if (e.limiter === undefined || e.limiter.isIdle(now)) {
        this.#unpinned.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Frees one slot; false when every entry is pinned. */
  #evict(now: number): boolean {
    let first: string | undefined;
    let seen = 0;
    for (const [k, e] of this.#unpinned) {
      first ??= k;
      if (e.limiter === undefined || e.limiter.isIdle(now)) {
        this.#unpinned.delete(k);
        return true;
      }
      if (++seen >= EVICTION_SCAN) break;
    }
    if (first === undefined) return false;
    this.#unpinned.delete(first);
    return true;
  }
}
