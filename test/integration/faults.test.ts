/**
 * Faults, each a test: peers that reset mid-frame, half-open peers, peers that never speak,
 * a connection flood over the limit, descriptor exhaustion (see also security-limits.test.ts),
 * a worker killed under --workers 2, SIGTERM under load, and logs going nowhere. Servers that
 * could crash run as CLI child processes, so a crash is an exit the test sees.
 */
import { describe, test } from 'node:test';
import { assertGood, connectTcp, goodTraffic, withServers } from '../../test-helpers/faults.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { procStats } from '../../bench/fuzz/common.js';
import { freePort, PLAIN_SERVE_ARGS, spawnCliInShell, startCli, type RunningCli } from '../../test-helpers/cli.js';
import { clientFrame } from '../../test-helpers/ws-raw.js';

/** Polls (bounded) until `check()` holds; returns its last value. */
async function eventually<T>(read: () => T, check: (v: T) => boolean, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  let v = read();
  while (!check(v) && Date.now() < until) {
    await delay(50);
    v = read();
  }
  return v;
}

const fds = (cli: RunningCli) => (): number => procStats(cli.child.pid as number).fds;

describe('peers that reset', () => {
  test(
    'an upgrade to an unknown path from a peer that resets at once does not crash the server (regression)',
    { timeout: 30_000 },
    async () => {
      // Found by the fuzzer: the 404 refusal wrote to a socket http no longer watched for errors,
      // and the ECONNRESET was an unhandled 'error' that ended the process.
      const cli = await startCli([...PLAIN_SERVE_ARGS, '--tcp-port', 'off']);
      try {
        const port = (cli.listening.listeners.ws as { port: number }).port;
        const request =
          'GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
        for (let i = 0; i < 50 && cli.child.exitCode === null; i++) {
          const s = await connectTcp(port);
          await new Promise<void>((resolve) => s.write(request, () => resolve()));
          s.resetAndDestroy();
          await new Promise((r) => setImmediate(r));
        }
        // Still serving: a plain GET answers.
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        assert.equal(res.status, 200);
        assert.equal(cli.child.exitCode, null, cli.stderr());
      } finally {
        cli.kill();
      }
    },
  );
});

describe('peers that reset mid-frame, on every listener', () => {
  test('half a frame then a reset: the server frees each connection and good clients keep echoing', { timeout: 60_000 }, async () => {
    await withServers([], async (s) => {
      const good = await goodTraffic(s.ports, 20);
      const base = { plain: fds(s.plain)(), secure: fds(s.secure)() };
      const upgrade = (v1: boolean): string =>
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
        `Sec-WebSocket-Version: 13\r\n${v1 ? 'Sec-WebSocket-Protocol: echo.v1\r\n' : ''}\r\n`;
      const halfV1 = Buffer.from('0000100002' + 'ab'.repeat(100), 'hex'); // declares 4096 bytes, sends 101
      const halfWs = clientFrame({ opcode: 2, payload: Buffer.alloc(1000, 1) }).subarray(0, 300);
      const cases: [string, () => Promise<net.Socket | tls.TLSSocket>, Buffer | string][] = [
        ['tcp v1', () => connectTcp(s.ports.tcp), halfV1],
        [
          'unix v1',
          () =>
            new Promise((r) => {
              const u = net.connect(s.ports.unix, () => r(u));
              u.on('error', () => undefined);
            }),
          halfV1,
        ],
        ['raw', () => connectTcp(s.ports.raw), Buffer.alloc(5000, 7)],
        ['ws', () => connectTcp(s.ports.ws), Buffer.concat([Buffer.from(upgrade(false)), halfWs])],
        [
          'ws echo.v1',
          () => connectTcp(s.ports.ws),
          Buffer.concat([
            Buffer.from(upgrade(true)),
            clientFrame({ opcode: 2, payload: Buffer.concat([Buffer.from([2]), Buffer.alloc(900)]) }).subarray(0, 200),
          ]),
        ],
        ['ws handshake', () => connectTcp(s.ports.ws), upgrade(false).slice(0, 40)],
        [
          'wss',
          () =>
            new Promise((r) => {
              const t = tls.connect({ host: '127.0.0.1', port: s.ports.wss, rejectUnauthorized: false }, () => r(t));
              t.on('error', () => undefined);
            }),
          Buffer.concat([Buffer.from(upgrade(false)), halfWs]),
        ],
        [
          'tls len',
          () =>
            new Promise((r) => {
              const t = tls.connect({ host: '127.0.0.1', port: s.ports.tlsLen, rejectUnauthorized: false }, () => r(t));
              t.on('error', () => undefined);
            }),
          Buffer.from('00010000' + 'cd'.repeat(300), 'hex'),
        ],
        ['tls handshake', () => connectTcp(s.ports.tlsLen), Buffer.from('160301020001', 'hex')],
      ];
      let resets = 0;
      for (let round = 0; round < 10; round++) {
        for (const [, open, bytes] of cases) {
          const sock = await open();
          await new Promise<void>((r) => sock.write(bytes, () => r()));
          // An RST where the handle allows it (TCP), else an abrupt destroy.
          if (sock instanceof tls.TLSSocket || sock.remotePort === undefined) sock.destroy();
          else sock.resetAndDestroy();
          resets++;
        }
        for (const c of good) c.send(512);
      }
      await Promise.all(good.map((c) => c.settle(10_000)));
      assertGood(good);
      assert.equal(resets, 10 * cases.length);
      const after = {
        plain: await eventually(fds(s.plain), (n) => n <= base.plain),
        secure: await eventually(fds(s.secure), (n) => n <= base.secure),
      };
      assert.deepEqual(after, base, 'descriptors back to where they were');
      assert.equal(s.plain.child.exitCode, null);
      assert.equal(s.secure.child.exitCode, null);
      await Promise.all(good.map((c) => c.close()));
    });
  });
});

