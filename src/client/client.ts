/**
 * The typed client's core, independent of the transport and of Node (the browser build uses
 * it): request/echo matching, ping, async iteration, reconnect with capped exponential backoff
 * and full jitter, a bounded send queue while disconnected, and AbortSignal on every promise.
 * A transport is a `Dialer` that opens one `Link` (src/client/ws-link.ts, stream-link.ts).
 */
import { ConfigError, ConnectionClosedError, EchoError, ErrorCode } from '../errors.js';
import { Emitter } from './emitter.js';
import { decodeBody, decodeUtf8, encodeBody, encodeUtf8, Op } from './v1-body.js';

/** The `srv` object the server adds to echoed headers (docs/PROTOCOL.md §1.8). */
export interface ServerStamp {
  /** Instance (replica) that answered. */
  readonly instance: string;
  /** Connection id. */
  readonly conn: string;
  /** Per-connection sequence number of the message, from 1. */
  readonly seq: number;
  /** Server receive time, epoch ms. */
  readonly rx: number;
  /** Server send time, epoch ms. */
  readonly tx: number;
}

export type MetadataHeader = Record<string, unknown>;

interface MessageCommon {
  /** The echoed metadata header (echo.v1 transports, when one was sent). */
  readonly header: MetadataHeader | undefined;
  /** `header.srv`: which instance answered and when. */
  readonly srv: ServerStamp | undefined;
}
/** A message from the server: text arrives as a string, binary as bytes. */
export type ReceivedMessage =
  | (MessageCommon & { readonly kind: 'text'; readonly data: string })
  | (MessageCommon & { readonly kind: 'binary'; readonly data: Uint8Array });

/** What `request()` resolves with: the matched echo and its round-trip time. */
export type RequestResult = ReceivedMessage & {
  /** Milliseconds from writing the request to receiving its echo. */
  readonly rttMs: number;
};

export interface ReconnectOptions {
  /** First backoff ceiling, ms. @default 100 */
  readonly initialDelayMs?: number;
  /** Largest backoff ceiling, ms (each wait is uniformly random below the ceiling). @default 10000 */
  readonly maxDelayMs?: number;
  /** Attempts before giving up (then `close` fires for good). @default Infinity */
  readonly maxAttempts?: number;
}

export interface QueueOptions {
  /** Messages held while disconnected. @default 1000 */
  readonly maxMessages?: number;
  /** Bytes held while disconnected. @default 1048576 */
  readonly maxBytes?: number;
}

/** Options shared by every transport. */
export interface BaseClientOptions {
  /**
   * A static token or a JWT, or a function returning one (called on every (re)connect).
   * Sent in `hello` on TCP/TLS/Unix, as `Authorization: Bearer` (Node) or `?token=` (browsers) on WebSocket.
   */
  readonly token?: string | (() => string | Promise<string>);
  /** Reconnect after a drop (full-jitter exponential backoff); false: never. @default true */
  readonly reconnect?: boolean | ReconnectOptions;
  /** Queue sends while reconnecting; false: they fail at once. @default true (1000 messages, 1 MiB) */
  readonly queue?: boolean | QueueOptions;
  /** Deadline for opening a connection (hello included), ms. @default 10000 */
  readonly connectTimeoutMs?: number;
  /** Default `request()`/`ping()` timeout, ms. @default 10000 */
  readonly requestTimeoutMs?: number;
  /** Requests awaiting their echo (sent or queued). @default 10000 */
  readonly maxPendingRequests?: number;
  /** Messages buffered per async iterator that is not keeping up (then it throws). @default 10000 */
  readonly maxBufferedMessages?: number;
  /** Largest frame accepted from the server, bytes. @default 16777216 */
  readonly maxFrameBytes?: number;
  /** Largest metadata header accepted from the server, bytes. @default 65535 */
  readonly maxHeaderBytes?: number;
  /** Aborts the connect (and any reconnect wait afterwards: the client closes). */
  readonly signal?: AbortSignal;
}

export interface RequestOptions {
  /** ms; @default the client's `requestTimeoutMs` */
  readonly timeout?: number;
  readonly signal?: AbortSignal;
  /** Extra metadata header fields (echo.v1 transports); `id` is generated unless given here. */
  readonly header?: MetadataHeader;
  /**
   * The request may be sent again when its connection drops after it was written (the echo is
   * harmless to repeat). Otherwise it fails with ECHO_ERR_CONNECTION_LOST. Requests still in
   * the queue are always sent once the connection is back. @default false
   */
  readonly idempotent?: boolean;
}

