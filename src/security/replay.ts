/**
 * Replay protection for metadata headers (`id`, `ts`; PROTOCOL-NOTES "Metadata header"):
 * a `ts` outside [now - window, now + window] is refused, and so is an `id` already seen while
 * it is remembered. Socket-free: the caller passes `now` (epoch ms, the clock `ts` uses).
 *
 * Scope: one guard per authenticated identity (shared by its connections) so a message cannot
 * be replayed on a new connection; per connection when there is no identity. Because a full
 * guard refuses (see below), a client that fills its guard only refuses itself.
 *
 * A message with neither `id` nor `ts` passes: replay protection is something the client opts
 * into by sending them. Under TLS an outsider cannot capture messages; what this catches is a
 * client (or a proxy, a retrying library) sending the same message twice.
 */
import { createHash } from 'node:crypto';
import { CloseCode, ConfigError, ErrorCode, ProtocolError } from '../errors.js';

export type ReplayVerdict = 'ok' | 'duplicate' | 'stale' | 'future' | 'overflow' | 'invalid id' | 'invalid ts';

export interface ReplayGuardOptions {
  /** Accepted clock skew of `ts` either way, and how long an `id` is remembered. @default 30_000 (ms) */
  readonly windowMs?: number;
  /**
   * Hard cap on remembered ids. Size it >= the client's message rate x 2 x window.
   * Memory: about 200 bytes per entry (ids longer than 64 characters are stored as a 44-byte
   * hash), so the default is about 2 MB per guard at worst. @default 10_000 (entries)
   */
  readonly maxEntries?: number;
}

export const REPLAY_DEFAULTS = Object.freeze({
  /** ms */
  windowMs: 30_000,
  /** entries */
  maxEntries: 10_000,
});

// Ids are client-chosen strings, bounded only by the header size (4 KiB by default); storing
// long ones as a fixed-size digest keeps the memory per entry bounded.
const MAX_STORED_ID_LENGTH = 64;

/**
 * A capped table of recently seen message ids.
 *
 * **When full.** If the table holds `maxEntries` ids that are all still remembered, the guard
 * refuses the message with `'overflow'` rather than evicting the oldest id. Evicting would make
 * protection silently depend on traffic volume: an attacker could flush an id out with
 * `maxEntries` fresh ones and then replay it inside the window. Refusing fails closed, and, with
 * one guard per client, costs only the client that sends ids faster than the operator allowed.
 * The caller closes with 1008, like any other refusal ({@link replayError}).
 *
 * **How long an id is remembered.** Until `max(now, ts) + window`: a message stamped in the
 * future stays acceptable by its `ts` until `ts + window`, so its id must be remembered as long
 * (at most 2 x window). Without `ts`, for `window` after it was seen.
 *
 * Expired ids are dropped from the oldest end on every call (amortized O(1)). Because expiry
 * times are not strictly ordered by arrival (they depend on `ts`), an expired id may sit behind
 * an unexpired older one for up to one window; it then still counts toward the cap, which errs
 * on the side of refusing.
 */
export class ReplayGuard {
  readonly windowMs: number;
  readonly maxEntries: number;
  // id -> expiry (ms). Insertion order = arrival order.
  readonly #seen = new Map<string, number>();

  constructor(options: ReplayGuardOptions = {}) {
    const w = options.windowMs ?? REPLAY_DEFAULTS.windowMs;
    if (!Number.isFinite(w) || w <= 0) throw new ConfigError('replayWindowMs', `must be a positive number of ms, got ${w}`);
    const m = options.maxEntries ?? REPLAY_DEFAULTS.maxEntries;
    if (!Number.isSafeInteger(m) || m < 1) throw new ConfigError('replayMaxEntries', `must be an integer >= 1, got ${m}`);
    this.windowMs = w;
    this.maxEntries = m;
  }

  /** Remembered ids (including not-yet-dropped expired ones). */
  get size(): number {
    return this.#seen.size;
  }

