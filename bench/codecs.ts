/**
 * Micro-benchmarks for the sans-I/O codecs in src/protocol (issue 3: "frames/s decode and
 * encode, allocations per frame"). Prints a Markdown table; never asserts.
 *
 *   npx tsc -p tsconfig.json && node --expose-gc build/bench/codecs.js [--filter REGEX] [--time MS]
 *
 * Throughput: per case, a warm-up (~300 ms), then 5 samples of ~--time ms (default 200); the
 * table shows the median and the spread ((max − min) / 2 as % of the median). "CPU share" is
 * this process's CPU time ÷ wall time over the samples: below ~90% other processes took the
 * CPU from us (the machine is shared), and the row is marked noisy.
 *
 * Allocations: Node 20's V8 has no allocation counter (no `total_allocated_bytes`), so: gc()
 * twice, read `process.memoryUsage()` (heapUsed, arrayBuffers), run N operations with no
 * forced GC in between, read it again; bytes per frame = delta / (N × frames per op). That is
 * exact only if no GC ran inside the window: a `PerformanceObserver` on 'gc' entries checks
 * this, and on a GC the measurement is retried with N / 4 (down to 16). "heap" is JS heap
 * (objects, views, strings; also code compiled meanwhile, hence the warm-up first),
 * "ArrayBuffer" is off-heap backing stores (Buffer.allocUnsafe's 8 KiB pool is refilled
 * every 8 KiB of small buffers, so pooled allocations show up amortised). Values below
 * ~1 B/frame are noise from the measurement itself (memoryUsage() allocates a few hundred
 * bytes per call).
 *
 * Unmasking: src/protocol/mask.ts uses bufferutil's native loop for ≥ 128 B when installed.
 * "JS" rows load a second instance of mask.js with ECHO_NO_NATIVE_MASK=1 (a module URL with
 * a query string is a separate module instance); the WsReceiver rows are repeated in a child
 * process with ECHO_NO_NATIVE_MASK=1 when the native module is present.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import {
  encodeV1Frame,
  encodeWsFrame,
  isUtf8,
  Utf8Validator,
  V1Decoder,
  V1Opcode,
  WsOpcode,
  WsReceiver,
  writeHeader,
  headerSize,
  type V1FrameHandler,
  type WsReceiverHandler,
} from '../src/protocol/index.js';
import type { WsDataOpcode } from '../src/protocol/ws-frame.js';
import * as maskMod from '../src/protocol/mask.js';

type MaskModule = typeof maskMod;

// ------------------------------------------------------------------ options

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const FILTER = opt('--filter') !== undefined ? new RegExp(opt('--filter') as string) : undefined;
const SAMPLE_MS = Number(opt('--time') ?? 200);
const CHILD = argv.includes('--json'); // child mode: print rows as JSON
const LABEL = opt('--label') ?? '';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc (allocation figures need gc())');
}

// ------------------------------------------------------------------ measuring

interface Row {
  name: string;
  frames: number; // frames per op
  bytes: number; // payload bytes per op
  opsPerS: number;
  spreadPct: number;
  cpuShare: number;
  heapPerFrame: number | undefined;
  abPerFrame: number | undefined;
  allocNote: string;
}

const rows: Row[] = [];

let gcEntries: number[] = [];
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcEntries.push(e.startTime);
});
obs.observe({ entryTypes: ['gc'] });

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

function runFor(fn: () => void, ms: number): { ops: number; wall: number; cpu: number } {
  let ops = 0;
  let batch = 1;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    t = performance.now();
    if (t - t0 < ms / 20) batch *= 2;
  }
  const c = process.cpuUsage(c0);
  return { ops, wall: t - t0, cpu: (c.user + c.system) / 1000 };
}

async function measureAlloc(
  fn: () => void,
  frames: number,
  n0: number,
): Promise<{ heap: number | undefined; ab: number | undefined; note: string }> {
  if (gc === undefined) return { heap: undefined, ab: undefined, note: 'no gc()' };
  for (let n = n0; n >= 16; n = Math.floor(n / 4)) {
    gc();
    gc();
    await tick();
    gcEntries = [];
    const w0 = performance.now();
    const m0 = process.memoryUsage();
    for (let i = 0; i < n; i++) fn();
    const m1 = process.memoryUsage();
    const w1 = performance.now();
    await tick(); // let the observer deliver entries of the window
    const gcs = gcEntries.filter((s) => s >= w0 && s <= w1).length;
    if (gcs === 0) {
      const per = n * frames;
      return { heap: (m1.heapUsed - m0.heapUsed) / per, ab: (m1.arrayBuffers - m0.arrayBuffers) / per, note: `N=${n}` };
    }
  }
  return { heap: undefined, ab: undefined, note: 'GC in every window' };
}

async function bench(name: string, frames: number, bytes: number, fn: () => void, allocN = 20000): Promise<void> {
  if (FILTER !== undefined && !FILTER.test(name)) return;
  runFor(fn, 300); // warm-up (JIT)
  const samples: number[] = [];
  let wall = 0;
  let cpu = 0;
  for (let s = 0; s < 5; s++) {
    const r = runFor(fn, SAMPLE_MS);
    samples.push((r.ops * 1000) / r.wall);
    wall += r.wall;
    cpu += r.cpu;
  }
  samples.sort((a, b) => a - b);
  const med = samples[2] as number;
  const spread = (((samples[4] as number) - (samples[0] as number)) / 2 / med) * 100;
  const a = await measureAlloc(fn, frames, allocN);
  rows.push({
    name: name + LABEL,
    frames,
    bytes,
    opsPerS: med,
    spreadPct: spread,
    cpuShare: cpu / wall,
    heapPerFrame: a.heap,
    abPerFrame: a.ab,
    allocNote: a.note,
  });
}

// ------------------------------------------------------------------ inputs

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** `count` masked client frames of `size` bytes, concatenated into one chunk. */
function maskedChunk(size: number, count: number, opcode: number = WsOpcode.BINARY): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const key = pattern(4, 7 + i);
    parts.push(encodeWsFrame(opcode, pattern(size, 100 + i), { maskKey: key }));
  }
  return Buffer.concat(parts);
}