export interface ClientEvents {
  /** A connection is ready (after hello on v1 transports). */
  open: [{ readonly conn: string | undefined; readonly instance: string | undefined; readonly reconnected: boolean }];
  /** A connection closed; `reconnecting` tells whether the client will try again. */
  close: [{ readonly code: number; readonly reason: string; readonly reconnecting: boolean }];
  /** A reconnect attempt is about to start after `delayMs`. */
  reconnecting: [{ readonly attempt: number; readonly delayMs: number }];
  /** Every message not consumed by `request()` (on v1, also the late echo of a request that timed out). */
  message: [ReceivedMessage];
}

/** One open connection, as the client core sees it. */
export interface Link {
  /** v1 modes: one body (the link frames it); plain WebSocket: the data. */
  send(data: Uint8Array | string): void;
  /** Transport-level ping (plain WebSocket in Node); absent when unsupported. */
  ping?(payload: Uint8Array): void;
  /** Starts the close handshake; `onClose` follows. */
  close(code: number, reason: string): void;
}

export interface LinkHandlers {
  /** v1 modes: one complete body (the link has split the stream). */
  onBody(body: Uint8Array): void;
  /** Plain WebSocket: one message. */
  onData(data: string | Uint8Array): void;
  onPong(payload: Uint8Array): void;
  /** Called once, after the link opened, when it has closed. */
  onClose(code: number, reason: string): void;
}

/** Opens one link: resolves when it is open, rejects (EchoError) when it cannot be. */
export type Dialer = (handlers: LinkHandlers, signal: AbortSignal, token: string | undefined) => Promise<Link>;

export interface ResolvedOptions {
  readonly token: BaseClientOptions['token'];
  readonly reconnect: Required<ReconnectOptions> | undefined;
  readonly queue: Required<QueueOptions> | undefined;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxPendingRequests: number;
  readonly maxBufferedMessages: number;
  readonly maxFrameBytes: number;
  readonly maxHeaderBytes: number;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function positive(name: string, v: unknown, dflt: number, opts: { int?: boolean; max?: number; min?: number } = {}): number {
  if (v === undefined) return dflt;
  const min = opts.min ?? 1;
  if (typeof v !== 'number' || Number.isNaN(v) || v < min || (opts.int === true && !Number.isInteger(v) && v !== Infinity)) {
    throw new ConfigError(name, `must be ${opts.int === true ? 'an integer' : 'a number'} >= ${min}, got ${String(v)}`);
  }
  if (opts.max !== undefined && v > opts.max) throw new ConfigError(name, `must be at most ${opts.max}, got ${v}`);
  return v;
}

/** Checks every shared option on its own; errors name the option. */
export function resolveBaseOptions(o: BaseClientOptions, known: readonly string[] = []): ResolvedOptions {
  if (!isObj(o)) throw new ConfigError('options', 'must be an object');
  const allowed = new Set([...BASE_KEYS, ...known]);
  for (const k of Object.keys(o)) if (!allowed.has(k)) throw new ConfigError(k, `unknown option (known: ${[...allowed].join(', ')})`);
  const t = o.token;
  if (t !== undefined && typeof t !== 'function' && (typeof t !== 'string' || t === ''))
    throw new ConfigError('token', 'must be a non-empty string or a function');
  let reconnect: Required<ReconnectOptions> | undefined;
  if (o.reconnect === undefined || o.reconnect === true || isObj(o.reconnect)) {
    const r = isObj(o.reconnect) ? o.reconnect : {};
    const initialDelayMs = positive('reconnect.initialDelayMs', r.initialDelayMs, 100, { max: 2 ** 31 - 1 });
    reconnect = {
      initialDelayMs,
      maxDelayMs: positive('reconnect.maxDelayMs', r.maxDelayMs, Math.max(10_000, initialDelayMs), {
        min: initialDelayMs,
        max: 2 ** 31 - 1,
      }),
      maxAttempts: positive('reconnect.maxAttempts', r.maxAttempts, Infinity, { int: true }),
    };
  } else if (o.reconnect !== false) throw new ConfigError('reconnect', 'must be a boolean or { initialDelayMs, maxDelayMs, maxAttempts }');
  let queue: Required<QueueOptions> | undefined;
  if (o.queue === undefined || o.queue === true || isObj(o.queue)) {
    const q = isObj(o.queue) ? o.queue : {};
    queue = {
      maxMessages: positive('queue.maxMessages', q.maxMessages, 1000, { int: true }),
      maxBytes: positive('queue.maxBytes', q.maxBytes, 1024 * 1024, { int: true }),
    };
  } else if (o.queue !== false) throw new ConfigError('queue', 'must be a boolean or { maxMessages, maxBytes }');
  if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && 'aborted' in o.signal))
    throw new ConfigError('signal', 'must be an AbortSignal');
  return {
    token: t as BaseClientOptions['token'],
    reconnect,
    queue,
    connectTimeoutMs: positive('connectTimeoutMs', o.connectTimeoutMs, 10_000, { max: 2 ** 31 - 1 }),
    requestTimeoutMs: positive('requestTimeoutMs', o.requestTimeoutMs, 10_000, { max: 2 ** 31 - 1 }),
    maxPendingRequests: positive('maxPendingRequests', o.maxPendingRequests, 10_000, { int: true }),
    maxBufferedMessages: positive('maxBufferedMessages', o.maxBufferedMessages, 10_000, { int: true }),
    maxFrameBytes: positive('maxFrameBytes', o.maxFrameBytes, 16 * 1024 * 1024, { int: true, max: 2 ** 32 - 1 }),
    maxHeaderBytes: positive('maxHeaderBytes', o.maxHeaderBytes, 65535, { int: true, max: 65535 }),
  };
}