describe('half-open peers (small keepalive and idle settings)', () => {
  test(
    'peers that stop answering are dropped at the keepalive or idle deadline and their descriptors freed',
    { timeout: 30_000 },
    async () => {
      const cli = await startCli([...PLAIN_SERVE_ARGS, '--raw-port', '0', '--keepalive-interval', '300ms', '--idle-timeout', '1500ms']);
      try {
        const l = cli.listening.listeners;
        const base = fds(cli)();
        const peers: net.Socket[] = [];
        // WebSocket: a finished upgrade, then silence (pings never answered: the socket is paused).
        for (let i = 0; i < 5; i++) {
          const ws = await connectTcp(l.ws?.port as number);
          ws.write(
            'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
          );
          peers.push(ws);
        }
        // TCP v1: one frame, then silence; raw: a few bytes, then silence.
        for (let i = 0; i < 5; i++) {
          const t = await connectTcp(l.tcp?.port as number);
          t.write(Buffer.from('000000030168690', 'hex'));
          peers.push(t);
          const r = await connectTcp(l.raw?.port as number);
          r.write('hi');
          peers.push(r);
        }
        for (const p of peers) p.pause();
        const during = await eventually(fds(cli), (n) => n >= base + 15, 5000);
        assert.ok(during >= base + 15, `15 peers open (${during} descriptors, baseline ${base})`);
        const info = async (): Promise<number> => {
          const r = (await (await fetch(`http://127.0.0.1:${l.ws?.port}/info`)).json()) as { connections: { total: number } };
          return r.connections.total;
        };
        // Gone on the server: no connections left and the descriptors back to baseline.
        let total = await info();
        for (let i = 0; i < 100 && total > 0; i++) {
          await delay(100);
          total = await info();
        }
        assert.equal(total, 0, 'every half-open peer was dropped');
        assert.equal(await eventually(fds(cli), (n) => n <= base), base);
        for (const p of peers) p.destroy();
      } finally {
        cli.kill();
      }
    },
  );
});

