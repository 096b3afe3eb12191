/**
 * Network fuzzer: hostile connections at every listener while well-behaved clients keep echoing.
 *
 *   npm run fuzz -- --seconds N [--seed S] [--concurrency C] [--json]
 *
 * Two servers run as child processes of the CLI (`dist/cli.js serve`, so a crash is an exit we
 * see): a plaintext one (WebSocket, TCP v1, Unix v1, raw echo) and a TLS one (wss, TLS with the
 * `len` framing), both with --max-frame-bytes 1MiB (see "Settings" in docs/RELIABILITY.md).
 * For N seconds, C connections at a time each pick a target and throw at it:
 *   http    mutated HTTP request heads (upgrades, GET /info, /metrics, /healthz) or random bytes
 *   ws      a valid upgrade (half of them offering echo.v1), then mutated masked frames
 *   wss     the same over TLS
 *   v1      mutated framing-v1 traffic (text, binary, header frames, hello, ping, close)
 *   unix    the same on the Unix socket
 *   len     mutated `len` frames over TLS
 *   raw     random bytes at the raw echo
 *   tls     random bytes or a truncated ClientHello at the TLS ports, in plaintext
 * Mutations: bit flips, byte overwrites, insertions, deletions, truncation, duplicated slices,
 * forged length fields; the bytes go out in random slices; the connection then ends cleanly,
 * is reset, or is left open until the end of its time slot (a half-open peer).
 * Meanwhile one good client per transport (ws, ws echo.v1, wss, TCP v1, Unix v1, raw, TLS len)
 * sends random messages and checks every echo, in order, byte for byte.
 *
 * It fails (exit 1) when a good client missed an echo, saw a wrong byte or was closed; when a
 * server exited; or when, after the hostile connections end, a server's descriptors are not
 * back to baseline + 2 or its RSS not back under baseline + 64 MiB (within 20 s). It prints what
 * it threw and the seed: the same seed throws the same bytes (timing, and so interleaving,
 * differ between runs).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { Duplex } from 'node:stream';
import { clientFrame } from '../../test-helpers/ws-raw.js';
import { frame, GoodClient, procStats, Rng, startServers, TRANSPORTS, type GoodStats, type Servers } from './common.js';

export interface FuzzOptions {
  seconds: number;
  seed: number;
  /** Hostile connections at a time. @default 16 */
  concurrency?: number;
  log?: (line: string) => void;
}

type Target = 'http' | 'ws' | 'wss' | 'v1' | 'unix' | 'len' | 'raw' | 'tls';
const TARGETS: readonly Target[] = ['http', 'ws', 'wss', 'v1', 'unix', 'len', 'raw', 'tls'];

export interface FuzzResult {
  seed: number;
  seconds: number;
  thrown: { connections: number; frames: number; bytes: number; resets: number; leftOpen: number; byTarget: Record<string, number> };
  good: GoodStats[];
  servers: Record<
    string,
    {
      pid: number;
      before: { rssKiB: number; fds: number };
      peak: { rssKiB: number; fds: number };
      after: { rssKiB: number; fds: number };
      exitCode: number | null;
    }
  >;
  failures: string[];
}

/** Tolerances for "back to baseline" once the hostile connections are gone. */
export const TOLERANCE = { fds: 2, rssKiB: 64 * 1024, settleMs: 20_000 } as const;

// ---------------------------------------------------------------------------------------------
// What is thrown

function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds && b.length > 0; r++) {
    const at = rng.int(b.length);
    switch (rng.int(8)) {
      case 0: // bit flip
        b[at] = (b[at] as number) ^ (1 << rng.int(8));
        break;
      case 1: // overwrite with an interesting byte
        b[at] = rng.pick([0x00, 0x01, 0x7f, 0x80, 0xff, 0x7e, 0xfe, 0x3f, 0xc0]);
        break;
      case 2: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(16)), b.subarray(at)]);
        break;
      case 3: // delete a slice
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(16))]);
        break;
      case 4: // truncate
        b = b.subarray(0, at);
        break;
      case 5: // duplicate a slice
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 1 + rng.int(64)), b.subarray(at)]);
        break;
      case 6: // forge a 32-bit length somewhere
        if (b.length >= at + 4) b.writeUInt32BE(rng.pick([0, 1, 0x7fffffff, 0xffffffff, 0x00100001, rng.int(2 ** 32)]), at);
        break;
      default: // random tail
        b = Buffer.concat([b, rng.bytes(rng.int(64))]);
    }
  }
  return b;
}

