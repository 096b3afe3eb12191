/**
 * Latency and fault injection, as pure functions and small state machines (no sockets, no
 * timers): what a client asked for on the WebSocket URL (`?delay=`, `?close=&after=`, `?drop=`,
 * `?stall=`) or in a v1 / `echo.v1` metadata header (`delay`, `close`, `drop`), validated
 * against `--max-delay` and `--fault-injection`; and, per connection, when each echo is due
 * and which faults fire. Clock and randomness are injected, so tests need no timers.
 *
 * Latency is always allowed (capped); faults only with `--fault-injection`, so a production
 * server cannot be made to misbehave by whoever can reach it (docs/SECURITY.md).
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { CloseCode, ErrorCode, HttpError, ProtocolError } from '../errors.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from './clock.js';
import type { ConnectionInfo } from './types.js';

/** Name of the diagnostics channel every injected fault is published on (logs subscribe). */
export const FAULT_CHANNEL = 'echoserver:fault';
export const faultChannel = diagnosticsChannel.channel(FAULT_CHANNEL);

/** Kinds counted in `echo_injected_total{kind}`: the delay and each fault. */
export type InjectedKind = 'delay' | 'drop' | 'close' | 'stall';

/** One injected fault (published on {@link FAULT_CHANNEL}). Delays are counted, not published. */
export interface FaultEvent {
  readonly connection: ConnectionInfo;
  readonly fault: 'drop' | 'close' | 'stall';
  /** The close code (close) or the stall in ms (stall). */
  readonly code?: number;
  readonly ms?: number;
  /** Where it was asked for: the URL or a message header. */
  readonly source: 'url' | 'header';
}

export interface InjectionLimits {
  /** Longest delay or stall a client may ask for, ms. */
  readonly maxDelayMs: number;
  /** Whether faults (close, drop, stall) may be asked for. */
  readonly faultInjection: boolean;
}

/** A delay in ms: fixed when `min === max`, else uniform in [min, max] (jitter). */
export interface DelaySpec {
  readonly min: number;
  readonly max: number;
}

/** What a connection asked for on its URL. */
export interface ConnectionInjection {
  readonly delay?: DelaySpec;
  /** Close with `code` after `after` echoes (0: at once). */
  readonly close?: { readonly code: number; readonly after: number };
  /** Probability, 0..1, that an echo is dropped. */
  readonly drop?: number;
  /** Stop reading for this many ms after the connection opens. */
  readonly stall?: number;
}

/** What one message asked for in its metadata header. */
export interface MessageInjection {
  readonly delay?: DelaySpec;
  /** Echo this message, then close with this code. */
  readonly close?: number;
  /** Probability, 0..1, that this message's echo is dropped. */
  readonly drop?: number;
}

/** Why a request was refused: `fault-disabled` (403 / 1008), `over-limit` and `invalid` (400 / 1008). */
export type InjectionRefusal = 'invalid' | 'over-limit' | 'fault-disabled';

export type Parsed<T> =
  | { readonly ok: true; readonly value: T; readonly empty: boolean }
  | { readonly ok: false; readonly refusal: InjectionRefusal; readonly reason: string };

/** URL query parameters this module reads. */
export const URL_FIELDS: readonly string[] = Object.freeze(['delay', 'close', 'after', 'drop', 'stall']);
/** Metadata header fields this module reads. */
export const HEADER_FIELDS: readonly string[] = Object.freeze(['delay', 'close', 'drop']);

const FAULT_OFF = 'fault injection is off (start the server with --fault-injection)';

const refuse = (refusal: InjectionRefusal, reason: string): Parsed<never> => ({ ok: false, refusal, reason });

/**
 * Close codes a client may ask for: the ones an endpoint may send (RFC 6455 §7.4.1-2: not 1004,
 * 1005, 1006 or 1015) and the registered/private ranges 3000-4999.
 */
export function sendableCloseCode(code: number): boolean {
  return Number.isInteger(code) && ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999));
}

const INT = /^\d{1,10}$/;