const LIMITS = { maxMessageBytes: 64 << 20 };
const V1_LIMITS = { maxFrameBytes: 64 << 20, maxHeaderBytes: 4096 };

/** Counts messages; no echo. */
class CountHandler implements WsReceiverHandler {
  messages = 0;
  bytes = 0;
  onMessage(_op: WsDataOpcode, _buf: Buffer, start: number, end: number): void {
    this.messages++;
    this.bytes += end - start;
  }
  onPing(): void {}
  onPong(): void {}
  onClose(): void {}
}

/**
 * The echo write path of src/transports/ws.ts (WsProtocol.echo), without the socket: echoes
 * of the frames of one read go into the read buffer itself, behind the parse position
 * (writeHeader + copyWithin); a message collected across reads gets its header in the room
 * reserved in front of it.
 */
class EchoHandler implements WsReceiverHandler {
  outBuf: Buffer | undefined = undefined;
  outStart = 0;
  outPos = 0;
  flushed = 0;
  begin(): void {
    this.outBuf = undefined;
    this.outStart = this.outPos = 0;
  }
  flush(): void {
    if (this.outPos > this.outStart) {
      this.flushed += this.outPos - this.outStart; // ws.ts: conn.write(outBuf.subarray(outStart, outPos))
      this.outStart = this.outPos;
    }
  }
  onMessage(opcode: WsDataOpcode, buf: Buffer, start: number, end: number, inPlace: boolean): void {
    const len = end - start;
    if (inPlace) {
      if (this.outBuf !== buf) {
        this.flush();
        this.outBuf = buf;
        this.outStart = this.outPos = 0;
      }
      const at = this.outPos;
      const h = writeHeader(buf, at, opcode, len);
      if (at + h !== start) {
        // ws.ts uses copyWithin (no allocation); the Buffer.copy variant it replaced made a
        // Uint8Array view of the source range per call (~96 B of heap). Both are in the table.
        if (this.copyWithin) buf.copyWithin(at + h, start, end);
        else buf.copy(buf, at + h, start, end);
      }
      this.outPos = at + h + len;
    } else {
      this.flush();
      const h = headerSize(len);
      writeHeader(buf, start - h, opcode, len);
      this.flushed += h + len;
    }
  }
  constructor(private readonly copyWithin = true) {}
  onPing(): void {}
  onPong(): void {}
  onClose(): void {}
}

class V1Count implements V1FrameHandler {
  frames = 0;
  onV1Frame(_op: V1Opcode, _buf: Buffer, frameStart: number, _hs: number, _he: number, _ps: number, end: number): void {
    this.frames++;
    this.frameBytes += end - frameStart;
  }
  frameBytes = 0;
}

// ------------------------------------------------------------------ cases

