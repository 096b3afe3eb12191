/**
 * Admission and lifecycle over real sockets (issue 9 regressions): refused sockets are freed
 * even when the peer never closes its side; the partial-frame budget bounds memory across
 * connections while a good client keeps echoing; close() during listen() never turns ready;
 * a failed start closes the metrics; a self-signed certificate survives a reload; the Unix
 * socket has its mode from the first moment; /info shows identities only with credentials.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createEchoServer } from '../../src/index.js';
import { encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { encodeLen } from '../../src/protocol/len.js';
import { httpGet, startServer } from '../../test-helpers/server.js';

/** Resolves true when the socket is closed by the server within `ms` (a bound, not a sleep). */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A peer that never ends its side: allowHalfOpen, reads everything, then pokes once. */
async function halfOpenPeer(port: number, first?: Buffer | string): Promise<net.Socket> {
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  await once(s, 'connect');
  if (first !== undefined) s.write(first);
  // The server ends its side after the refusal. Writes to a socket the server destroyed are
  // answered with a reset, which closes ours; a socket the server still held open would take
  // them silently. (The first write after a reset may still succeed locally: keep poking.)
  s.once('end', () => {
    const poke = setInterval(() => {
      if (s.destroyed) clearInterval(poke);
      else s.write('x');
    }, 50);
    poke.unref();
    s.once('close', () => clearInterval(poke));
  });
  return s;
}

describe('refused sockets are freed', () => {
  test('over the connection limit, TCP peers and WebSocket upgrades that never close are destroyed', async () => {
    const srv = await startServer({ maxConnections: 1 });
    try {
      const keeper = net.connect(srv.tcpPort, '127.0.0.1');
      await once(keeper, 'connect');
      await new Promise<void>((resolve) => {
        const check = (): void => (srv.server.connections.size === 1 ? resolve() : void setImmediate(check));
        check();
      });
      const upgrade =
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
      const peers = await Promise.all([
        ...Array.from({ length: 8 }, () => halfOpenPeer(srv.tcpPort)),
        ...Array.from({ length: 4 }, () => halfOpenPeer(srv.wsPort, upgrade)),
      ]);
      const closed = await Promise.all(peers.map((p) => closedWithin(p, 5000)));
      assert.deepEqual(
        closed.map((c, i) => (c ? 'freed' : `peer ${i} still held`)),
        closed.map(() => 'freed'),
      );
      keeper.destroy();
    } finally {
      await srv.close();
    }
  });
});

describe('partial-frame budget', () => {
  test('peers holding large partial frames are throttled under the budget; a good client keeps echoing', async () => {
    const budget = 1024 * 1024;
    const srv = await startServer({ tcpFraming: 'len', maxBufferedBytes: budget, maxFrameBytes: 16 * 1024 * 1024 });
    const hogs: net.Socket[] = [];
    try {
      const chunk = Buffer.alloc(64 * 1024, 1);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(16 * 1024 * 1024, 0);
      for (let i = 0; i < 20; i++) {
        const s = net.connect(srv.tcpPort, '127.0.0.1');
        s.on('error', () => undefined);
        hogs.push(s);
        await once(s, 'connect');
        s.write(header);
        // 1 MiB each, 20 MiB in all, declared 16 MiB each: without the budget the server
        // would hold all of it.
        for (let k = 0; k < 16; k++) s.write(chunk);
      }
      // A good client's small messages are echoed meanwhile.
      const good = net.connect(srv.tcpPort, '127.0.0.1');
      await once(good, 'connect');
      const got: Buffer[] = [];
      good.on('data', (d: Buffer) => got.push(d));
      const msg = encodeLen(Buffer.from('still served'));
      for (let i = 0; i < 10; i++) good.write(msg);
      while (Buffer.concat(got).length < msg.length * 10) await once(good, 'data');
      assert.ok(Buffer.concat(got).equals(Buffer.concat(Array.from({ length: 10 }, () => msg))));
      const metrics = await httpGet(srv.wsPort, '/metrics');
      const held = Number(/^echo_partial_frame_bytes (\d+)/m.exec(metrics.body)?.[1]);
      const paused = Number(/^echo_budget_paused_connections (\d+)/m.exec(metrics.body)?.[1]);
      // The budget, plus the runner's frame growth and at most one read per paused peer.
      assert.ok(held <= budget + 2 * 1024 * 1024 + 20 * 64 * 1024, `held ${held}`);
      assert.ok(paused >= 1, 'peers over the budget are paused');
      good.destroy();
    } finally {
      for (const s of hogs) s.destroy();
      await srv.close();
    }
  });
});