describe('a connection flood over the limit', () => {
  test('refused with 503 / 1013 / a close while the clients already connected keep every echo', { timeout: 60_000 }, async () => {
    await withServers(['--max-connections', '5'], async (s) => {
      const good = await goodTraffic(s.ports, 10);
      const base = fds(s.plain)();
      let stop = false;
      const pump = (async () => {
        while (!stop) {
          for (const c of good) if (c.inFlight < 4) c.send(1024);
          await delay(2);
        }
      })();
      const statuses: number[] = [];
      const tcpCodes: number[] = [];
      let rawClosed = 0;
      for (let round = 0; round < 5; round++) {
        const waits: Promise<void>[] = [];
        for (let i = 0; i < 20; i++) {
          waits.push(
            new Promise<void>((resolve) => {
              const ws = new WebSocket(`ws://127.0.0.1:${s.ports.ws}/`);
              ws.on('unexpected-response', (_req, res) => {
                statuses.push(res.statusCode ?? 0);
                res.resume();
                ws.terminate();
              });
              ws.on('error', () => undefined);
              ws.on('open', () => statuses.push(101));
              ws.on('close', () => resolve());
            }),
          );
          waits.push(
            (async () => {
              const sock = await connectTcp(s.ports.tcp);
              const chunks: Buffer[] = [];
              sock.on('data', (d: Buffer) => chunks.push(d));
              await once(sock, 'close');
              const b = Buffer.concat(chunks);
              tcpCodes.push(b.length >= 7 && b[4] === 0x08 ? b.readUInt16BE(5) : -1);
            })(),
          );
          waits.push(
            (async () => {
              const sock = await connectTcp(s.ports.raw);
              await once(sock, 'close');
              rawClosed++;
            })(),
          );
        }
        await Promise.all(waits);
      }
      stop = true;
      await pump;
      await Promise.all(good.map((c) => c.settle(10_000)));
      assertGood(good);
      assert.deepEqual([...new Set(statuses)], [503], 'every flooding upgrade got 503');
      assert.deepEqual([...new Set(tcpCodes)], [1013], 'every flooding TCP connection got close 1013');
      assert.equal(rawClosed, 100);
      assert.equal(statuses.length, 100);
      assert.equal(await eventually(fds(s.plain), (n) => n <= base), base, 'the refused sockets are freed');
      await Promise.all(good.map((c) => c.close()));
    });
  });
});

describe('descriptor exhaustion (ulimit -n 64)', () => {
  test('the server keeps its clients, and accepts again once descriptors free up', { timeout: 60_000 }, async (t) => {
    const port = await freePort();
    const child = spawnCliInShell(t, 'ulimit -n 64; exec "$0" "$@"', [
      ...PLAIN_SERVE_ARGS,
      ...['--ws-port', String(port), '--tcp-port', 'off', '--metrics'],
    ]);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    while (!out.includes('"event":"listening"')) {
      assert.equal(child.exitCode, null, 'the server started');
      await once(child.stdout, 'data');
    }
    const open: WebSocket[] = [];
    let refused = 0;
    for (let i = 0; i < 120 && refused < 5; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      ws.on('error', () => undefined);
      const ok = await new Promise<boolean>((resolve) => {
        ws.once('open', () => resolve(true));
        ws.once('close', () => resolve(false));
      });
      if (ok) open.push(ws);
      else refused++;
    }
    assert.ok(refused > 0, `descriptors never ran out (${open.length} open)`);
    // libuv answers EMFILE on accept itself (it accepts and drops the connection), so Node
    // reports nothing: the server's descriptor watch logs the episode.
    while (!out.includes('open files at the limit')) {
      assert.equal(child.exitCode, null);
      await once(child.stdout, 'data');
    }
    // The clients already connected are still served.
    const first = open[0] as WebSocket;
    const echoed = once(first, 'message');
    first.send('still here');
    assert.equal(String((await echoed)[0]), 'still here');
    for (const ws of open.slice(1)) ws.terminate();
    // Recovered: new connections are echoed once descriptors are free (bounded retries).
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      ws.on('error', () => undefined);
      recovered = await new Promise<boolean>((resolve) => {
        ws.once('open', () => {
          ws.once('message', () => resolve(true));
          ws.send('again');
        });
        ws.once('close', () => resolve(false));
      });
      ws.terminate();
      if (!recovered) await delay(50);
    }
    assert.ok(recovered, 'a new connection is echoed once descriptors are free');
    while (!out.includes('open files below the limit again')) {
      assert.equal(child.exitCode, null);
      await once(child.stdout, 'data');
    }
    // And counted.
    assert.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^echo_descriptor_exhaustions_total 1$/m);
    first.terminate();
    assert.equal(child.exitCode, null);
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
  });
});

