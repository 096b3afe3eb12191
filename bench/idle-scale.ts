/**
 * Idle WebSocket connections at scale, with keepalive running and answered: how the server's
 * RSS grows with the number of open connections, and what that projects to at 50,000.
 *
 *   npx tsc -p tsconfig.json && node build/bench/idle-scale.js [STEPS] [KEEPALIVE_MS]
 *   e.g. node build/bench/idle-scale.js 0,5000,10000,15000,19000 2000
 *
 * The server is `dist/cli.js serve --insecure --keepalive-interval KEEPALIVE_MS` (everything
 * else default: metrics on, logs at info) in its own process; the clients are `ws` clients in a
 * forked child process (they answer pings, unlike the shared harness's idle client, so
 * keepalive can run at a short interval without dropping them). At each step the clients open
 * connections up to the step's count, then wait three keepalive intervals; the step is kept
 * only if every connection is still open on both sides and every client got a ping in that
 * wait. One process may hold at most `ulimit -n` sockets, so the steps stop below it.
 * It prints figures, and never asserts on them.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startCli } from '../test-helpers/cli.js';

type ToClient = { open: number; url: string } | { report: true };
type FromClient = { opened: number; failed: number; closed: number; pinged: number };

if (process.argv[2] === '--client') runClients();
else await main();

/** Child: holds the connections; answers the parent's `open` and `report` messages. */
function runClients(): void {
  const sockets: WebSocket[] = [];
  let failed = 0;
  let closed = 0;
  const pinged = new Set<WebSocket>();
  const report = (): void => {
    process.send?.({ opened: sockets.length - failed - closed, failed, closed, pinged: pinged.size } satisfies FromClient);
    pinged.clear();
  };
  process.on('message', (m: ToClient) => {
    if ('report' in m) return report();
    void (async () => {
      const want = m.open - sockets.length;
      const batch = 200; // connections opened in parallel
      for (let i = 0; i < want; i += batch) {
        const opening: Promise<unknown>[] = [];
        for (let j = 0; j < Math.min(batch, want - i); j++) {
          const ws = new WebSocket(m.url, { perMessageDeflate: false });
          sockets.push(ws);
          ws.on('ping', () => pinged.add(ws));
          ws.on('close', (code, reason) => {
            closed++;
            if (closed <= 3) console.error(`# a client connection closed: ${code} ${reason.toString()}`);
          });
          opening.push(
            once(ws, 'open').catch(() => {
              failed++;
            }),
          );
        }
        await Promise.all(opening);
      }
      report();
    })();
  });
}

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) * 1024;
}

async function serverOpen(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/info`);
  const info = (await res.json()) as { connections: { total: number } };
  return info.connections.total;
}

async function main(): Promise<void> {
  const steps = (process.argv[2] ?? '0,5000,10000,15000,19000').split(',').map(Number);
  const keepaliveMs = Number(process.argv[3] ?? 2000);
  const args = ['serve', '--insecure', '--host', '127.0.0.1', '--ws-port', '0', '--tcp-port', 'off'];
  args.push('--keepalive-interval', `${keepaliveMs}ms`, '--log-format', 'json');
  const server = await startCli(args);
  const pid = server.child.pid as number;
  const port = server.listening.listeners.ws?.port as number;
  const url = `ws://127.0.0.1:${port}/`;
  const clients = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: 'inherit' });
  const ask = async (m: ToClient): Promise<FromClient> => {
    clients.send(m);
    const [reply] = (await once(clients, 'message')) as [FromClient];
    return reply;
  };

  console.log(`# idle WebSocket connections, keepalive every ${keepaliveMs} ms (answered by the ws clients)`);
  console.log(`# command: node build/bench/idle-scale.js ${steps.join(',')} ${keepaliveMs}   (${new Date().toISOString()})`);
  console.log('| connections | server RSS MiB | bytes/conn over 0 | clients pinged in the wait | server sees | kept |');
  console.log('|--:|--:|--:|--:|--:|---|');
  const points: [number, number][] = [];
  let base = NaN;
  try {
    for (const n of steps) {
      const opened = await ask({ open: n, url });
      await new Promise((r) => setTimeout(r, 3 * keepaliveMs));
      const after = await ask({ report: true });
      const rss = rssBytes(pid);
      const seen = await serverOpen(port);
      if (n === 0 || Number.isNaN(base)) base = rss;
      const ok = opened.failed === 0 && after.closed === 0 && after.opened === n && seen === n && after.pinged === n;
      const perConn = n > 0 ? ((rss - base) / n).toFixed(0) : '—';
      console.log(
        `| ${n} | ${(rss / 2 ** 20).toFixed(1)} | ${perConn} | ${after.pinged} | ${seen} | ${ok ? 'yes' : `no (failed ${opened.failed}, closed ${after.closed})`} |`,
      );
      if (ok) points.push([n, rss]);
    }
  } finally {
    // Why any connection closed, as the server logged it (normally none).
    for (const l of server.lines.filter((x) => x['event'] === 'connection.close').slice(0, 3))
      console.error(`# server closed ${String(l['conn'])}: ${String(l['reason'])} ${String(l['detail'] ?? '')}`);
    clients.kill();
    server.child.kill('SIGTERM');
    await server.exited;
  }
  if (points.length >= 2) {
    // Least-squares line through the kept steps: RSS = a + b·n.
    const k = points.length;
    const sx = points.reduce((s, [x]) => s + x, 0);
    const sy = points.reduce((s, [, y]) => s + y, 0);
    const sxx = points.reduce((s, [x]) => s + x * x, 0);
    const sxy = points.reduce((s, [x, y]) => s + x * y, 0);
    const b = (k * sxy - sx * sy) / (k * sxx - sx * sx);
    const a = (sy - b * sx) / k;
    const at = (n: number): string => ((a + b * n) / 2 ** 20).toFixed(0);
    console.log(`\nslope ${b.toFixed(0)} bytes/connection, intercept ${(a / 2 ** 20).toFixed(1)} MiB`);
    console.log(`projected RSS: 50,000 connections ≈ ${at(50_000)} MiB (a line through the measured steps, not a measurement)`);
  }
}