async function wsDecodeCases(): Promise<void> {
  for (const size of [64, 65536]) {
    const label = size === 64 ? '64 B' : '64 KiB';
    const template = maskedChunk(size, 16);
    const chunk = Buffer.from(template);
    // Decoding unmasks in place; the echo path also overwrites the chunk. Every op restores
    // the chunk from the template first (a memcpy, like the kernel's copy into the read
    // buffer); the "restore only" row is that cost alone.
    await bench(
      `restore only (memcpy of the 16-frame chunk), ${label}`,
      16,
      16 * size,
      () => {
        template.copy(chunk);
      },
      size === 64 ? 20000 : 200,
    );
    const count = new CountHandler();
    const rx = new WsReceiver(count, LIMITS);
    await bench(
      `WsReceiver decode ${label} masked, 16 frames/chunk`,
      16,
      16 * size,
      () => {
        template.copy(chunk);
        rx.push(chunk);
      },
      size === 64 ? 20000 : 200,
    );
    const echo = new EchoHandler();
    const rxe = new WsReceiver(echo, LIMITS);
    await bench(
      `WsReceiver decode + in-place echo write ${label}, 16 frames/chunk`,
      16,
      16 * size,
      () => {
        template.copy(chunk);
        echo.begin();
        rxe.push(chunk);
        echo.flush();
      },
      size === 64 ? 20000 : 200,
    );
    const echoCw = new EchoHandler(false);
    const rxcw = new WsReceiver(echoCw, LIMITS);
    await bench(
      `WsReceiver decode + in-place echo write ${label}, 16 frames/chunk — with Buffer.copy instead of copyWithin (the previous src)`,
      16,
      16 * size,
      () => {
        template.copy(chunk);
        echoCw.begin();
        rxcw.push(chunk);
        echoCw.flush();
      },
      size === 64 ? 20000 : 200,
    );
  }
  // The realistic large-message case: one 64 KiB frame arriving in 64 KiB reads (so each
  // frame spans two reads): the payload is collected (unmasked while copying) into a buffer
  // of its own, with header room in front for the echo.
  {
    const one = maskedChunk(65536, 1);
    const reads: Buffer[] = [];
    for (let at = 0; at < one.length; at += 65536) reads.push(Buffer.from(one.subarray(at, Math.min(at + 65536, one.length))));
    const echo = new EchoHandler();
    const rx = new WsReceiver(echo, LIMITS);
    await bench(
      'WsReceiver decode + echo 64 KiB frame split over 64 KiB reads (collect path)',
      1,
      65536,
      () => {
        for (const r of reads) {
          echo.begin();
          rx.push(r);
          echo.flush();
        }
      },
      200,
    );
  }
}

async function v1Cases(): Promise<void> {
  for (const [label, op] of [
    ['binary', V1Opcode.BINARY],
    ['text (UTF-8 checked)', V1Opcode.TEXT],
  ] as const) {
    const payload = Buffer.from('x'.repeat(64));
    const chunk = Buffer.concat(Array.from({ length: 16 }, () => encodeV1Frame(op, payload)));
    const h = new V1Count();
    const dec = new V1Decoder(h, V1_LIMITS);
    await bench(`V1Decoder decode 64 B ${label}, 16 frames/chunk`, 16, 16 * 64, () => {
      dec.push(chunk);
    });
  }
}

async function encodeCases(): Promise<void> {
  for (const size of [64, 65536]) {
    const label = size === 64 ? '64 B' : '64 KiB';
    const payload = pattern(size, 3);
    const n = size === 64 ? 20000 : 200;
    let sink = 0;
    await bench(
      `encodeFrame v1 ${label} (new Buffer per frame)`,
      1,
      size,
      () => {
        sink += encodeV1Frame(V1Opcode.BINARY, payload).length;
      },
      n,
    );
    await bench(
      `encodeFrame ws ${label} (server, unmasked; new Buffer per frame)`,
      1,
      size,
      () => {
        sink += encodeWsFrame(WsOpcode.BINARY, payload).length;
      },
      n,
    );
    if (sink === -1) console.log(sink);
  }
}

async function utf8Cases(): Promise<void> {
  const ascii = Buffer.from('The quick brown fox jumps over the lazy dog. '.repeat(1500).slice(0, 65536));
  const mixedText = 'Grüße, κόσμε, 日本語テキスト, emoji 🎉🚀 and ASCII. ';
  let mixed = Buffer.from(mixedText.repeat(Math.ceil(65536 / Buffer.byteLength(mixedText))));
  // cut at a character boundary near 64 KiB
  let end = 65536;
  while (end > 0 && ((mixed[end] as number) & 0xc0) === 0x80) end--;
  mixed = Buffer.from(mixed.subarray(0, end));
  const small = Buffer.from('hello, world; 64 bytes of ASCII text for the small-message case!');
  for (const [label, buf] of [
    ['64 KiB ASCII', ascii],
    ['64 KiB mixed multibyte', mixed],
    ['64 B ASCII', small],
  ] as const) {
    const v = new Utf8Validator();
    let ok = 0;
    const n = buf.length > 1000 ? 500 : 20000;
    await bench(
      `Utf8Validator.push ${label}`,
      1,
      buf.length,
      () => {
        v.reset();
        if (v.push(buf)) ok++;
      },
      n,
    );
    await bench(
      `isUtf8 (node:buffer) ${label}`,
      1,
      buf.length,
      () => {
        if (isUtf8(buf)) ok++;
      },
      n,
    );
    if (ok === -1) console.log(ok);
  }
}