/** `"250"`, `"100-300"` (or 250, [100, 300] from JSON) → a delay spec, checked against the cap. */
export function parseDelay(raw: unknown, maxDelayMs: number, what = 'delay'): Parsed<DelaySpec> {
  let min: number;
  let max: number;
  if (typeof raw === 'number') {
    min = max = raw;
  } else if (typeof raw === 'string') {
    const m = /^\s*(\d{1,10})\s*(?:-\s*(\d{1,10})\s*)?$/.exec(raw);
    if (m === null) return refuse('invalid', `${what} must be milliseconds (250) or a range (100-300), got '${raw.slice(0, 32)}'`);
    min = Number(m[1]);
    max = m[2] === undefined ? min : Number(m[2]);
  } else if (Array.isArray(raw) && raw.length === 2 && typeof raw[0] === 'number' && typeof raw[1] === 'number') {
    min = raw[0];
    max = raw[1];
  } else {
    return refuse('invalid', `${what} must be milliseconds (250) or a range (100-300)`);
  }
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0 || max < min)
    return refuse('invalid', `${what} must be whole milliseconds, 0 or more, low-high in order`);
  if (max > maxDelayMs) return refuse('over-limit', `${what} ${max} ms is over --max-delay (${maxDelayMs} ms)`);
  return { ok: true, value: { min, max }, empty: false };
}

function parseProbability(raw: unknown, what: string): Parsed<number> {
  const n =
    typeof raw === 'number'
      ? raw
      : typeof raw === 'boolean'
        ? raw
          ? 1
          : 0
        : typeof raw === 'string' && /^\s*(0|1|0?\.\d+|1\.0*)\s*$/.test(raw)
          ? Number(raw)
          : NaN;
  if (!(n >= 0 && n <= 1)) return refuse('invalid', `${what} must be a probability from 0 to 1`);
  return { ok: true, value: n, empty: false };
}

function parseCloseCode(raw: unknown, what: string): Parsed<number> {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && INT.test(raw.trim()) ? Number(raw) : NaN;
  if (!sendableCloseCode(n))
    return refuse('invalid', `${what} must be a close code an endpoint may send (1000-1003, 1007-1014, 3000-4999)`);
  return { ok: true, value: n, empty: false };
}

/**
 * Reads the injection parameters of a WebSocket URL (`/ws?delay=100-300&drop=0.1`). A parameter
 * given twice is refused (ambiguous). Faults are refused without `--fault-injection`.
 */
export function parseUrlInjection(url: string, limits: InjectionLimits): Parsed<ConnectionInjection> {
  const q = url.indexOf('?');
  if (q < 0) return { ok: true, value: {}, empty: true };
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(url.slice(q + 1));
  } catch {
    return { ok: true, value: {}, empty: true };
  }
  const one = (name: string): string | undefined | null => {
    const all = params.getAll(name);
    return all.length === 0 ? undefined : all.length === 1 ? (all[0] as string) : null;
  };
  for (const name of URL_FIELDS) if (one(name) === null) return refuse('invalid', `${name} is given more than once`);
  const delayRaw = one('delay');
  const closeRaw = one('close');
  const afterRaw = one('after');
  const dropRaw = one('drop');
  const stallRaw = one('stall');
  if (delayRaw === undefined && closeRaw === undefined && afterRaw === undefined && dropRaw === undefined && stallRaw === undefined)
    return { ok: true, value: {}, empty: true };
  const out: { delay?: DelaySpec; close?: { code: number; after: number }; drop?: number; stall?: number } = {};
  if (delayRaw !== undefined && delayRaw !== null) {
    const d = parseDelay(delayRaw, limits.maxDelayMs);
    if (!d.ok) return d;
    out.delay = d.value;
  }
  const faults = [closeRaw, afterRaw, dropRaw, stallRaw].some((v) => v !== undefined);
  if (faults && !limits.faultInjection) return refuse('fault-disabled', FAULT_OFF);
  if (afterRaw !== undefined && closeRaw === undefined) return refuse('invalid', 'after needs close (close=CODE&after=N)');
  if (closeRaw !== undefined && closeRaw !== null) {
    const c = parseCloseCode(closeRaw, 'close');
    if (!c.ok) return c;
    let after = 0;
    if (afterRaw !== undefined && afterRaw !== null) {
      if (!INT.test(afterRaw) || !Number.isSafeInteger(Number(afterRaw)))
        return refuse('invalid', 'after must be a whole number of echoes');
      after = Number(afterRaw);
    }
    out.close = { code: c.value, after };
  }
  if (dropRaw !== undefined && dropRaw !== null) {
    const p = parseProbability(dropRaw, 'drop');
    if (!p.ok) return p;
    out.drop = p.value;
  }
  if (stallRaw !== undefined && stallRaw !== null) {
    if (!INT.test(stallRaw)) return refuse('invalid', 'stall must be whole milliseconds');
    const ms = Number(stallRaw);
    if (ms > limits.maxDelayMs) return refuse('over-limit', `stall ${ms} ms is over --max-delay (${limits.maxDelayMs} ms)`);
    out.stall = ms;
  }
  return { ok: true, value: out, empty: false };
}

