/**
 * Soak: mixed traffic with connects and disconnects for N minutes against the two CLI servers of
 * the fuzzer (plaintext: ws, TCP v1, Unix v1, raw; TLS: wss, TLS len).
 *
 *   npm run soak -- --minutes N [--clients C]
 *
 * C good clients (default 28, spread over the seven transports) send random messages of up to
 * 4 KiB, each checking every echo in order, byte for byte; every second a few of them close and
 * are replaced by new connections. Every 10 s it prints, for each server: RSS and open
 * descriptors (from /proc/PID), and for the plaintext one heap used, event-loop lag p99 and
 * echoes from its /metrics (prom-client's default metrics: nodejs_heap_size_used_bytes,
 * nodejs_eventloop_lag_p99_seconds; the TLS server's /metrics would need the generated CA, so
 * it gets /proc figures only), and the clients' echo count. At the end it compares the last
 * third of the samples with the first third (RSS and descriptors) and exits 1 on any client
 * failure or server exit. It prints figures; it does not judge "flat" beyond reporting them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GoodClient, procStats, Rng, scrape, startServers, TRANSPORTS } from './fuzz/common.js';

const args = process.argv.slice(2);
let minutes = 1;
let count = 28;
for (let i = 0; i < args.length; i += 2) {
  const v = Number(args[i + 1]);
  if (args[i] === '--minutes' && v > 0) minutes = v;
  else if (args[i] === '--clients' && Number.isInteger(v) && v > 0) count = v;
  else {
    console.error('usage: npm run soak -- --minutes N [--clients C]');
    process.exit(2);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'echo-soak-'));
const servers = await startServers(join(dir, 'echo.sock'));
const rng = new Rng(Date.now() & 0x7fffffff);
const clients: GoodClient[] = [];
const failures: string[] = [];
let echoedByClosed = 0;
let connects = 0;
const open = async (i: number): Promise<void> => {
  const c = await GoodClient.open(TRANSPORTS[i % TRANSPORTS.length] as (typeof TRANSPORTS)[number], servers.ports, rng);
  connects++;
  clients[i] = c;
};
await Promise.all(Array.from({ length: count }, (_, i) => open(i)));

const pidPlain = servers.plain.child.pid as number;
const pidSecure = servers.secure.child.pid as number;
const samples: { t: number; plain: { rssKiB: number; fds: number }; secure: { rssKiB: number; fds: number } }[] = [];
const started = Date.now();
const until = started + minutes * 60_000;
let stop = false;

const traffic = (async () => {
  while (!stop) {
    for (const c of clients) if (c !== undefined && c.inFlight < 4) c.send(4096);
    await new Promise((r) => setTimeout(r, 10));
  }
})();

const churn = setInterval(() => {
  // Two clients a second go away (after their echoes arrived) and come back as new connections.
  for (let k = 0; k < 2; k++) {
    const i = rng.int(count);
    const c = clients[i];
    if (c === undefined) continue;
    delete clients[i];
    void (async () => {
      await c.settle(10_000);
      echoedByClosed += c.stats.echoed;
      failures.push(...c.stats.failures);
      await c.close();
      await open(i);
    })().catch((err: Error) => failures.push(`reconnect: ${err.message}`));
  }
}, 1000);

const echoed = (): number => echoedByClosed + clients.reduce((n, c) => n + (c?.stats.echoed ?? 0), 0);
const mib = (kib: number): string => (kib / 1024).toFixed(1);
console.log(`soak: ${minutes} min, ${count} clients over ${TRANSPORTS.join(', ')}; plain pid ${pidPlain}, secure pid ${pidSecure}`);
console.log('t_s  plain_rss_MiB plain_heap_MiB plain_fds lag_p99_ms  secure_rss_MiB secure_fds  connects  echoes  server_msgs_out');
const sample = async (): Promise<void> => {
  const plain = procStats(pidPlain);
  const secure = procStats(pidSecure);
  samples.push({ t: Date.now() - started, plain, secure });
  const m = await scrape(servers.ports.ws);
  const heap = (m.get('nodejs_heap_size_used_bytes') ?? NaN) / 1048576;
  const lag = (m.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000;
  let out = 0;
  for (const [k, v] of m) if (k.startsWith('echo_messages_out_total')) out += v;
  console.log(
    [
      String(Math.round((Date.now() - started) / 1000)).padStart(4),
      mib(plain.rssKiB).padStart(13),
      heap.toFixed(1).padStart(14),
      String(plain.fds).padStart(9),
      lag.toFixed(1).padStart(10),
      mib(secure.rssKiB).padStart(15),
      String(secure.fds).padStart(10),
      String(connects).padStart(9),
      String(echoed()).padStart(7),
      String(out).padStart(16),
    ].join(' '),
  );
};
await sample();
while (Date.now() < until) {
  await new Promise((r) => setTimeout(r, Math.min(10_000, until - Date.now())));
  if (servers.plain.child.exitCode !== null || servers.secure.child.exitCode !== null) {
    failures.push('a server exited');
    break;
  }
  await sample();
}
clearInterval(churn);
stop = true;
await traffic;
for (const c of clients) if (c !== undefined) await c.settle(10_000);
for (const c of clients) if (c !== undefined) failures.push(...c.stats.failures);
const total = echoed();
await Promise.all(clients.map((c) => c?.close()));
const codes = await servers.stop();
await rm(dir, { recursive: true, force: true });

const third = Math.max(1, Math.floor(samples.length / 3));
const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const name of ['plain', 'secure'] as const) {
  const first = samples.slice(0, third);
  const last = samples.slice(-third);
  console.log(
    `${name}: RSS ${mib(avg(first.map((s) => s[name].rssKiB)))} -> ${mib(avg(last.map((s) => s[name].rssKiB)))} MiB, fds ${avg(first.map((s) => s[name].fds)).toFixed(1)} -> ${avg(last.map((s) => s[name].fds)).toFixed(1)} (first vs last third of the samples)`,
  );
}
console.log(`echoes checked: ${total}; connections opened: ${connects}; servers exited ${JSON.stringify(codes)} on SIGTERM`);
if (codes.plain !== 0 || codes.secure !== 0) failures.push(`exit codes ${JSON.stringify(codes)}`);
console.log(failures.length === 0 ? 'ok' : `FAILED:\n  ${failures.slice(0, 20).join('\n  ')}`);
process.exitCode = failures.length === 0 ? 0 : 1;