  check(id: string | undefined, ts: number | undefined, now: number): ReplayVerdict {
    this.#expire(now);
    if (ts !== undefined) {
      // A non-numeric or NaN ts cannot be placed in the window: refuse rather than ignore it.
      if (!Number.isFinite(ts) || ts < now - this.windowMs) return 'stale';
      if (ts > now + this.windowMs) return 'future';
    }
    if (id === undefined) return 'ok';
    const key = id.length > MAX_STORED_ID_LENGTH ? `#${createHash('sha256').update(id).digest('base64')}` : id;
    const expiry = this.#seen.get(key);
    if (expiry !== undefined && expiry > now) return 'duplicate';
    if (expiry !== undefined) this.#seen.delete(key);
    else if (this.#seen.size >= this.maxEntries) return 'overflow';
    this.#seen.set(key, Math.max(now, ts ?? now) + this.windowMs);
    return 'ok';
  }

  #expire(now: number): void {
    for (const [k, expiry] of this.#seen) {
      if (expiry > now) return;
      this.#seen.delete(k);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Header fields

// Longest `ts` string looked at: RFC 3339 with nanoseconds and an offset is 35 characters.
const MAX_TS_LENGTH = 64;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/**
 * An RFC 3339 date-time (`2026-02-04T12:00:00Z`, `2026-02-04T13:00:00.250+01:00`) as epoch
 * milliseconds, or NaN. Strict: every field in range (a leap second `:60` counts as `:59`),
 * an offset or `Z` required — `Date.parse` would take local time for a missing offset and
 * accept many other shapes.
 */
export function parseRfc3339(text: string): number {
  if (text.length > MAX_TS_LENGTH) return NaN;
  const m = RFC3339.exec(text);
  if (m === null) return NaN;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) return NaN;
  // Day 0 of the next month is the last day of this one (2000 is a leap year, 2001 is not).
  if (day > new Date(Date.UTC(isLeap(year) ? 2000 : 2001, month, 0)).getUTCDate()) return NaN;
  let offsetMin = 0;
  if (m[8] !== undefined) {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) return NaN;
    offsetMin = (m[8] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, Math.min(second, 59), ms);
  return date.getTime() - offsetMin * 60_000;
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/**
 * A header's `ts` as epoch milliseconds: a finite JSON number (epoch ms), or an RFC 3339 string.
 * Undefined when absent, NaN when present in any other form.
 */
export function headerTimestamp(ts: unknown): number | undefined {
  if (ts === undefined) return undefined;
  if (typeof ts === 'number') return Number.isFinite(ts) ? ts : NaN;
  return typeof ts === 'string' ? parseRfc3339(ts) : NaN;
}

/**
 * The replay fields of a metadata header, validated: `id` must be a string (JSON numbers,
 * objects, arrays, booleans and null are refused, so that no two spellings map to one id and no
 * id escapes the table), `ts` a number of epoch ms or an RFC 3339 string. Returns the verdict
 * to refuse with (1008) otherwise.
 */
export function replayFields(
  header: Readonly<Record<string, unknown>>,
): { id: string | undefined; ts: number | undefined } | 'invalid id' | 'invalid ts' {
  const rawId = header['id'];
  if (rawId !== undefined && typeof rawId !== 'string') return 'invalid id';
  const ts = headerTimestamp(header['ts']);
  if (ts !== undefined && Number.isNaN(ts)) return 'invalid ts';
  return { id: rawId, ts };
}

/** The close for a refused message (1008); the reason names the verdict, which is not a secret. */
export const replayError = (verdict: Exclude<ReplayVerdict, 'ok'>): ProtocolError =>
  new ProtocolError(ErrorCode.REPLAY, CloseCode.POLICY_VIOLATION, `replay protection: ${verdict}`);

/**
 * One {@link ReplayGuard} per client (identity, else IP), so a client that fills its table
 * is refused alone. Memory is bounded twice: `maxEntries` ids per client and `maxClients`
 * tables; past that the least recently used client's table is dropped (that client's earlier
 * ids could then be replayed once — an attacker would need `maxClients` other identities or
 * addresses active in the window to cause it).
 */
export class ReplayGuards {
  readonly #tables = new Map<string, ReplayGuard>();

  constructor(
    readonly options: ReplayGuardOptions,
    /** @default 1024 (tables) */
    readonly maxClients = 1024,
  ) {
    new ReplayGuard(options); // validates the options once, at start
    if (!Number.isSafeInteger(maxClients) || maxClients < 1)
      throw new ConfigError('replayMaxClients', `must be an integer >= 1, got ${maxClients}`);
  }

  /** The client's table (created on first use; most recently used last). */
  for(clientKey: string): ReplayGuard {
    let guard = this.#tables.get(clientKey);
    if (guard !== undefined) {
      this.#tables.delete(clientKey);
    } else {
      guard = new ReplayGuard(this.options);
      if (this.#tables.size >= this.maxClients) {
        const oldest = this.#tables.keys().next().value;
        if (oldest !== undefined) this.#tables.delete(oldest);
      }
    }
    this.#tables.set(clientKey, guard);
    return guard;
  }

  /** Drops a client's table (a connection-keyed table when its connection closes). */
  forget(clientKey: string): void {
    this.#tables.delete(clientKey);
  }

  get clients(): number {
    return this.#tables.size;
  }
}