function v1Traffic(rng: Rng): { bytes: Buffer; frames: number } {
  const parts: Buffer[] = [];
  const n = 1 + rng.int(8);
  for (let i = 0; i < n; i++) {
    const payload = rng.chance(0.5) ? Buffer.from('héllo wörld '.repeat(1 + rng.int(20))) : rng.bytes(rng.int(512));
    switch (rng.int(6)) {
      case 0:
        parts.push(frame(Buffer.concat([Buffer.from([0x01]), Buffer.from(payload.toString('utf8'))])));
        break;
      case 1: {
        const h = Buffer.from(JSON.stringify({ id: `f${rng.int(1e9)}`, ts: Date.now(), x: [1, 'two', { three: null }] }));
        const hl = Buffer.alloc(2);
        hl.writeUInt16BE(h.length);
        parts.push(frame(Buffer.concat([Buffer.from([0x82]), hl, h, payload])));
        break;
      }
      case 2:
        parts.push(frame(Buffer.concat([Buffer.from([0x03]), Buffer.from(JSON.stringify({ v: 1, token: 'x'.repeat(rng.int(64)) }))])));
        break;
      case 3:
        parts.push(frame(Buffer.concat([Buffer.from([0x09]), payload.subarray(0, 125)])));
        break;
      case 4:
        parts.push(frame(Buffer.from([0x08, 0x03, 0xe8])));
        break;
      default:
        parts.push(frame(Buffer.concat([Buffer.from([0x02]), payload])));
    }
  }
  return { bytes: Buffer.concat(parts), frames: n };
}

function lenTraffic(rng: Rng): { bytes: Buffer; frames: number } {
  const n = 1 + rng.int(8);
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) parts.push(frame(rng.bytes(rng.int(1024))));
  return { bytes: Buffer.concat(parts), frames: n };
}

function wsTraffic(rng: Rng, echoV1: boolean): { bytes: Buffer; frames: number } {
  const n = 1 + rng.int(8);
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const payload = echoV1
      ? Buffer.concat([Buffer.from([rng.pick([0x01, 0x02, 0x03, 0x09, 0x82])]), rng.bytes(rng.int(300))])
      : rng.bytes(rng.int(300));
    const kind = rng.int(7);
    if (kind === 0) parts.push(clientFrame({ opcode: 0x1, payload: 'text ' + 'é'.repeat(rng.int(50)) }));
    else if (kind === 1) parts.push(clientFrame({ opcode: 0x9, payload: payload.subarray(0, 125) }));
    else if (kind === 2) {
      parts.push(clientFrame({ opcode: 0x2, payload: payload.subarray(0, 10), fin: false }));
      parts.push(clientFrame({ opcode: 0x0, payload: payload.subarray(10) }));
    } else if (kind === 3) parts.push(clientFrame({ opcode: 0x8, payload: Buffer.from([0x03, 0xe8]) }));
    else parts.push(clientFrame({ opcode: 0x2, payload }));
  }
  return { bytes: Buffer.concat(parts), frames: n };
}

