/**
 * Limits over real sockets: the connection limit (503 / 1013), the idle timeout, keepalive
 * (dead peers dropped, live ones kept) and backpressure (a peer that writes without reading
 * is no longer read, its queue stays bounded, and it is closed after the stall timeout).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import WebSocket from 'ws';
import { channels, connectV1, type ConnectionInfo, type FlushEvent } from '../../src/index.js';
import { encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { clientFrame, closeCode, parseWsFrames, RawSocket, readV1Frames, readWsFrames, wsHandshake } from '../../test-helpers/raw.js';
import { nextClose, nextOpen, openWs, refusedUpgradeStatus, startServer, wsClosed, wsRoundTrip } from '../../test-helpers/server.js';

describe('connection limit', () => {
  test('with maxConnections 2, the 3rd WS upgrade gets 503 and the 3rd TCP connection gets close 1013', async () => {
    const s = await startServer({ maxConnections: 2 });
    try {
      const ws = await openWs(s.wsUrl('/'));
      const tcp = await connectV1({ port: s.tcpPort });
      await tcp.hello(); // registered
      assert.equal(s.server.connections.size, 2);

      assert.equal(await refusedUpgradeStatus(s.wsUrl('/')), 503);

      const third = await RawSocket.connect({ port: s.tcpPort });
      const [close] = await readV1Frames(third, 1);
      assert.equal(close?.opcode, V1Opcode.CLOSE);
      assert.equal(close?.payload.readUInt16BE(0), 1013);
      await third.waitClose();

      // The admitted ones still work.
      assert.equal((await wsRoundTrip(ws, 'a')).data.toString(), 'a');
      const reply = once(tcp, 'message');
      tcp.send('b');
      assert.equal(((await reply) as [{ data: Buffer }])[0].data.toString(), 'b');
      assert.equal(s.server.stats().ws.rejects.limit, 1);
      assert.equal(s.server.stats().tcp.rejects.limit, 1);

      // A freed slot is available again.
      const gone = nextClose((e) => e.connection.transport === 'ws' && e.code === 1000);
      ws.close(1000);
      await gone;
      const again = await openWs(s.wsUrl('/ws'));
      assert.equal((await wsRoundTrip(again, 'c')).data.toString(), 'c');
      again.terminate();
      await tcp.close();
    } finally {
      await s.close();
    }
  });
});

describe('idle timeout', () => {
  test('a silent TCP client gets close 1001 (idle) and the socket closes', async () => {
    const s = await startServer({ idleTimeoutMs: 200, keepaliveIntervalMs: 0, wsPort: null });
    try {
      const closed = nextClose((e) => e.connection.transport === 'tcp');
      const raw = await RawSocket.connect({ port: s.tcpPort });
      const [close] = await readV1Frames(raw, 1);
      assert.equal(close?.opcode, V1Opcode.CLOSE);
      assert.equal(close?.payload.readUInt16BE(0), 1001);
      // Answer the close, as a well-behaved client does.
      await raw.write(encodeFrame(V1Opcode.CLOSE, close?.payload ?? Buffer.alloc(0)));
      await raw.waitClose();
      const e = await closed;
      assert.equal(e.reason, 'idle');
    } finally {
      await s.close();
    }
  });

  test('a silent ws client gets close 1001', async () => {
    const s = await startServer({ idleTimeoutMs: 200, keepaliveIntervalMs: 0, tcpPort: null });
    try {
      const closedOnServer = nextClose((e) => e.connection.transport === 'ws');
      const ws = await openWs(s.wsUrl('/'));
      const { code } = await wsClosed(ws);
      assert.equal(code, 1001);
      assert.equal((await closedOnServer).reason, 'idle');
    } finally {
      await s.close();
    }
  });

  test('a client that keeps sending is not idle', async () => {
    const s = await startServer({ idleTimeoutMs: 1000, keepaliveIntervalMs: 0, tcpPort: null });
    try {
      const ws = await openWs(s.wsUrl('/'));
      let closed = false;
      ws.on('close', () => (closed = true));
      // 15 round trips spaced by a timer: 1.5 s in all, each gap far below the 1 s timeout.
      for (let i = 0; i < 15; i++) {
        assert.equal((await wsRoundTrip(ws, `k${i}`)).data.toString(), `k${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(closed, false);
      assert.equal(ws.readyState, WebSocket.OPEN);
      ws.terminate();
    } finally {
      await s.close();
    }
  });
});

describe('keepalive', () => {
  test('a raw WS client that never answers pings is dropped after ~2 intervals', async () => {
    const s = await startServer({ keepaliveIntervalMs: 100, idleTimeoutMs: 0, tcpPort: null });
    try {
      const closed = nextClose((e) => e.connection.transport === 'ws');
      const { raw, head } = await wsHandshake(s.wsPort, '/');
      assert.equal(head.status, 101);
      await raw.waitClose();
      const frames = parseWsFrames(raw.data()).frames;
      assert.ok(
        frames.some((f) => f.opcode === 0x9),
        'at least one ping was sent before the drop',
      );
      assert.equal((await closed).reason, 'keepalive');
    } finally {
      await s.close();
    }
  });

  test('a ws client (answers pings) stays connected across several intervals', async () => {
    const s = await startServer({ keepaliveIntervalMs: 100, idleTimeoutMs: 0, tcpPort: null });
    try {
      const ws = await openWs(s.wsUrl('/'));
      let closed = false;
      ws.on('close', () => (closed = true));
      let pings = 0;
      await new Promise<void>((resolve) => {
        ws.on('ping', () => {
          if (++pings === 5) resolve();
        });
      });
      assert.equal(closed, false);
      assert.equal(s.server.connections.size, 1);
      assert.equal((await wsRoundTrip(ws, 'alive')).data.toString(), 'alive');
      ws.terminate();
    } finally {
      await s.close();
    }
  });

  test('a connection opened after the server was empty for a while is not taken for a silent one', async () => {
    const s = await startServer({ keepaliveIntervalMs: 100, idleTimeoutMs: 0, tcpPort: null });
    try {
      // One connection and gone: the sweep timer stops with the last connection.
      const first = await openWs(s.wsUrl('/'));
      first.terminate();
      await nextClose((e) => e.connection.transport === 'ws');
      // Quiet for more than two keepalive intervals: the time being tested, hence a timer.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const ws = await openWs(s.wsUrl('/'));
      const closed = once(ws, 'close').then(() => 'closed' as const);
      let pings = 0;
      const pinged = new Promise<'pinged'>((resolve) => {
        ws.on('ping', () => {
          if (++pings === 3) resolve('pinged');
        });
      });
      assert.equal(await Promise.race([pinged, closed]), 'pinged', 'dropped as if silent since before it connected');
      ws.terminate();
    } finally {
      await s.close();
    }
  });

  test('TCP v1: a raw client that never answers is dropped; V1Client (answers pings) stays', async () => {
    const s = await startServer({ keepaliveIntervalMs: 100, idleTimeoutMs: 0, wsPort: null });
    try {
      const live = await connectV1({ port: s.tcpPort });
      await live.hello();
      const closed = nextClose((e) => e.connection.transport === 'tcp');
      const dead = await RawSocket.connect({ port: s.tcpPort });
      await dead.waitClose();
      const ev = await closed;
      assert.equal(ev.reason, 'keepalive');
      assert.ok(dead.data().length >= 5, 'a v1 ping was sent');
      const reply = once(live, 'message');
      live.send('alive');
      assert.equal(((await reply) as [{ data: Buffer }])[0].data.toString(), 'alive');
      assert.equal(s.server.connections.size, 1);
      await live.close();
    } finally {
      await s.close();
    }
  });
});

describe('backpressure: a peer that writes and never reads', () => {
  const MAX_QUEUE = 256 * 1024;
  const BOUND = MAX_QUEUE + 128 * 1024;
  const TOTAL = 500 * 1024 * 1024;
  const CHUNK = 64 * 1024;

  /**
   * Runs one hog: `frame` is written until TOTAL bytes or the socket fails, each write awaited
   * (the client's own memory stays bounded). Tracks the hog's queue after every flush and its
   * bytesIn, checks that other clients are served while it is stalled, and that the server
   * closes it (stall timeout).
   */
  async function hog(
    t: { diagnostic(msg: string): void },
    transport: 'ws' | 'tcp',
    connectHog: (port: number) => Promise<RawSocket>,
    frame: Buffer,
  ): Promise<void> {
    const s = await startServer({ maxQueueBytes: MAX_QUEUE, stallTimeoutMs: 500, keepaliveIntervalMs: 0, idleTimeoutMs: 0 });
    const rssBefore = process.memoryUsage().rss;
    let hogInfo: ConnectionInfo | undefined;
    let maxQueue = 0;
    let maxSampledQueue = 0;
    let overLimit: () => void = () => {};
    const stalled = new Promise<void>((resolve) => (overLimit = resolve));
    const onFlush = (msg: unknown): void => {
      const e = msg as FlushEvent;
      if (e.connection !== hogInfo) return;
      maxQueue = Math.max(maxQueue, e.connection.queuedBytes);
      if (e.connection.queuedBytes > MAX_QUEUE) overLimit();
    };
    const sampler = setInterval(() => {
      for (const c of s.server.connections) if (c === hogInfo) maxSampledQueue = Math.max(maxSampledQueue, c.queuedBytes);
      maxSampledQueue = Math.max(maxSampledQueue, s.server.stats()[transport].queuedBytes);
    }, 5);
    channels.flush.subscribe(onFlush);
    try {
      // Other clients, connected beforehand.
      const otherWs = await openWs(s.wsUrl('/'));
      const otherTcp = await connectV1({ port: s.tcpPort });
      await otherTcp.hello();

      const opened = nextOpen((e) => e.connection.transport === transport);
      const closed = nextClose((e) => e.connection.transport === transport);
      const raw = await connectHog(transport === 'ws' ? s.wsPort : s.tcpPort);
      hogInfo = (await opened).connection;
      raw.socket.pause(); // never read the echoes

      let written = 0;
      const writer = (async () => {
        try {
          while (written < TOTAL) {
            await raw.write(frame);
            written += frame.length;
          }
        } catch {
          // the server dropped us
        }
      })();

      await Promise.race([stalled, closed]);
      // Meanwhile, other clients are served.
      assert.equal((await wsRoundTrip(otherWs, 'other ws')).data.toString(), 'other ws');
      const reply = once(otherTcp, 'message');
      otherTcp.send('other tcp');
      assert.equal(((await reply) as [{ data: Buffer }])[0].data.toString(), 'other tcp');

      const ev = await closed;
      await writer;
      await raw.waitClose();
      const bytesIn = ev.connection.bytesIn;
      const rssAfter = process.memoryUsage().rss;
      t.diagnostic(
        `${transport}: client wrote ${(written / 2 ** 20).toFixed(1)} MiB, server read ${(bytesIn / 2 ** 20).toFixed(1)} MiB, ` +
          `max queue after a flush ${maxQueue} B, max sampled ${maxSampledQueue} B (bound ${BOUND}), ` +
          `rss before ${(rssBefore / 2 ** 20).toFixed(1)} MiB after ${(rssAfter / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.equal(ev.reason, 'backpressure', 'closed by the stall timeout');
      assert.ok(maxQueue > MAX_QUEUE, 'the queue did reach its limit (the test did exercise backpressure)');
      assert.ok(maxQueue <= BOUND, `queue reached ${maxQueue} bytes, bound ${BOUND}`);
      assert.ok(maxSampledQueue <= BOUND, `sampled queue reached ${maxSampledQueue} bytes, bound ${BOUND}`);
      assert.ok(bytesIn < 64 * 2 ** 20, `server read ${bytesIn} bytes: it did not stop reading`);
      assert.ok(written < TOTAL, 'the client could not write everything: the server pushed back');
      // Other clients are still fine after the hog is gone.
      assert.equal((await wsRoundTrip(otherWs, 'after')).data.toString(), 'after');
      otherWs.terminate();
      await otherTcp.close();
    } finally {
      clearInterval(sampler);
      channels.flush.unsubscribe(onFlush);
      await s.close();
    }
  }

  test('TCP v1: 64 KiB binary frames, never read', { timeout: 20_000 }, async (t) => {
    const frame = encodeFrame(V1Opcode.BINARY, randomBytes(CHUNK - 5));
    await hog(t, 'tcp', (port) => RawSocket.connect({ port }), frame);
  });

  test('WebSocket: 64 KiB masked binary frames over a raw socket, never read', { timeout: 20_000 }, async (t) => {
    const frame = clientFrame(0x2, randomBytes(CHUNK - 14));
    await hog(
      t,
      'ws',
      async (port) => {
        const { raw, head } = await wsHandshake(port, '/');
        assert.equal(head.status, 101);
        return raw;
      },
      frame,
    );
  });
});

describe('WebSocket close handshake', () => {
  test('close handshake initiated by the client over a raw socket ends cleanly', async () => {
    const s = await startServer({ tcpPort: null });
    try {
      const { raw } = await wsHandshake(s.wsPort, '/');
      await raw.write(clientFrame(0x8, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65])));
      const [close] = await readWsFrames(raw, 1);
      assert.equal(close?.opcode, 0x8);
      assert.equal(closeCode(close?.payload ?? Buffer.alloc(0)), 1000);
      await raw.waitClose();
    } finally {
      await s.close();
    }
  });
});
