/**
 * Shared by the network fuzzer (bench/fuzz/fuzz.ts) and the soak (bench/soak.ts): a seeded PRNG,
 * the server's RSS and descriptor count from /proc, the CLI servers they run against, and
 * well-behaved echo clients on every transport that check each echo byte for byte, in order.
 */
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { startCli, type RunningCli } from '../../test-helpers/cli.js';

/** mulberry32: a small seeded PRNG (a run is replayed from its seed). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** RSS (KiB, from VmRSS) and open descriptors of a process, from /proc. */
export function procStats(pid: number): { rssKiB: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return { rssKiB: Number(m?.[1] ?? 0), fds: readdirSync(`/proc/${pid}/fd`).length };
}

export interface Servers {
  /** Plaintext: WebSocket, TCP v1, Unix v1, raw echo. */
  plain: RunningCli;
  /** TLS (generated certificate): wss and TLS with the `len` framing. */
  secure: RunningCli;
  ports: { ws: number; tcp: number; raw: number; unix: string; wss: number; tlsLen: number };
  stop(): Promise<{ plain: number | null; secure: number | null }>;
}

/** Starts the two CLI servers every listener of the fuzz and soak lives on. */
export async function startServers(unixPath: string, extra: string[] = []): Promise<Servers> {
  const common = [
    'serve',
    '--host',
    '127.0.0.1',
    '--ws-port',
    '0',
    '--tcp-port',
    '0',
    '--log-format',
    'json',
    '--log-level',
    'info',
    ...extra,
  ];
  const plain = await startCli([...common, '--insecure', '--unix', unixPath, '--raw-port', '0', '--instance', 'plain']);
  let secure: RunningCli;
  try {
    secure = await startCli([...common, '--tcp-framing', 'len', '--instance', 'secure']);
  } catch (err) {
    plain.kill();
    throw err;
  }
  const l = plain.listening.listeners;
  const s = secure.listening.listeners;
  if (!l.ws || !l.tcp || !l.raw || !l.unix || !s.ws || !s.tcp) throw new Error('a listener is missing');
  return {
    plain,
    secure,
    ports: { ws: l.ws.port, tcp: l.tcp.port, raw: l.raw.port, unix: l.unix.path, wss: s.ws.port, tlsLen: s.tcp.port },
    async stop() {
      const codes = { plain: null as number | null, secure: null as number | null };
      for (const [name, p] of [
        ['plain', plain],
        ['secure', secure],
      ] as const) {
        if (p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill('SIGTERM');
          const done = await Promise.race([p.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000).unref())]);
          if (done === undefined) p.kill();
          codes[name] = done?.code ?? null;
        } else codes[name] = p.child.exitCode;
      }
      return codes;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Well-behaved clients

export type Transport = 'ws' | 'ws-echo.v1' | 'wss' | 'tcp-v1' | 'unix-v1' | 'raw' | 'tls-len';
export const TRANSPORTS: readonly Transport[] = ['ws', 'ws-echo.v1', 'wss', 'tcp-v1', 'unix-v1', 'raw', 'tls-len'];

/** What a good client reports: sent, echoed correctly, and every failure it saw (none expected). */
export interface GoodStats {
  transport: Transport;
  sent: number;
  echoed: number;
  bytes: number;
  failures: string[];
}

/**
 * A client that sends messages (at most `window` in flight) and checks that each echo is the
 * oldest message not yet echoed, byte for byte. Any close it did not ask for is a failure.
 */
export class GoodClient {
  readonly stats: GoodStats;
  private readonly pending: Buffer[] = [];
  private rxBuf: Buffer = Buffer.alloc(0);
  stopping = false;
  private closedResolve: (() => void) | undefined;
  private readonly closedP = new Promise<void>((r) => (this.closedResolve = r));
  private waiters: (() => void)[] = [];
  private seq = 0;
  /** The close code the server sent (WebSocket close, v1 close frame), if any. */
  closeCode: number | undefined;
  closed = false;
  /** This client answered a close and ended its side: it sends nothing more. */
  private ended = false;

  private constructor(
    readonly transport: Transport,
    private readonly sendRaw: (b: Buffer) => void,
    private readonly closeRaw: () => void,
    private readonly rng: Rng,
    /** Stops (true) or resumes (false) reading from the socket: a slow reader. */
    readonly setPaused: (paused: boolean) => void,
  ) {
    this.stats = { transport, sent: 0, echoed: 0, bytes: 0, failures: [] };
  }

  static async open(transport: Transport, ports: Servers['ports'], rng: Rng): Promise<GoodClient> {
    if (transport === 'ws' || transport === 'ws-echo.v1' || transport === 'wss') {
      const url = transport === 'wss' ? `wss://127.0.0.1:${ports.wss}/` : `ws://127.0.0.1:${ports.ws}/`;
      const ws = new WebSocket(url, transport === 'ws-echo.v1' ? 'echo.v1' : [], { rejectUnauthorized: false, perMessageDeflate: false });
      await once(ws, 'open');
      const c = new GoodClient(
        transport,
        (b) => ws.send(b, { binary: true }),
        () => ws.close(1000),
        rng,
        (p) => (p ? ws.pause() : ws.resume()),
      );
      ws.on('message', (d: Buffer) => c.onMessage(transport === 'ws-echo.v1' ? d.subarray(1) : d));
      ws.on('error', (e) => c.fail(`error ${e.message}`));
      ws.on('close', (code) => {
        c.closeCode = code;
        c.onClose(`close ${code}`);
      });
      return c;
    }
    let socket: Duplex;
    if (transport === 'tls-len') {
      const s = tls.connect({ host: '127.0.0.1', port: ports.tlsLen, rejectUnauthorized: false });
      await once(s, 'secureConnect');
      socket = s;
    } else {
      const s = transport === 'unix-v1' ? net.connect(ports.unix) : net.connect(transport === 'raw' ? ports.raw : ports.tcp, '127.0.0.1');
      await once(s, 'connect');
      s.setNoDelay(true);
      socket = s;
    }
    const c = new GoodClient(
      transport,
      (b) => socket.write(b),
      () => socket.end(),
      rng,
      (p) => (p ? socket.pause() : socket.resume()),
    );
    socket.on('data', (d: Buffer) => c.onBytes(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      // `len` and raw have no closing handshake: at shutdown the server ends the socket, and a
      // write of ours racing that end fails. Expected then; any other error is a failure.
      if (c.stopping && (e.code === 'EPIPE' || e.code === 'ECONNRESET' || /ended by the other party/.test(e.message))) return;
      c.fail(`error ${e.message}`);
    });
    socket.on('close', () => c.onClose('socket closed'));
    return c;
  }

  private fail(what: string): void {
    if (this.stats.failures.length < 10) this.stats.failures.push(`${this.transport}: ${what}`);
  }

  /** The server is expected to close this client (shutdown): not a failure. */
  expectClose(): void {
    this.stopping = true;
  }

  /** Resolves when the connection has closed. */
  get whenClosed(): Promise<void> {
    return this.closedP;
  }

  private onClose(what: string): void {
    this.closed = true;
    if (!this.stopping) this.fail(`closed by the server (${what}) with ${this.pending.length} echoes missing`);
    this.closedResolve?.();
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Streams (v1, len, raw): reassemble by the framing, then check. */
  private onBytes(d: Buffer): void {
    this.rxBuf = this.rxBuf.length === 0 ? d : Buffer.concat([this.rxBuf, d]);
    if (this.transport === 'raw') {
      // Raw echo has no framing: compare the byte stream against what was sent.
      while (this.rxBuf.length > 0 && this.pending.length > 0) {
        const head = this.pending[0] as Buffer;
        const n = Math.min(head.length, this.rxBuf.length);
        if (!head.subarray(0, n).equals(this.rxBuf.subarray(0, n))) {
          this.fail(`wrong bytes in the raw echo`);
          this.pending.length = 0;
          return;
        }
        this.rxBuf = this.rxBuf.subarray(n);
        if (n === head.length) {
          this.pending.shift();
          this.stats.echoed++;
        } else this.pending[0] = head.subarray(n);
      }
      if (this.rxBuf.length > 0) this.fail('bytes nobody sent');
      this.wake();
      return;
    }
    while (this.rxBuf.length >= 4) {
      const len = this.rxBuf.readUInt32BE(0);
      if (this.rxBuf.length < 4 + len) break;
      const body = this.rxBuf.subarray(4, 4 + len);
      this.rxBuf = this.rxBuf.subarray(4 + len);
      if (this.transport === 'tls-len') this.onMessage(body);
      else if (body[0] === 0x02) this.onMessage(body.subarray(1));
      else if (body[0] === 0x08) {
        // A good client answers the server's close (the closing handshake) and ends its side;
        // one that does not holds its connection until the server's close timeout.
        this.closeCode = body.length >= 3 ? body.readUInt16BE(1) : 1005;
        if (!this.ended) {
          this.sendRaw(frame(body.length >= 3 ? body.subarray(0, 3) : Buffer.from([0x08])));
          this.closeRaw();
          this.ended = true;
        }
      } else if (body[0] === 0x09) this.sendRaw(frame(Buffer.concat([Buffer.from([0x0a]), body.subarray(1)])));
      else this.fail(`unexpected v1 kind ${body[0]}`);
    }
  }

  private onMessage(payload: Buffer): void {
    const want = this.pending.shift();
    if (want === undefined) this.fail('an echo nobody asked for');
    else if (!want.equals(payload))
      this.fail(`wrong echo for message ${this.stats.echoed + 1}: ${payload.length} bytes, expected ${want.length}`);
    else this.stats.echoed++;
    this.wake();
  }

  get inFlight(): number {
    return this.pending.length;
  }

  /** Sends one message of 1..maxBytes random bytes (with its sequence number in front). */
  send(maxBytes: number): void {
    if (this.ended) return;
    const n = 8 + this.rng.int(maxBytes);
    const payload = this.rng.bytes(n);
    payload.writeUInt32BE(++this.seq, 0);
    this.pending.push(payload);
    this.stats.sent++;
    this.stats.bytes += n;
    switch (this.transport) {
      case 'ws':
      case 'wss':
        return this.sendRaw(payload);
      case 'ws-echo.v1':
        return this.sendRaw(Buffer.concat([Buffer.from([0x02]), payload]));
      case 'raw':
        return this.sendRaw(payload);
      case 'tls-len':
        return this.sendRaw(frame(payload));
      default:
        return this.sendRaw(frame(Buffer.concat([Buffer.from([0x02]), payload])));
    }
  }

  /** Resolves when every message sent so far is echoed (false on timeout or close). */
  async settle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.length > 0 && this.stats.failures.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.fail(`${this.pending.length} echoes missing after ${timeoutMs} ms`);
        return false;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.stats.failures.length === 0;
  }

  async close(): Promise<void> {
    this.stopping = true;
    if (this.closed) return;
    this.closeRaw();
    await Promise.race([this.closedP, new Promise((r) => setTimeout(r, 3000).unref())]);
  }
}

/** A v1 / len frame: u32be length + body. */
export function frame(body: Buffer): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(body.length, 0);
  return Buffer.concat([len, body]);
}

/** Scrapes the plain server's /metrics (prom-client default metrics included). */
export async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const i = line.lastIndexOf(' ');
    const key = line.slice(0, i);
    const v = Number(line.slice(i + 1));
    if (Number.isFinite(v)) out.set(key, (out.get(key) ?? 0) + v);
  }
  return out;
}