function httpHead(rng: Rng, port: number, echoV1: boolean): Buffer {
  const path = rng.pick(['/', '/ws', '/info', '/metrics', '/healthz', '/readyz', '/nope', '/?token=' + 'a'.repeat(rng.int(100))]);
  const lines = [`${rng.pick(['GET', 'GET', 'GET', 'POST', 'HEAD', 'PUT'])} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  if (rng.chance(0.7)) {
    lines.push(
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${rng.bytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
    );
    if (echoV1) lines.push('Sec-WebSocket-Protocol: echo.v1');
  }
  for (let i = rng.int(4); i > 0; i--) lines.push(`X-${rng.int(1000)}: ${'v'.repeat(rng.int(200))}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n');
}

// ---------------------------------------------------------------------------------------------
// One hostile connection

interface Thrown {
  connections: number;
  frames: number;
  bytes: number;
  resets: number;
  leftOpen: number;
  byTarget: Record<string, number>;
}

async function connect(target: Target, ports: Servers['ports'], rng: Rng): Promise<Duplex> {
  const onConnect = (s: Duplex, ev: string): Promise<Duplex> =>
    new Promise((resolve, reject) => {
      s.once(ev, () => resolve(s));
      s.once('error', reject);
    });
  switch (target) {
    case 'wss':
      return onConnect(tls.connect({ host: '127.0.0.1', port: ports.wss, rejectUnauthorized: false }), 'secureConnect');
    case 'len':
      return onConnect(tls.connect({ host: '127.0.0.1', port: ports.tlsLen, rejectUnauthorized: false }), 'secureConnect');
    case 'tls':
      return onConnect(net.connect(rng.chance(0.5) ? ports.wss : ports.tlsLen, '127.0.0.1'), 'connect');
    case 'unix':
      return onConnect(net.connect(ports.unix), 'connect');
    case 'raw':
      return onConnect(net.connect(ports.raw, '127.0.0.1'), 'connect');
    case 'v1':
      return onConnect(net.connect(ports.tcp, '127.0.0.1'), 'connect');
    default:
      return onConnect(net.connect(ports.ws, '127.0.0.1'), 'connect');
  }
}

/** Half-open hostile sockets, kept until the end of the run. */
const held = new Set<Duplex>();

async function hostile(target: Target, ports: Servers['ports'], rng: Rng, thrown: Thrown, until: number): Promise<void> {
  // Decide everything from the PRNG before any I/O, so a seed throws the same bytes.
  let payload: Buffer;
  let frames = 0;
  const echoV1 = rng.chance(0.5);
  switch (target) {
    case 'http':
      payload = rng.chance(0.2) ? rng.bytes(1 + rng.int(2048)) : mutate(rng, httpHead(rng, ports.ws, echoV1));
      break;
    case 'ws':
    case 'wss': {
      const t = wsTraffic(rng, echoV1);
      frames = t.frames;
      payload = rng.chance(0.8) ? mutate(rng, t.bytes) : t.bytes;
      break;
    }
    case 'v1':
    case 'unix': {
      const t = v1Traffic(rng);
      frames = t.frames;
      payload = rng.chance(0.1) ? rng.bytes(1 + rng.int(1024)) : mutate(rng, t.bytes);
      break;
    }
    case 'len': {
      const t = lenTraffic(rng);
      frames = t.frames;
      payload = rng.chance(0.1) ? rng.bytes(1 + rng.int(1024)) : mutate(rng, t.bytes);
      break;
    }
    case 'tls':
      // 0x16 0x03 0x01: a TLS record header, then garbage (a broken ClientHello), or plain garbage.
      payload = rng.chance(0.5) ? Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), rng.bytes(rng.int(600))]) : rng.bytes(1 + rng.int(600));
      break;
    default:
      payload = rng.bytes(1 + rng.int(4096));
  }
  if (target === 'ws' || target === 'wss') {
    // A valid upgrade (always to "/" with every header right), then the mutated frames.
    const key = rng.bytes(16).toString('base64');
    const head = [
      'GET / HTTP/1.1',
      `Host: 127.0.0.1`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      ...(echoV1 ? ['Sec-WebSocket-Protocol: echo.v1'] : []),
    ];
    payload = Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), payload]);
  }
  const slices: number[] = [];
  for (let left = payload.length; left > 0;) {
    const n = rng.chance(0.3) ? left : 1 + rng.int(Math.min(left, 512));
    slices.push(n);
    left -= n;
  }
  const ending = rng.pick(['end', 'end', 'reset', 'reset', 'linger', 'half-open'] as const);
  const reads = rng.chance(0.8);
  const lingerMs = rng.int(300);

  let socket: Duplex;
  try {
    socket = await connect(target, ports, rng);
  } catch {
    return; // refused (e.g. descriptors or the listen backlog): nothing thrown
  }
  thrown.connections++;
  thrown.frames += frames;
  thrown.byTarget[target] = (thrown.byTarget[target] ?? 0) + 1;
  socket.on('error', () => undefined);
  if (reads) socket.resume();
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  let at = 0;
  for (const n of slices) {
    if (socket.destroyed) break;
    const chunk = payload.subarray(at, at + n);
    at += n;
    thrown.bytes += chunk.length;
    await new Promise<void>((r) => socket.write(chunk, () => r()));
  }
  const wait = (ms: number): Promise<void> => Promise.race([closed, new Promise<void>((r) => setTimeout(r, ms))]);
  switch (ending) {
    case 'end':
      socket.end();
      await wait(500);
      socket.destroy();
      break;
    case 'reset':
      thrown.resets++;
      // An RST needs a TCP handle (not TLS, not a Unix socket).
      if (socket instanceof net.Socket && !(socket instanceof tls.TLSSocket) && target !== 'unix') socket.resetAndDestroy();
      else socket.destroy();
      break;
    case 'linger':
      await wait(lingerMs);
      socket.destroy();
      break;
    default:
      // Half-open: keep the socket, say nothing more, until the run ends (without holding up
      // this worker; at most 200 are held at once).
      if (held.size >= 200) {
        socket.destroy();
        break;
      }
      thrown.leftOpen++;
      held.add(socket);
      void wait(Math.max(0, until - Date.now())).then(() => {
        held.delete(socket);
        socket.destroy();
      });
  }
}

