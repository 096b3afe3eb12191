/**
 * Connections held: N concurrent WebSocket connections with keepalive on, spread over client
 * processes (one process may hold at most `ulimit -n` sockets), against `serve --workers W`.
 *
 *   npx tsc -p tsconfig.json && node build/bench/hold.js [--connections N] [--workers W]
 *        [--procs P] [--keepalive MS] [--hold-s S] [--rate R]
 *
 * Defaults: 2,000 connections, 1 worker, 2 client processes, keepalive 2000 ms, held 10 s,
 * R = 0.5 messages per connection per second (0 = idle: keepalive only). Each client process
 * opens its share (200 at a time), then every connection sends a 32-byte message at the rate
 * and checks its echo; every connection must see at least one ping in the hold. At the end it
 * prints: connections opened / failed / closed early, echoes ok / wrong / missing, pings seen,
 * and the RSS of every server process (primary and workers, from /proc) with RSS per
 * connection over the idle baseline. Exit 1 on any error. It measures; it does not judge speed.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { freePort, PLAIN_SERVE_ARGS } from '../test-helpers/cli.js';
import { spawnCli } from '../test-helpers/cli-lines.js';

interface Report {
  opened: number;
  failed: number;
  closedEarly: number;
  echoed: number;
  wrong: number;
  missing: number;
  pinged: number;
}
type ToClient = { url: string; count: number; rate: number; localAddress: string } | { stop: true };

const rss = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

if (process.argv[2] === '--client') clientProcess();
else await main();

function clientProcess(): void {
  const r: Report = { opened: 0, failed: 0, closedEarly: 0, echoed: 0, wrong: 0, missing: 0, pinged: 0 };
  const sockets: { ws: WebSocket; pending: string[]; pinged: boolean }[] = [];
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  process.on('message', (m: ToClient) => {
    if ('stop' in m) {
      stopping = true;
      clearInterval(timer);
      for (const s of sockets) {
        r.missing += s.pending.length;
        if (s.pinged) r.pinged++;
        s.ws.terminate();
      }
      process.send?.(r);
      return;
    }
    void (async () => {
      for (let i = 0; i < m.count; i += 200) {
        const batch: Promise<void>[] = [];
        for (let j = 0; j < Math.min(200, m.count - i); j++) {
          const ws = new WebSocket(m.url, { perMessageDeflate: false, localAddress: m.localAddress });
          const s = { ws, pending: [] as string[], pinged: false };
          ws.on('ping', () => (s.pinged = true));
          ws.on('message', (d: Buffer) => {
            const want = s.pending.shift();
            if (want !== undefined && d.toString() === want) r.echoed++;
            else r.wrong++;
          });
          ws.on('close', () => {
            if (!stopping) r.closedEarly++;
          });
          ws.on('error', () => undefined);
          batch.push(
            once(ws, 'open').then(
              () => {
                r.opened++;
                sockets.push(s);
              },
              () => {
                r.failed++;
              },
            ),
          );
        }
        await Promise.all(batch);
      }
      process.send?.({ ready: true });
      if (m.rate > 0) {
        // Spread the sends: each tick, a slice of the connections sends one message.
        const tickMs = 100;
        const perTick = (sockets.length * m.rate * tickMs) / 1000;
        let carry = 0;
        let next = 0;
        let seq = 0;
        timer = setInterval(() => {
          carry += perTick;
          for (; carry >= 1 && sockets.length > 0; carry--) {
            const s = sockets[next++ % sockets.length];
            if (s === undefined || s.ws.readyState !== WebSocket.OPEN) continue;
            const msg = `m${seq++}`.padEnd(32, '.');
            s.pending.push(msg);
            s.ws.send(msg);
          }
        }, tickMs);
      }
    })();
  });
}

async function main(): Promise<void> {
  const opt = { connections: 2000, workers: 1, procs: 2, keepalive: 2000, holdS: 10, rate: 0.5 };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const v = Number(a[i + 1]);
    const key = {
      '--connections': 'connections',
      '--workers': 'workers',
      '--procs': 'procs',
      '--keepalive': 'keepalive',
      '--hold-s': 'holdS',
      '--rate': 'rate',
    }[a[i] ?? ''] as keyof typeof opt | undefined;
    if (key === undefined || !Number.isFinite(v) || v < 0) {
      console.error('usage: node build/bench/hold.js [--connections N] [--workers W] [--procs P] [--keepalive MS] [--hold-s S] [--rate R]');
      process.exit(2);
    }
    opt[key] = v;
  }
  const port = await freePort();
  const cli = spawnCli([
    ...PLAIN_SERVE_ARGS,
    ...['--ws-port', String(port), '--tcp-port', 'off', '--workers', String(opt.workers)],
    ...['--keepalive-interval', `${opt.keepalive}ms`, '--log-level', 'warn'],
  ]);
  try {
    // The listening lines are at info: with --log-level warn, wait for the port instead (bounded).
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      if (i > 200 || cli.child.exitCode !== null) throw new Error(`the server did not start: ${cli.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Server processes: the primary and its children (the workers).
    const serverPids = (): number[] => {
      const primary = cli.child.pid as number;
      let kids: number[] = [];
      try {
        kids = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        // no children file: one process
      }
      return [primary, ...kids];
    };
    await new Promise((r) => setTimeout(r, 500));
    const base = serverPids().map((p) => ({ pid: p, kib: rss(p) }));
    const script = fileURLToPath(import.meta.url);
    const procs = Array.from({ length: opt.procs }, () => fork(script, ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const share = Math.ceil(opt.connections / opt.procs);
    const ready = procs.map((p) => once(p, 'message'));
    const t0 = Date.now();
    procs.forEach((p, i) =>
      p.send({
        url: `ws://127.0.0.1:${port}/`,
        count: Math.min(share, opt.connections - i * share),
        rate: opt.rate,
        // One source address per client process: one address has ~28,000 ephemeral ports
        // (net.ipv4.ip_local_port_range) towards one server port, fewer than 50,000.
        localAddress: `127.0.0.${1 + (i % 250)}`,
      } satisfies ToClient),
    );
    await Promise.all(ready);
    console.log(`opened in ${((Date.now() - t0) / 1000).toFixed(1)} s; holding ${opt.holdS} s`);
    await new Promise((r) => setTimeout(r, opt.holdS * 1000));
    const held = serverPids().map((p) => ({ pid: p, kib: rss(p) }));
    const reports = procs.map((p) => once(p, 'message') as Promise<[Report]>);
    for (const p of procs) p.send({ stop: true } satisfies ToClient);
    const total: Report = { opened: 0, failed: 0, closedEarly: 0, echoed: 0, wrong: 0, missing: 0, pinged: 0 };
    for (const [r] of await Promise.all(reports)) for (const k of Object.keys(total) as (keyof Report)[]) total[k] += r[k];
    for (const p of procs) p.kill();
    const baseKiB = base.reduce((n, b) => n + b.kib, 0);
    const heldKiB = held.reduce((n, b) => n + b.kib, 0);
    console.log(JSON.stringify({ options: opt, clients: total }));
    console.log(`server RSS: ${held.map((h) => `pid ${h.pid} ${(h.kib / 1024).toFixed(1)} MiB`).join(', ')}`);
    console.log(
      `server RSS total ${(heldKiB / 1024).toFixed(1)} MiB (idle baseline ${(baseKiB / 1024).toFixed(1)} MiB): ${(((heldKiB - baseKiB) * 1024) / Math.max(1, total.opened)).toFixed(0)} bytes per connection`,
    );
    // Echo loss counts only messages still pending at stop beyond the last tick's in-flight ones.
    const errors = total.failed + total.closedEarly + total.wrong;
    const unpinged = total.opened - total.pinged;
    console.log(
      `errors: ${errors} (failed ${total.failed}, closed early ${total.closedEarly}, wrong echoes ${total.wrong}); in flight at stop ${total.missing}; connections without a ping ${unpinged}`,
    );
    process.exitCode = errors === 0 && total.opened === opt.connections && (opt.holdS * 1000 < 2 * opt.keepalive || unpinged === 0) ? 0 : 1;
  } finally {
    cli.child.kill('SIGTERM');
    await Promise.race([cli.exited, new Promise((r) => setTimeout(r, 10_000))]);
    cli.kill();
  }
}