describe('SIGTERM under load, every transport', () => {
  test(
    'every message the server received is echoed, WebSocket and v1 clients get 1001, both servers exit 0',
    { timeout: 60_000 },
    async () => {
      await withServers(['--drain-timeout', '5s'], async (s) => {
        const good = await goodTraffic(s.ports, 20);
        let stop = false;
        const pump = (async () => {
          while (!stop) {
            for (const c of good) if (c.inFlight < 16) c.send(2048);
            await delay(1);
          }
        })();
        await delay(300); // traffic in full flow when the signal comes
        for (const c of good) c.expectClose();
        s.plain.child.kill('SIGTERM');
        s.secure.child.kill('SIGTERM');
        await Promise.all(good.map((c) => c.whenClosed));
        stop = true;
        await pump;
        const [p, q] = await Promise.all([s.plain.exited, s.secure.exited]);
        assert.deepEqual(
          [p, q],
          [
            { code: 0, signal: null },
            { code: 0, signal: null },
          ],
        );
        for (const c of good) assert.deepEqual(c.stats.failures, [], c.transport);
        const codes = Object.fromEntries(
          good.filter((c) => !['raw', 'tls-len'].includes(c.transport)).map((c) => [c.transport, c.closeCode]),
        );
        assert.deepEqual(codes, { ws: 1001, 'ws-echo.v1': 1001, wss: 1001, 'tcp-v1': 1001, 'unix-v1': 1001 });
        // The server's own totals: what came in went out, and is what the clients got back.
        type Stopped = { totals: { transport: string; messagesIn: number; messagesOut: number }[] };
        const totals = (cli: RunningCli): Record<string, { messagesIn: number; messagesOut: number }> =>
          Object.fromEntries((cli.lines.find((l) => l['event'] === 'stopped') as unknown as Stopped).totals.map((t) => [t.transport, t]));
        const echoed = (names: string[]): number => good.filter((c) => names.includes(c.transport)).reduce((n, c) => n + c.stats.echoed, 0);
        const plain = totals(s.plain);
        const secure = totals(s.secure);
        for (const t of [plain['ws'], plain['tcp'], plain['unix'], secure['ws'], secure['tcp']])
          assert.equal(t?.messagesOut, t?.messagesIn);
        assert.equal(plain['ws']?.messagesIn, echoed(['ws', 'ws-echo.v1']));
        assert.equal(plain['tcp']?.messagesIn, echoed(['tcp-v1']));
        assert.equal(plain['unix']?.messagesIn, echoed(['unix-v1']));
        assert.equal(secure['ws']?.messagesIn, echoed(['wss']));
        assert.equal(secure['tcp']?.messagesIn, echoed(['tls-len']));
        assert.ok(
          good.every((c) => c.stats.echoed > 20),
          'traffic flowed past the warm-up',
        );
      });
    },
  );
});

describe('logs that go nowhere', () => {
  async function serveAndEcho(port: number): Promise<void> {
    for (let i = 0; i < 30; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      await once(ws, 'open');
      const echoed = once(ws, 'message');
      ws.send(`m${i}`);
      assert.equal(String((await echoed)[0]), `m${i}`);
      ws.terminate(); // each connection logs an open and a close line
    }
  }

  test('stdout closed by the reader: the server keeps serving, and exits 0 on SIGTERM', { timeout: 30_000 }, async () => {
    const cli = await startCli([...PLAIN_SERVE_ARGS, '--tcp-port', 'off']);
    try {
      const port = cli.listening.listeners.ws?.port as number;
      cli.child.stdout?.destroy(); // the reading end of the log pipe is gone: writes get EPIPE
      await serveAndEcho(port);
      assert.equal(cli.child.exitCode, null, cli.stderr());
      // (cli.exited waits for stdout's end, which a destroyed stream never emits.)
      const exit = once(cli.child, 'exit') as Promise<[number | null]>;
      cli.child.kill('SIGTERM');
      const [code] = await exit;
      assert.equal(code, 0, cli.stderr());
    } finally {
      cli.kill();
    }
  });
});