/**
 * Reads `delay`, `close` and `drop` from a parsed metadata header. Absent fields are fine;
 * `null` counts as absent.
 */
export function parseHeaderInjection(header: Readonly<Record<string, unknown>>, limits: InjectionLimits): Parsed<MessageInjection> {
  const delayRaw = header['delay'];
  const closeRaw = header['close'];
  const dropRaw = header['drop'];
  const has = (v: unknown): boolean => v !== undefined && v !== null;
  if (!has(delayRaw) && !has(closeRaw) && !has(dropRaw)) return { ok: true, value: {}, empty: true };
  const out: { delay?: DelaySpec; close?: number; drop?: number } = {};
  if (has(delayRaw)) {
    const d = parseDelay(delayRaw, limits.maxDelayMs);
    if (!d.ok) return d;
    out.delay = d.value;
  }
  if ((has(closeRaw) || has(dropRaw)) && !limits.faultInjection) return refuse('fault-disabled', FAULT_OFF);
  if (has(closeRaw)) {
    const c = parseCloseCode(closeRaw, 'close');
    if (!c.ok) return c;
    out.close = c.value;
  }
  if (has(dropRaw)) {
    const p = parseProbability(dropRaw, 'drop');
    if (!p.ok) return p;
    out.drop = p.value;
  }
  return { ok: true, value: out, empty: false };
}

/** The refusal of a URL request, answered before the upgrade. */
export function injectionHttpError(p: { refusal: InjectionRefusal; reason: string }): HttpError {
  return new HttpError(ErrorCode.POLICY, p.refusal === 'fault-disabled' ? 403 : 400, p.reason);
}

/** The refusal of a header request: close 1008 with the reason (at most 123 bytes on the wire). */
export function injectionProtocolError(p: { refusal: InjectionRefusal; reason: string }): ProtocolError {
  return new ProtocolError(ErrorCode.POLICY, CloseCode.POLICY_VIOLATION, p.reason);
}

/** One draw from a delay spec. */
export function pickDelay(spec: DelaySpec, random: () => number): number {
  return spec.min === spec.max ? spec.min : spec.min + Math.floor(random() * (spec.max - spec.min + 1));
}

/**
 * When each delayed echo of one connection is due. An echo is never due before the one
 * received ahead of it (order per connection holds, also with jitter), so its applied delay
 * may exceed what was drawn: `schedule` returns both.
 */
export class DelayLine {
  private lastDue = 0;
  constructor(private readonly clock: () => number) {}

  /** Schedules an echo received now with `delayMs`; returns when it is due and the delay it gets. */
  schedule(delayMs: number): { dueAt: number; appliedMs: number } {
    const now = this.clock();
    const dueAt = Math.max(now + delayMs, this.lastDue);
    this.lastDue = dueAt;
    return { dueAt, appliedMs: dueAt - now };
  }
}

/** The faults of one connection as echoes go by: which echo to drop, when to close. */
export class FaultPlan {
  private echoes = 0;
  constructor(
    private readonly conn: ConnectionInjection,
    private readonly random: () => number,
  ) {}

  /** The close code to use at once, before any echo (`close=CODE&after=0`); undefined otherwise. */
  closeAtOpen(): number | undefined {
    const c = this.conn.close;
    return c !== undefined && c.after === 0 ? c.code : undefined;
  }

  /** Whether this echo is dropped (the message's own `drop` wins over the URL's). */
  drop(message: MessageInjection | undefined): boolean {
    const p = message?.drop ?? this.conn.drop;
    return p !== undefined && p > 0 && (p >= 1 || this.random() < p);
  }

  /**
   * Counts an echo sent (or dropped) and returns the close code when the connection must close
   * after it: the message's own `close`, or the URL's after N echoes.
   */
  afterEcho(message: MessageInjection | undefined): number | undefined {
    this.echoes++;
    if (message?.close !== undefined) return message.close;
    const c = this.conn.close;
    return c !== undefined && c.after > 0 && this.echoes >= c.after ? c.code : undefined;
  }
}

/** What a delay queue drives: the connection's reading. */
export interface DelaySink {
  /** Stop reading this peer (the delayed bytes are over the send-queue limit). */
  pauseReading(): void;
  /** Reading may resume as far as the delay queue is concerned. */
  resumeReading(): void;
}

interface DelayedItem {
  readonly dueAt: number;
  readonly bytes: number;
  readonly send: () => void;
}

/**
 * The delayed output of one connection, in order, with one timer for the head. Delayed bytes
 * count against the send queue: above `highWater` (with what the socket already holds) reading
 * pauses, and resumes when they have been sent. `flush()` sends everything now (drain, close);
 * `clear()` forgets everything (the connection is gone).
 */