describe('lifecycle', () => {
  test('close() during listen(): the server never reports ready', async () => {
    const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true });
    const listening = server.listen();
    const closing = server.close({ drainMs: 100 });
    await listening;
    assert.equal(server.ready, false);
    await closing;
    assert.equal(server.ready, false);
  });

  test('a failed start closes the metrics', async () => {
    const blocker = net.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as net.AddressInfo).port;
    let closed = 0;
    const server = createEchoServer({
      host: '127.0.0.1',
      wsPort: 0,
      tcpPort: port,
      insecure: true,
      metricsView: (own) => ({
        contentType: own.contentType,
        render: () => own.render(),
        renderDesign: () => own.renderDesign(),
        close: () => {
          closed++;
          own.close();
        },
      }),
    });
    await assert.rejects(server.listen(), /address already in use/);
    assert.equal(closed, 1);
    blocker.close();
  });

  test('reloading a self-signed certificate keeps it (pinned fingerprints stay valid)', async () => {
    const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: null });
    await server.listen();
    try {
      const before = server.tls?.fingerprint256;
      assert.ok(before);
      await server.reloadTls();
      assert.equal(server.tls?.fingerprint256, before);
    } finally {
      await server.close({ drainMs: 100 });
    }
  });

  test('the Unix socket has mode 0660 and no staging directory is left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'echo-unix-'));
    const path = join(dir, 'echo.sock');
    const server = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
    try {
      await server.listen();
      const st = await stat(path);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o660);
      assert.deepEqual(await readdir(dir), ['echo.sock']);
      const c = net.connect(path);
      await once(c, 'connect');
      c.write(encodeFrame(V1Opcode.TEXT, Buffer.from('over unix')));
      const [echo] = (await once(c, 'data')) as [Buffer];
      assert.ok(echo.equals(encodeFrame(V1Opcode.TEXT, Buffer.from('over unix'))));
      c.destroy();
    } finally {
      await server.close({ drainMs: 100 });
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('/info and identities', () => {
  const TOKEN = 'alice-token-0123456789abcdef';
  test('identities are listed only to a request with credentials; with --admin-port /info is there only', async () => {
    const srv = await startServer({ auth: 'token', authTokens: `alice:${TOKEN}`, tcpPort: null });
    try {
      const anon = JSON.parse((await httpGet(srv.wsPort, '/info')).body) as Record<string, Record<string, unknown>>;
      assert.equal(anon['connections']?.['byIdentity'], undefined);
      assert.equal(anon['pid'], undefined);
      const res = await fetch(`http://127.0.0.1:${srv.wsPort}/info`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const full = (await res.json()) as Record<string, Record<string, unknown>>;
      assert.deepEqual(full['connections']?.['byIdentity'], {});
      assert.equal(typeof full['pid'], 'number');
    } finally {
      await srv.close();
    }
    const admin = await startServer({ adminPort: 0, tcpPort: null });
    try {
      assert.equal((await httpGet(admin.wsPort, '/info')).status, 404);
      const a = admin.addr.admin?.port as number;
      const info = JSON.parse((await httpGet(a, '/info')).body) as Record<string, unknown>;
      assert.equal(typeof info['pid'], 'number');
    } finally {
      await admin.close();
    }
  });
});