// ---------------------------------------------------------------------------------------------

export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const concurrency = opts.concurrency ?? 16;
  const dir = await mkdtemp(join(tmpdir(), 'echo-fuzz-'));
  const servers = await startServers(join(dir, 'echo.sock'), ['--max-frame-bytes', '1MiB']);
  const failures: string[] = [];
  const thrown: Thrown = { connections: 0, frames: 0, bytes: 0, resets: 0, leftOpen: 0, byTarget: {} };
  const procs = { plain: servers.plain, secure: servers.secure };
  const pid = (name: keyof typeof procs): number => procs[name].child.pid as number;
  const result: FuzzResult = { seed: opts.seed, seconds: opts.seconds, thrown, good: [], servers: {}, failures };
  const goodRng = new Rng(opts.seed ^ 0x5bd1e995);
  let good: GoodClient[] = [];
  let stopGood = false;
  try {
    good = await Promise.all(TRANSPORTS.map((t) => GoodClient.open(t, servers.ports, goodRng)));
    // Warm up with good traffic only, then take the baseline.
    for (let i = 0; i < 50; i++) for (const g of good) g.send(256);
    await Promise.all(good.map((g) => g.settle(10_000)));
    const before = { plain: procStats(pid('plain')), secure: procStats(pid('secure')) };
    const peak = { ...before };
    log(`fuzz: seed ${opts.seed}, ${opts.seconds} s, ${concurrency} hostile connections at a time`);
    log(
      `baseline: plain pid ${pid('plain')} ${JSON.stringify(before.plain)}, secure pid ${pid('secure')} ${JSON.stringify(before.secure)}`,
    );

    const until = Date.now() + opts.seconds * 1000;
    const goodLoop = (async () => {
      while (!stopGood) {
        for (const g of good) if (g.inFlight < 8) g.send(g.transport === 'raw' ? 512 : 4096);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const sampler = setInterval(() => {
      for (const name of ['plain', 'secure'] as const) {
        try {
          const s = procStats(pid(name));
          peak[name] = { rssKiB: Math.max(peak[name].rssKiB, s.rssKiB), fds: Math.max(peak[name].fds, s.fds) };
        } catch {
          // exited: reported below
        }
      }
    }, 250);
    const workers: Promise<void>[] = [];
    for (let w = 0; w < concurrency; w++) {
      const rng = new Rng(opts.seed * 1000003 + w);
      workers.push(
        (async () => {
          while (Date.now() < until) await hostile(rng.pick(TARGETS), servers.ports, rng, thrown, until);
        })(),
      );
    }
    await Promise.all(workers);
    for (const s of held) s.destroy();
    held.clear();
    stopGood = true;
    await goodLoop;
    clearInterval(sampler);
    await Promise.all(good.map((g) => g.settle(10_000)));

    // Back to baseline: poll until within tolerance or the deadline.
    const after = { plain: procStats(pid('plain')), secure: procStats(pid('secure')) };
    const settleUntil = Date.now() + TOLERANCE.settleMs;
    const within = (name: 'plain' | 'secure'): boolean =>
      after[name].fds <= before[name].fds + TOLERANCE.fds && after[name].rssKiB <= before[name].rssKiB + TOLERANCE.rssKiB;
    while (!(within('plain') && within('secure')) && Date.now() < settleUntil) {
      await new Promise((r) => setTimeout(r, 250));
      after.plain = procStats(pid('plain'));
      after.secure = procStats(pid('secure'));
    }
    for (const name of ['plain', 'secure'] as const) {
      result.servers[name] = {
        pid: pid(name),
        before: before[name],
        peak: peak[name],
        after: after[name],
        exitCode: procs[name].child.exitCode,
      };
      if (after[name].fds > before[name].fds + TOLERANCE.fds)
        failures.push(`${name}: ${after[name].fds} descriptors open afterwards, baseline ${before[name].fds} (+${TOLERANCE.fds} allowed)`);
      if (after[name].rssKiB > before[name].rssKiB + TOLERANCE.rssKiB)
        failures.push(
          `${name}: RSS ${after[name].rssKiB} KiB afterwards, baseline ${before[name].rssKiB} KiB (+${TOLERANCE.rssKiB} allowed)`,
        );
    }
  } catch (err) {
    failures.push(`fuzz run failed: ${(err as Error).stack ?? String(err)}`);
  } finally {
    stopGood = true;
    for (const g of good) {
      result.good.push(g.stats);
      failures.push(...g.stats.failures);
    }
    for (const name of ['plain', 'secure'] as const) {
      const p = procs[name].child;
      if (p.exitCode !== null || p.signalCode !== null)
        failures.push(`${name} server exited during the run (${p.exitCode ?? p.signalCode}): ${procs[name].stderr().slice(-2000)}`);
    }
    await Promise.all(good.map((g) => g.close()));
    const codes = await servers.stop();
    for (const [name, code] of Object.entries(codes)) if (code !== 0) failures.push(`${name} server: exit ${code} on SIGTERM`);
    const stderr = servers.plain.stderr() + servers.secure.stderr();
    if (/\n\s+at .+:\d+:\d+\)?\n|Uncaught|FATAL ERROR/.test(stderr)) failures.push(`a stack trace on stderr: ${stderr.slice(0, 2000)}`);
    await rm(dir, { recursive: true, force: true });
  }
  const t = thrown;
  log(
    `thrown: ${t.connections} connections (${t.resets} reset, ${t.leftOpen} left half-open), ${t.frames} frames before mutation, ${t.bytes} bytes; by target ${JSON.stringify(t.byTarget)}`,
  );
  log(`good clients: ${result.good.map((g) => `${g.transport} ${g.echoed}/${g.sent}`).join(', ')}`);
  for (const [name, s] of Object.entries(result.servers))
    log(
      `${name}: rss KiB ${s.before.rssKiB} -> peak ${s.peak.rssKiB} -> ${s.after.rssKiB}; fds ${s.before.fds} -> peak ${s.peak.fds} -> ${s.after.fds}`,
    );
  log(
    failures.length === 0
      ? `ok (replay: npm run fuzz -- --seconds ${opts.seconds} --seed ${opts.seed})`
      : `FAILED:\n  ${failures.join('\n  ')}`,
  );
  log(`seed ${opts.seed}`);
  return result;
}

function parseArgs(argv: string[]): FuzzOptions {
  const o: FuzzOptions = { seconds: 10, seed: Math.floor(Math.random() * 2 ** 31) };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = Number(argv[i + 1]);
    if (a === '--seconds' && Number.isFinite(v) && v > 0) o.seconds = v;
    else if (a === '--seed' && Number.isInteger(v)) o.seed = v;
    else if (a === '--concurrency' && Number.isInteger(v) && v > 0) o.concurrency = v;
    else if (a === '-h' || a === '--help') {
      console.log('usage: npm run fuzz -- --seconds N [--seed S] [--concurrency C]');
      process.exit(0);
    } else {
      console.error(`fuzz: bad argument ${a ?? ''} ${argv[i + 1] ?? ''} (usage: --seconds N [--seed S] [--concurrency C])`);
      process.exit(2);
    }
    i++;
  }
  return o;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await runFuzz(parseArgs(process.argv.slice(2)));
  process.exitCode = r.failures.length === 0 ? 0 : 1;
}