const BASE_KEYS = [
  'token',
  'reconnect',
  'queue',
  'connectTimeoutMs',
  'requestTimeoutMs',
  'maxPendingRequests',
  'maxBufferedMessages',
  'maxFrameBytes',
  'maxHeaderBytes',
  'signal',
] as const;

/** Close codes after which reconnecting would only be refused again (RFC 6455 §7.4.1; 1015: TLS, here a pin mismatch). */
const FINAL_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010, 1015]);

interface Pending {
  readonly id: string;
  readonly resolve: (r: RequestResult) => void;
  readonly reject: (e: Error) => void;
  readonly idempotent: boolean;
  /** performance.now() when written; -1 while queued. */
  t0: number;
  done: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  cleanup: (() => void) | undefined;
  /** Plain WebSocket: the index of its message on the connection (echoes come in order). */
  seq: number;
  /** The encoded message, kept to write it again after a drop when idempotent. */
  readonly data: Uint8Array | string;
}

interface Queued {
  readonly data: Uint8Array | string;
  readonly bytes: number;
  readonly req: Pending | undefined;
}

interface IteratorState {
  readonly buf: ReceivedMessage[];
  wake: (() => void) | undefined;
  error: Error | undefined;
  ended: boolean;
}

const aborted = (signal: AbortSignal, what: string): EchoError =>
  new EchoError(ErrorCode.ABORTED, `${what} aborted`, { cause: signal.reason as unknown });