export class DelayQueue {
  private readonly items: DelayedItem[] = [];
  private head = 0;
  private cancel: (() => void) | undefined = undefined;
  private pendingBytes = 0;
  private paused = false;
  readonly line: DelayLine;

  constructor(
    private readonly sink: DelaySink,
    private readonly highWater: number,
    private readonly clock: Clock,
  ) {
    this.line = new DelayLine(() => clock.now());
  }

  /** Bytes waiting for their time. */
  get bytes(): number {
    return this.pendingBytes;
  }

  /** Items waiting. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Schedules an item received now with `delayMs` and queues it; returns the delay it gets. */
  push(delayMs: number, bytes: number, send: () => void, socketQueued = 0): number {
    const { dueAt, appliedMs } = this.line.schedule(delayMs);
    this.pushAt(dueAt, bytes, send, socketQueued);
    return appliedMs;
  }

  /**
   * Queues an item due at `dueAt` (from `line.schedule`, so never before the one ahead of it).
   * `socketQueued` is what the socket already holds, so the limit covers both.
   */
  pushAt(dueAt: number, bytes: number, send: () => void, socketQueued = 0): void {
    this.items.push({ dueAt, bytes, send });
    this.pendingBytes += bytes;
    if (!this.paused && this.pendingBytes + socketQueued > this.highWater) {
      this.paused = true;
      this.sink.pauseReading();
    }
    if (this.cancel === undefined) this.arm();
  }

  /** Queues an item behind everything waiting (due with the last one, or now). */
  pushBehind(bytes: number, send: () => void, socketQueued = 0): void {
    this.pushAt(this.line.schedule(0).dueAt, bytes, send, socketQueued);
  }

  private arm(): void {
    const next = this.items[this.head];
    if (next === undefined) return;
    this.cancel = this.clock.schedule(() => this.onTimer(), Math.max(0, next.dueAt - this.clock.now()));
  }

  private onTimer(): void {
    this.cancel = undefined;
    const now = this.clock.now();
    this.sendWhile(now);
    if (this.cancel === undefined) this.arm();
  }

  private sendWhile(until: number): void {
    while (this.head < this.items.length) {
      const e = this.items[this.head] as DelayedItem;
      if (e.dueAt > until) break;
      this.head++;
      this.pendingBytes -= e.bytes;
      e.send();
    }
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    if (this.paused && this.pendingBytes <= this.highWater) {
      this.paused = false;
      this.sink.resumeReading();
    }
  }

  /** Sends every waiting item now, in order (drain and close: nothing already received is lost). */
  flush(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.sendWhile(Infinity);
  }

  /** Forgets every waiting item (the connection is gone). */
  clear(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.items.length = 0;
    this.head = 0;
    this.pendingBytes = 0;
    this.paused = false;
  }
}

/** The upgrade request of a WebSocket connection, kept for the `hello` reply's whoami (echo.v1). */
export interface UpgradeRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly httpVersion?: string | undefined;
  readonly headers: IncomingHttpHeaders;
}

/**
 * A connection's debugging state: absent (one undefined field) on every connection that asked
 * for nothing, so the echo path pays one check.
 */
export interface ConnectionDebug {
  /** What the WebSocket URL asked for. */
  readonly injection: ConnectionInjection;
  plan: FaultPlan | undefined;
  /** Delayed output, in order (created at the first delayed echo). */
  queue: DelayQueue | undefined;
  /**
   * A close asked for (`close`), to be queued right behind the echo of the message that asked
   * (the batch writer does it when it queues that echo); once queued, `closing` is set and later
   * messages are discarded.
   */
  pendingClose: (() => void) | undefined;
  closing: boolean;
}

/** What a `hello` reply's whoami needs beyond the socket (kept in a WeakMap, not on the connection). */
export interface WhoamiContext {
  /** The upgrade request (echo.v1 WebSocket connections). */
  readonly request?: UpgradeRequest | undefined;
  /** The verified JWT claims of the connection's credential. */
  readonly claims?: Readonly<Record<string, unknown>> | undefined;
}

export function newConnectionDebug(injection: ConnectionInjection = {}): ConnectionDebug {
  return { injection, plan: undefined, queue: undefined, pendingClose: undefined, closing: false };
}

/** Whether a metadata header asks for anything (three property reads). */
export function hasInjectionFields(header: Readonly<Record<string, unknown>>): boolean {
  return header['delay'] !== undefined || header['close'] !== undefined || header['drop'] !== undefined;
}