async function maskCases(): Promise<void> {
  process.env['ECHO_NO_NATIVE_MASK'] = '1';
  const jsMask = (await import(new URL('../src/protocol/mask.js?js-only', import.meta.url).href)) as MaskModule;
  delete process.env['ECHO_NO_NATIVE_MASK'];
  const impls: [string, MaskModule][] = [['JS', jsMask]];
  if (maskMod.nativeMasking) impls.push(['native (bufferutil)', maskMod]);
  for (const size of [64, 1024, 65536]) {
    const label = size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
    const buf = pattern(size + 4, 9);
    for (const [impl, m] of impls) {
      if (impl !== 'JS' && size < 128) continue; // native is used from 128 B up
      await bench(
        `unmaskInPlace ${label}, ${impl}`,
        1,
        size,
        () => {
          m.unmaskInPlace(buf, 4, size + 4, buf, 0, 0);
        },
        size > 1000 ? 500 : 20000,
      );
    }
  }
}

// ------------------------------------------------------------------ output

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtB = (n: number | undefined): string => (n === undefined ? '—' : Math.abs(n) < 0.5 ? '0' : n.toFixed(n < 10 ? 1 : 0));

function table(all: Row[]): string {
  const out = [
    '| case | frames/s | MB/s | spread | CPU share | heap B/frame | ArrayBuffer B/frame | alloc window | notes |',
    '|---|--:|--:|--:|--:|--:|--:|---|---|',
  ];
  for (const r of all) {
    const fps = r.opsPerS * r.frames;
    const mbs = (r.opsPerS * r.bytes) / 1e6;
    const notes: string[] = [];
    if (r.cpuShare < 0.9) notes.push('noisy (CPU taken by other processes)');
    if (r.spreadPct > 10) notes.push('spread > 10%');
    out.push(
      `| ${r.name} | ${fmtInt(fps)} | ${mbs < 10 ? mbs.toFixed(1) : fmtInt(mbs)} | ±${r.spreadPct.toFixed(0)}% | ${(r.cpuShare * 100).toFixed(0)}% | ${fmtB(r.heapPerFrame)} | ${fmtB(r.abPerFrame)} | ${r.allocNote} | ${notes.join('; ')} |`,
    );
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const started = new Date();
  await wsDecodeCases();
  await v1Cases();
  await encodeCases();
  await utf8Cases();
  await maskCases();
  obs.disconnect();
  if (CHILD) {
    process.stdout.write(JSON.stringify(rows) + '\n');
    return;
  }
  let all = rows;
  // WsReceiver with the JS unmasking loop (what runs without the optional bufferutil).
  if (maskMod.nativeMasking && (FILTER === undefined || FILTER.test('WsReceiver (JS mask)'))) {
    const self = fileURLToPath(import.meta.url);
    const r = spawnSync(
      process.execPath,
      [...process.execArgv, self, '--json', '--filter', 'WsReceiver', '--time', String(SAMPLE_MS), '--label', ' (JS mask)'],
      {
        env: { ...process.env, ECHO_NO_NATIVE_MASK: '1' },
        encoding: 'utf8',
      },
    );
    const line = r.stdout.trim().split('\n').pop();
    if (r.status === 0 && line !== undefined && line.startsWith('[')) all = [...rows, ...(JSON.parse(line) as Row[])];
    else console.error(`JS-mask child run failed: ${r.stderr}`);
  }
  const load1 = os.loadavg();
  const cmd = `node ${process.execArgv.join(' ')} ${fileURLToPath(import.meta.url).replace(process.cwd() + '/', '')} ${argv.join(' ')}`
    .replace(/\s+/g, ' ')
    .trim();
  console.log(`# Codec micro-benchmarks\n`);
  console.log(
    `- date: ${started.toISOString().replace('T', ' ').slice(0, 16)} UTC; node ${process.version}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`,
  );
  console.log(`- command: \`npx tsc -p tsconfig.json && ${cmd}\``);
  console.log(
    `- native unmasking (bufferutil): ${maskMod.nativeMasking ? 'yes' : 'no'}; samples: 5 × ${SAMPLE_MS} ms after a 300 ms warm-up, median shown`,
  );
  console.log(
    `- load average (1/5/15 min): start ${load0.map((x) => x.toFixed(2)).join(' ')}, end ${load1.map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)`,
  );
  console.log(
    `- frames/s and MB/s are per frame of the case (MB = 10^6 B of payload); "B/frame" = bytes allocated per frame (method in bench/codecs.ts)\n`,
  );
  console.log(table(all));
}

await main();