function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Waits `ms`, or rejects when `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(aborted(signal, 'wait'));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted(signal, 'wait'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A connection to an EchoServer with reconnect, request/echo matching and a send queue.
 * Made by `connect()` (Node: src/client/connect.ts; browsers: src/client/browser.ts).
 */
export class Client extends Emitter<ClientEvents> implements AsyncIterable<ReceivedMessage> {
  /** 'v1': framing v1 bodies (TCP, TLS, Unix, in-process, WebSocket `echo.v1`); 'plain': plain WebSocket. */
  readonly mode: 'v1' | 'plain';
  private readonly opts: ResolvedOptions;
  private readonly dial: Dialer;
  private state: 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed' = 'connecting';
  private link: Link | undefined;
  private generation = 0;
  private readonly pending = new Map<string, Pending>();
  /** Plain mode: written requests in order, with their message index. */
  private readonly inOrder: Pending[] = [];
  private written = 0;
  private received = 0;
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  private readonly pings = new Map<string, { resolve: (ms: number) => void; reject: (e: Error) => void; t0: number }>();
  private readonly iterators = new Set<IteratorState>();
  private hello: { resolve: (h: MetadataHeader) => void; reject: (e: Error) => void } | undefined;
  private readonly idPrefix = randomHex(4);
  private nextId = 0;
  /** Aborted by close(): stops reconnect waits and dials. */
  private readonly lifetime = new AbortController();
  private closing: Promise<{ code: number; reason: string }> | undefined;
  private resolveClosed!: (info: { code: number; reason: string }) => void;
  /** Resolves when the client has closed for good (after close() or when it stops reconnecting). */
  readonly closed: Promise<{ code: number; reason: string }>;
  private connInfo: { conn: string | undefined; instance: string | undefined } = { conn: undefined, instance: undefined };
  private everOpened = false;

  constructor(
    dial: Dialer,
    mode: 'v1' | 'plain',
    opts: ResolvedOptions,
    private readonly canRedial = true,
  ) {
    super();
    this.dial = dial;
    this.mode = mode;
    this.opts = opts;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Connection id the server gave in its hello (v1 transports). */
  get conn(): string | undefined {
    return this.connInfo.conn;
  }
  /** Instance (replica) name from the server's hello (v1 transports). */
  get instance(): string | undefined {
    return this.connInfo.instance;
  }
  /** 'open', 'connecting', 'reconnecting', 'closing' or 'closed'. */
  get readyState(): 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed' {
    return this.state;
  }
  /** Messages and bytes waiting for the connection to come back. */
  get queued(): { messages: number; bytes: number } {
    return { messages: this.queue.length, bytes: this.queuedBytes };
  }

  /** Opens the first connection; used by connect(). */
  async start(signal: AbortSignal | undefined): Promise<this> {
    if (signal !== undefined) {
      if (signal.aborted) throw aborted(signal, 'connect');
      // Removed when the client closes (the listener option `signal`), so a long-lived signal keeps nothing.
      signal.addEventListener('abort', () => void this.close(1000, 'aborted'), { once: true, signal: this.lifetime.signal });
    }
    try {
      await this.openLink(signal);
    } catch (err) {
      this.finish(1006, err instanceof Error ? err.message : String(err));
      throw err;
    }
    return this;
  }

  private handlers(gen: number): LinkHandlers {
    return {
      onBody: (body) => gen === this.generation && this.onBody(body),
      onData: (data) => gen === this.generation && this.onData(data),
      onPong: (payload) => gen === this.generation && this.onPong(payload),
      onClose: (code, reason) => gen === this.generation && this.onLinkClose(code, reason),
    };
  }

  private async openLink(outer: AbortSignal | undefined): Promise<void> {
    const gen = ++this.generation;
    const ctl = new AbortController();
    const signals = [this.lifetime.signal, ...(outer === undefined ? [] : [outer])];
    const onAbort = (): void => ctl.abort();
    for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => ctl.abort(new EchoError(ErrorCode.TIMEOUT, `no connection within ${this.opts.connectTimeoutMs} ms`)),
      this.opts.connectTimeoutMs,
    );
    let link: Link | undefined;
    try {
      const t = this.opts.token;
      const token = typeof t === 'function' ? await t() : t;
      if (typeof token === 'function' || (token !== undefined && (typeof token !== 'string' || token === ''))) {
        throw new ConfigError('token', 'the token function must return a non-empty string');
      }
      link = await this.dial(this.handlers(gen), ctl.signal, token);
      if (this.mode === 'v1') {
        const answer = new Promise<MetadataHeader>((resolve, reject) => (this.hello = { resolve, reject }));
        const stop = new Promise<never>((_, reject) => {
          const fail = (): void =>
            reject(ctl.signal.reason instanceof Error ? ctl.signal.reason : new EchoError(ErrorCode.ABORTED, 'connect aborted'));
          if (ctl.signal.aborted) fail();
          ctl.signal.addEventListener('abort', fail, { once: true });
        });
        const hello: MetadataHeader = { v: 1 };
        if (token !== undefined) hello['token'] = token;
        link.send(encodeBody(Op.HELLO, encodeUtf8(JSON.stringify(hello))));
        const h = await Promise.race([answer, stop]);
        if (h['ok'] === false)
          throw new ConnectionClosedError(
            ErrorCode.AUTH,
            1008,
            String(h['error'] ?? 'refused'),
            `hello refused: ${String(h['error'] ?? 'refused')}`,
          );
        this.connInfo = {
          conn: typeof h['conn'] === 'string' ? h['conn'] : undefined,
          instance: typeof h['instance'] === 'string' ? h['instance'] : undefined,
        };
      }
    } catch (err) {
      if (gen === this.generation) this.generation++; // late events of this link are ignored
      link?.close(1000, '');
      if (ctl.signal.aborted && !(err instanceof ConnectionClosedError)) {
        const r: unknown = ctl.signal.reason;
        if (r instanceof EchoError) throw r;
        throw new EchoError(ErrorCode.ABORTED, 'connect aborted', { cause: r });
      }
      throw err;
    } finally {
      this.hello = undefined;
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', onAbort);
    }
    this.link = link;
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.state = 'open';
    this.written = 0;
    this.received = 0;
    // Queued sends go out in order, before anything sent after this point.
    const q = this.queue.splice(0);
    this.queuedBytes = 0;
    for (const item of q) this.write(item);
    this.emit('open', { ...this.connInfo, reconnected });
  }

  private write(item: Queued): void {
    const req = item.req;
    if (req !== undefined) {
      if (req.done) return; // timed out or aborted while queued
      req.t0 = performance.now();
      if (this.mode === 'plain') {
        req.seq = this.written;
        this.inOrder.push(req);
      }
    }
    this.written++;
    (this.link as Link).send(item.data);
  }

  /** Encodes a message for the wire (v1: a body; plain: the data as is). */
  private encode(data: string | Uint8Array, header: MetadataHeader | undefined): Uint8Array | string {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw new TypeError('data must be a string or a Uint8Array');
    if (this.mode === 'plain') {
      if (header !== undefined)
        throw new EchoError(
          ErrorCode.STATE,
          'metadata headers need framing v1: use the echo.v1 subprotocol (the default) instead of plain',
        );
      return data;
    }
    if (header !== undefined && !isObj(header)) throw new TypeError('header must be a plain object');
    const h = header === undefined ? undefined : encodeUtf8(JSON.stringify(header));
    if (h !== undefined && h.length > 0xffff) throw new RangeError(`header of ${h.length} bytes is over 65535`);
    return encodeBody(typeof data === 'string' ? Op.TEXT : Op.BINARY, typeof data === 'string' ? encodeUtf8(data) : data, h);
  }

  private enqueueOrWrite(item: Queued): void {
    if (this.state === 'open') return this.write(item);
    if (this.state === 'closing' || this.state === 'closed')
      throw new ConnectionClosedError(ErrorCode.CLOSED, 1000, '', 'the client is closed');
    const q = this.opts.queue;
    if (q === undefined)
      throw new ConnectionClosedError(ErrorCode.CONNECTION_LOST, 1006, '', 'not connected (reconnecting) and queueing is off');
    if (this.queue.length + 1 > q.maxMessages || this.queuedBytes + item.bytes > q.maxBytes) {
      throw new EchoError(
        ErrorCode.QUEUE_FULL,
        `send queue full (${this.queue.length} messages, ${this.queuedBytes} bytes; limits ${q.maxMessages} and ${q.maxBytes})`,
      );
    }
    this.queue.push(item);
    this.queuedBytes += item.bytes;
  }

  /**
   * Sends a text (string) or binary (Uint8Array) message, with an optional metadata header.
   * While reconnecting it is queued (bounded); throws when the queue is full or off, or closed.
   */
  send(data: string | Uint8Array, header?: MetadataHeader): void {
    const enc = this.encode(data, header);
    this.enqueueOrWrite({ data: enc, bytes: typeof enc === 'string' ? enc.length * 3 : enc.length, req: undefined });
  }

  /**
   * Sends a message with a generated `id` and resolves with its echo (matched by id; on plain
   * WebSocket, by order) and the round-trip time. Rejects with ECHO_ERR_TIMEOUT, ECHO_ERR_ABORTED,
   * ECHO_ERR_CONNECTION_LOST (dropped after it was written, unless `idempotent`) or ECHO_ERR_CLOSED.
   */
  request(data: string | Uint8Array, options: RequestOptions = {}): Promise<RequestResult> {
    return new Promise<RequestResult>((resolve, reject) => {
      if (typeof options !== 'object' || options === null) throw new ConfigError('options', 'must be an object');
      const timeout = positive('timeout', options.timeout, this.opts.requestTimeoutMs, { max: 2 ** 31 - 1 });
      const signal = options.signal;
      if (signal?.aborted === true) return reject(aborted(signal, 'request'));
      if (this.pending.size + this.inOrder.length >= this.opts.maxPendingRequests) {
        return reject(
          new EchoError(ErrorCode.QUEUE_FULL, `too many requests in flight (maxPendingRequests ${this.opts.maxPendingRequests})`),
        );
      }
      const given = options.header?.['id'];
      if (given !== undefined && typeof given !== 'string') throw new ConfigError('header.id', 'must be a string');
      const id = given ?? `${this.idPrefix}-${++this.nextId}`;
      if (this.pending.has(id)) throw new ConfigError('header.id', `a request with id ${id} is already pending`);
      const header = this.mode === 'v1' ? { ...options.header, id } : options.header;
      const enc = this.encode(data, header);
      const req: Pending = {
        id,
        resolve,
        reject,
        idempotent: options.idempotent === true,
        t0: -1,
        done: false,
        timer: undefined,
        cleanup: undefined,
        seq: -1,
        data: enc,
      };
      const settle = (): void => {
        req.done = true;
        clearTimeout(req.timer);
        req.cleanup?.();
        this.pending.delete(id);
      };
      const fail = (e: Error): void => {
        if (req.done) return;
        settle();
        reject(e);
      };
      req.timer = setTimeout(() => fail(new EchoError(ErrorCode.TIMEOUT, `no echo for request ${id} within ${timeout} ms`)), timeout);
      if (signal !== undefined) {
        const onAbort = (): void => fail(aborted(signal, `request ${id}`));
        signal.addEventListener('abort', onAbort, { once: true });
        req.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      Object.assign(req, {
        resolve: (r: RequestResult) => {
          settle();
          resolve(r);
        },
        reject: fail,
      });
      if (this.mode === 'v1') this.pending.set(id, req);
      try {
        this.enqueueOrWrite({ data: enc, bytes: typeof enc === 'string' ? enc.length * 3 : enc.length, req });
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  /** Round-trip of a ping, ms (v1 ping frame; plain WebSocket: a WebSocket ping, Node only). */
  ping(options: { timeout?: number; signal?: AbortSignal } = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      const timeout = positive('timeout', options.timeout, this.opts.requestTimeoutMs, { max: 2 ** 31 - 1 });
      const { signal } = options;
      if (signal?.aborted === true) return reject(aborted(signal, 'ping'));
      const link = this.link;
      if (this.state !== 'open' || link === undefined)
        return reject(new ConnectionClosedError(ErrorCode.CONNECTION_LOST, 1006, '', `cannot ping while ${this.state}`));
      if (this.mode === 'plain' && link.ping === undefined)
        return reject(new EchoError(ErrorCode.STATE, 'ping on a plain WebSocket needs Node (browsers have no ping API): use echo.v1'));
      const key = randomHex(8);
      const done = (): void => {
        this.pings.delete(key);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(aborted(signal as AbortSignal, 'ping'));
      };
      const timer = setTimeout(() => {
        done();
        reject(new EchoError(ErrorCode.TIMEOUT, `no pong within ${timeout} ms`));
      }, timeout);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pings.set(key, {
        resolve: (ms) => {
          done();
          resolve(ms);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        t0: performance.now(),
      });
      const payload = encodeUtf8(key);
      if (this.mode === 'v1') link.send(encodeBody(Op.PING, payload));
      else (link.ping as (p: Uint8Array) => void)(payload);
    });
  }

  private onPong(payload: Uint8Array): void {
    let key: string;
    try {
      key = decodeUtf8(payload);
    } catch {
      return;
    }
    const p = this.pings.get(key);
    if (p !== undefined) p.resolve(performance.now() - p.t0);
  }

  private onBody(body: Uint8Array): void {
    let d;
    try {
      d = decodeBody(body, this.opts);
    } catch (err) {
      const e = err as { closeCode?: number; message: string };
      this.link?.close(e.closeCode ?? 1002, e.message);
      return;
    }
    switch (d.opcode) {
      case Op.TEXT:
        return this.deliver({ kind: 'text', data: decodeUtf8(d.payload), header: d.header, srv: stampOf(d.header) });
      case Op.BINARY:
        return this.deliver({ kind: 'binary', data: d.payload.slice(), header: d.header, srv: stampOf(d.header) });
      case Op.HELLO: {
        let h: unknown;
        try {
          h = JSON.parse(decodeUtf8(d.payload));
        } catch {
          h = undefined;
        }
        if (isObj(h)) this.hello?.resolve(h);
        return;
      }
      case Op.PING:
        this.link?.send(encodeBody(Op.PONG, d.payload));
        return;
      case Op.PONG:
        return this.onPong(d.payload);
      case Op.CLOSE: {
        // Only WebSocket echo.v1 lets a close body through (stream links handle theirs).
        const code = d.payload.length >= 2 ? ((d.payload[0] as number) << 8) | (d.payload[1] as number) : 1000;
        this.link?.close(code, decodeUtf8(d.payload.subarray(Math.min(2, d.payload.length))));
        return;
      }
    }
  }

  private onData(data: string | Uint8Array): void {
    const seq = this.received++;
    const msg: ReceivedMessage =
      typeof data === 'string'
        ? { kind: 'text', data, header: undefined, srv: undefined }
        : { kind: 'binary', data, header: undefined, srv: undefined };
    const head = this.inOrder[0];
    if (head !== undefined && head.seq === seq) {
      this.inOrder.shift();
      if (!head.done) head.resolve({ ...msg, rttMs: performance.now() - head.t0 });
      return; // the echo of a request that timed out is dropped, not delivered
    }
    this.deliver(msg);
  }

  private deliver(msg: ReceivedMessage): void {
    if (this.mode === 'v1') {
      const id = msg.header?.['id'];
      const req = typeof id === 'string' ? this.pending.get(id) : undefined;
      if (req !== undefined && req.t0 >= 0) {
        req.resolve({ ...msg, rttMs: performance.now() - req.t0 });
        return;
      }
    }
    this.emit('message', msg);
    for (const it of this.iterators) {
      if (it.error !== undefined || it.ended) continue;
      if (it.buf.length >= this.opts.maxBufferedMessages) {
        it.error = new EchoError(ErrorCode.QUEUE_FULL, `async iterator fell behind by ${it.buf.length} messages (maxBufferedMessages)`);
      } else it.buf.push(msg);
      it.wake?.();
    }
  }

  private onLinkClose(code: number, reason: string): void {
    this.generation++;
    this.link = undefined;
    if (this.state === 'connecting' || this.state === 'reconnecting') {
      // During the handshake: openLink() turns this into the attempt's error.
      const what = 'the connection closed during the handshake';
      this.hello?.reject(
        code === 1008
          ? new ConnectionClosedError(ErrorCode.AUTH, code, reason, `${what}: refused (1008 ${reason})`)
          : closedError(code, reason, what),
      );
      return;
    }
    for (const p of this.pings.values()) p.reject(closedError(code, reason, 'the connection closed before the pong'));
    // Written requests: their echo will not come on a new connection.
    const resend: Queued[] = [];
    for (const req of [...this.pending.values(), ...this.inOrder]) {
      if (req.done || req.t0 < 0) continue;
      if (req.idempotent && this.state !== 'closing') {
        req.t0 = -1;
        resend.push({ data: req.data, bytes: 0, req });
      } else req.reject(closedError(code, reason, `the connection closed before the echo of request ${req.id}`));
    }
    this.inOrder.length = 0;
    this.queue.unshift(...resend);
    const retry = this.state === 'open' && this.opts.reconnect !== undefined && this.canRedial && !FINAL_CODES.has(code);
    if (!retry) return this.finish(code, reason);
    this.state = 'reconnecting';
    this.emit('close', { code, reason, reconnecting: true });
    void this.reconnectLoop(code, reason);
  }

  private async reconnectLoop(code: number, reason: string): Promise<void> {
    const r = this.opts.reconnect as Required<ReconnectOptions>;
    let lastReason = reason;
    for (let attempt = 1; attempt <= r.maxAttempts; attempt++) {
      // Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): uniform in [0, cap).
      const cap = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** Math.min(attempt - 1, 30));
      const delayMs = Math.random() * cap;
      this.emit('reconnecting', { attempt, delayMs });
      try {
        await delay(delayMs, this.lifetime.signal);
      } catch {
        return; // close() was called
      }
      if (this.state !== 'reconnecting') return;
      try {
        await this.openLink(undefined);
        return;
      } catch (err) {
        if (this.state !== 'reconnecting') return;
        lastReason = err instanceof Error ? err.message : String(err);
        if (err instanceof ConnectionClosedError && FINAL_CODES.has(err.closeCode))
          return this.finish(err.closeCode, err.reason || lastReason);
      }
    }
    this.finish(code === 1000 ? 1006 : code, `gave up after ${r.maxAttempts} reconnect attempts: ${lastReason}`);
  }

  /** The client is closed for good: everything waiting fails, iterators end. */
  private finish(code: number, reason: string): void {
    if (this.state === 'closed') return;
    const byUser = this.state === 'closing';
    this.state = 'closed';
    this.lifetime.abort();
    const err = byUser
      ? new ConnectionClosedError(ErrorCode.CLOSED, code, reason, 'the client was closed')
      : closedError(code, reason, 'the connection closed');
    for (const req of [...this.pending.values(), ...this.inOrder]) req.reject(err);
    for (const item of this.queue) item.req?.reject(err);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inOrder.length = 0;
    for (const it of this.iterators) {
      it.ended = true;
      it.wake?.();
    }
    this.emit('close', { code, reason, reconnecting: false });
    this.resolveClosed({ code, reason });
  }

  /**
   * Closes (close handshake with `code` and `reason`), stops reconnecting, fails what is still
   * pending with ECHO_ERR_CLOSED. Resolves with the close code and reason; idempotent.
   */
  close(code = 1000, reason = ''): Promise<{ code: number; reason: string }> {
    if (this.closing !== undefined) return this.closing;
    if (this.state === 'closed') return this.closed;
    if (!Number.isInteger(code) || !((code >= 1000 && code <= 1003) || (code >= 3000 && code <= 4999) || (code >= 1007 && code <= 1014))) {
      throw new ConfigError('code', `must be 1000 or a valid close code (3000-4999), got ${String(code)}`);
    }
    if (typeof reason !== 'string' || encodeUtf8(reason).length > 123)
      throw new ConfigError('reason', 'must be a string of at most 123 UTF-8 bytes');
    const link = this.link;
    this.state = 'closing';
    this.lifetime.abort();
    if (link === undefined) this.finish(code, reason);
    else {
      link.close(code, reason);
      // A peer that never answers the close: give up after the connect timeout.
      const timer = setTimeout(() => this.onLinkCloseTimeout(code, reason), this.opts.connectTimeoutMs);
      void this.closed.then(() => clearTimeout(timer));
    }
    this.closing = this.closed;
    return this.closing;
  }

  private onLinkCloseTimeout(code: number, reason: string): void {
    this.generation++;
    this.finish(code, reason);
  }

  /**
   * Every message not consumed by `request()`, from now on, until the client closes. A reader
   * that falls `maxBufferedMessages` behind gets ECHO_ERR_QUEUE_FULL.
   */
  messages(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<ReceivedMessage> {
    const it: IteratorState = { buf: [], wake: undefined, error: undefined, ended: this.state === 'closed' };
    this.iterators.add(it);
    const { signal } = options;
    const stop = (): void => {
      it.ended = true;
      this.iterators.delete(it);
      it.wake?.();
    };
    const onAbort = (): void => {
      it.error ??= aborted(signal as AbortSignal, 'iteration');
      stop();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted === true) onAbort();
    const self: AsyncIterableIterator<ReceivedMessage> = {
      [Symbol.asyncIterator]: () => self,
      next: async (): Promise<IteratorResult<ReceivedMessage>> => {
        for (;;) {
          const m = it.buf.shift();
          if (m !== undefined) return { value: m, done: false };
          if (it.error !== undefined) {
            const e = it.error;
            it.error = undefined;
            it.ended = true;
            this.iterators.delete(it);
            signal?.removeEventListener('abort', onAbort);
            throw e;
          }
          if (it.ended) {
            this.iterators.delete(it);
            signal?.removeEventListener('abort', onAbort);
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (it.wake = resolve));
          it.wake = undefined;
        }
      },
      return: async (): Promise<IteratorResult<ReceivedMessage>> => {
        stop();
        it.buf.length = 0;
        signal?.removeEventListener('abort', onAbort);
        return { value: undefined, done: true };
      },
    };
    return self;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this.messages();
  }
}

function closedError(code: number, reason: string, what: string): ConnectionClosedError {
  return new ConnectionClosedError(
    ErrorCode.CONNECTION_LOST,
    code,
    reason,
    `${what} (close code ${code}${reason === '' ? '' : `: ${reason}`})`,
  );
}

function stampOf(header: MetadataHeader | undefined): ServerStamp | undefined {
  const s = header?.['srv'];
  return isObj(s) && typeof s['instance'] === 'string' ? (s as unknown as ServerStamp) : undefined;
}
