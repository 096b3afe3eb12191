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

export type ReplayVerdict = 'ok' | 'duplicate' | 'stale' | 'future' | 'overflow';

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
