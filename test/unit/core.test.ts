/**
 * The core without sockets: connections over in-memory duplex pairs, time from a ManualClock.
 * Each test here is a regression test for a defect of the per-transport copies (issue 9): it
 * failed before the message path moved into the core.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { resolveSettings, type Settings } from '../../src/config/index.js';
import { ManualClock } from '../../src/core/clock.js';
import { Pause, type Connection, type ProtocolAdapter } from '../../src/core/connection.js';
import { clientKeyOf, EchoCore, type MessageHandler } from '../../src/core/core.js';
import type { TransportName } from '../../src/core/types.js';
import { EchoError } from '../../src/errors.js';
import { decodeClose, encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { encodeLen } from '../../src/protocol/len.js';
import { createAuthenticator } from '../../src/security/auth.js';
import { ClientLimits } from '../../src/security/rate-limit.js';
import { ReplayGuards } from '../../src/security/replay.js';
import { duplexPair } from '../../src/transports/inproc.js';
import { makeStreamProtocol, type StreamFraming } from '../../src/transports/stream.js';

const TOKEN_A = 'tok-alice-0123456789abcdef';
const TOKEN_B = 'tok-bob-0123456789abcdef00';

function makeCore(overrides: Partial<Settings> = {}, handler?: MessageHandler): { core: EchoCore; clock: ManualClock } {
  const clock = new ManualClock();
  const settings = resolveSettings({ instance: 'unit', wsPort: null, tcpPort: null, ...overrides });
  return { core: new EchoCore(settings, handler, clock), clock };
}

/** A client end that collects what the server writes. */
class Peer {
  readonly chunks: Buffer[] = [];
  closed = false;
  private waiters: (() => void)[] = [];
  constructor(readonly side: Duplex) {
    side.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.wake();
    });
    side.on('close', () => {
      this.closed = true;
      this.wake();
    });
    side.on('end', () => this.wake());
    side.on('error', () => undefined);
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  async until(check: () => boolean): Promise<void> {
    while (!check()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  /** v1 frames received so far. */
  frames(): { opcode: number; payload: Buffer }[] {
    const out: { opcode: number; payload: Buffer }[] = [];
    const b = this.bytes;
    let p = 0;
    while (p + 4 <= b.length) {
      const len = b.readUInt32BE(p);
      if (p + 4 + len > b.length) break;
      const kind = b[p + 4] as number;
      let ps = p + 5;
      if (kind & 0x80) ps += 2 + b.readUInt16BE(ps);
      out.push({ opcode: kind & 0x0f, payload: b.subarray(ps, p + 4 + len) });
      p += 4 + len;
    }
    return out;
  }
  async closeFrame(): Promise<{ code: number; reason: string }> {
    await this.until(() => this.frames().some((f) => f.opcode === V1Opcode.CLOSE));
    const f = this.frames().find((x) => x.opcode === V1Opcode.CLOSE) as { payload: Buffer };
    return decodeClose(f.payload, 0, f.payload.length);
  }
}

function open(
  core: EchoCore,
  framing: StreamFraming = 'v1',
  transport: TransportName = 'inproc',
  requireHello = false,
): { conn: Connection; peer: Peer } {
  const [serverSide, clientSide] = duplexPair();
  const admitted = core.admit(transport, 'test', clientKeyOf(transport, undefined, undefined));
  assert.ok(!('reason' in admitted), 'admitted');
  const conn = core.accept(serverSide, transport, 'test', makeStreamProtocol(framing, requireHello), admitted);
  assert.ok(conn);
  return { conn, peer: new Peer(clientSide) };
}

describe('keepalive and silence (fake clock)', () => {
  test('len and raw peers that cannot ping are never cut by keepalive; the idle timeout governs them', () => {
    const { core, clock } = makeCore({ keepaliveIntervalMs: 1000, idleTimeoutMs: 60_000 });
    const len = open(core, 'len', 'tcp');
    const raw = open(core, 'raw', 'raw');
    const v1 = open(core, 'v1', 'tcp');
    for (let i = 0; i < 10; i++) {
      clock.advance(1000);
      core.sweep();
    }
    assert.equal(len.conn.open, true, 'a quiet len peer stays');
    assert.equal(raw.conn.open, true, 'a quiet raw peer stays');
    assert.equal(v1.conn.open, false, 'a v1 peer that does not answer pings is dropped');
    assert.equal(v1.conn.closeReason, 'keepalive');
    clock.advance(60_000);
    core.sweep();
    assert.equal(len.conn.open, false);
    assert.equal(len.conn.closeReason, 'idle');
  });

  test('a paused peer is not dropped by keepalive (its pongs are not read)', () => {
    const { core, clock } = makeCore({ keepaliveIntervalMs: 1000 });
    const { conn } = open(core);
    conn.pause(Pause.RATE);
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      core.sweep();
    }
    assert.equal(conn.open, true);
  });
});

describe('flow control: one set of pause reasons', () => {
  test('a drain does not resume a peer paused by the rate limiter or a pending hello', () => {
    const { core } = makeCore();
    const { conn } = open(core);
    conn.pause(Pause.AUTH);
    conn.pause(Pause.QUEUE);
    conn.resume(Pause.QUEUE);
    assert.equal(conn.socket.isPaused(), true, 'still authenticating');
    conn.pause(Pause.RATE);
    conn.resume(Pause.AUTH);
    assert.equal(conn.socket.isPaused(), true, 'still over the rate');
    conn.resume(Pause.RATE);
    assert.equal(conn.socket.isPaused(), false);
  });

  test('the rate limiter does not resume reading in the middle of authentication', async () => {
    let release: (() => void) | undefined;
    const { core, clock } = makeCore();
    // The read carrying the hello is over the byte rate: reading pauses for the rate too.
    core.connectionRate = { messagesPerSec: 0, bytesPerSec: 10, burstSec: 1, ceilingFactor: undefined };
    // An authenticator that answers when the test says so.
    core.auth = {
      warnings: [],
      authenticate: () =>
        new Promise((resolve) => {
          release = () => resolve({ ok: true, identity: 'alice', anonymous: false });
        }),
    } as unknown as EchoCore['auth'];
    const { conn, peer } = open(core, 'v1', 'tcp', true);
    const hello = encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token: 'x' })));
    const msgs = Buffer.concat(Array.from({ length: 5 }, (_, i) => encodeFrame(V1Opcode.TEXT, Buffer.from(`m${i}`))));
    peer.side.write(Buffer.concat([hello, msgs]));
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok((conn.paused & Pause.AUTH) !== 0, 'paused while the hello is checked');
    assert.ok((conn.paused & Pause.RATE) !== 0, 'and over the rate');
    clock.advance(10_000); // the rate timer fires
    assert.equal(conn.socket.isPaused(), true, 'the rate timer must not resume reading during authentication');
    release?.();
    await peer.until(() => peer.frames().filter((f) => f.opcode === V1Opcode.TEXT).length === 5);
  });
});

describe('replay keys and per-client keys', () => {
  test('two anonymous local clients never share replay ids', async () => {
    const { core } = makeCore();
    core.replay = new ReplayGuards({ windowMs: 30_000, maxEntries: 100 });
    const a = open(core, 'v1', 'unix');
    const b = open(core, 'v1', 'unix');
    const msg = encodeFrame(V1Opcode.TEXT, Buffer.from('hi'), Buffer.from(JSON.stringify({ id: 'same-id' })));
    a.peer.side.write(msg);
    await a.peer.until(() => a.peer.frames().length === 1);
    b.peer.side.write(msg);
    await b.peer.until(() => b.peer.frames().length === 1);
    assert.equal(b.peer.frames()[0]?.opcode, V1Opcode.TEXT, "client B's first message is echoed, not refused as a duplicate");
  });

  test('unix and in-process peers each get their own per-client key; TCP peers share their IP', () => {
    assert.notEqual(clientKeyOf('unix', undefined, undefined), clientKeyOf('unix', undefined, undefined));
    assert.equal(clientKeyOf('tcp', undefined, '10.0.0.1'), clientKeyOf('tcp', undefined, '10.0.0.1'));
    assert.equal(clientKeyOf('tcp', 'alice', '10.0.0.1'), 'id:alice');
  });

  test('after the hello, a TCP connection counts against its identity, across transports', async () => {
    const { core } = makeCore({ maxConnectionsPerClient: 1 });
    core.clients = new ClientLimits({
      rate: { messagesPerSec: 0, bytesPerSec: 0, burstSec: 1 },
      maxConnectionsPerClient: 1,
      maxEntries: 100,
    });
    core.auth = createAuthenticator({
      mode: 'token',
      tokens: new Map([
        ['alice', TOKEN_A],
        ['bob', TOKEN_B],
      ]),
    });
    const first = open(core, 'v1', 'unix', true);
    first.peer.side.write(encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token: TOKEN_A }))));
    await first.peer.until(() => first.peer.frames().length === 1);
    const second = open(core, 'v1', 'unix', true);
    second.peer.side.write(encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token: TOKEN_A }))));
    assert.deepEqual(await second.peer.closeFrame(), { code: 1013, reason: 'too many connections from this client' });
    const bob = open(core, 'v1', 'unix', true);
    bob.peer.side.write(encodeFrame(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token: TOKEN_B }))));
    await bob.peer.until(() => bob.peer.frames().length === 1);
    assert.equal(bob.peer.frames()[0]?.opcode, V1Opcode.HELLO);
  });
});

describe('before authentication', () => {
  test('a ping before the hello is refused at its first byte (1008), not answered', async () => {
    const { core } = makeCore();
    core.auth = createAuthenticator({ mode: 'token', tokens: new Map([['alice', TOKEN_A]]) });
    const { peer } = open(core, 'v1', 'tcp', true);
    peer.side.write(encodeFrame(V1Opcode.PING, Buffer.from('x')));
    assert.deepEqual(await peer.closeFrame(), { code: 1008, reason: 'hello required' });
    assert.equal(peer.frames().filter((f) => f.opcode === V1Opcode.PONG).length, 0);
  });

  test('a large frame before the hello is refused at its length, with nothing buffered', async () => {
    const { core } = makeCore();
    core.auth = createAuthenticator({ mode: 'token', tokens: new Map([['alice', TOKEN_A]]) });
    const { conn, peer } = open(core, 'v1', 'tcp', true);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(15 * 1024 * 1024, 0);
    header[4] = V1Opcode.HELLO;
    peer.side.write(Buffer.concat([header, Buffer.alloc(60_000)]));
    const close = await peer.closeFrame();
    assert.equal(close.code, 1009);
    assert.equal(conn.protocol.bufferedBytes, 0);
  });
});

describe('control frames', () => {
  test('a v1 ping with more than 125 payload bytes closes 1002', async () => {
    const { core } = makeCore();
    const { peer } = open(core);
    peer.side.write(encodeFrame(V1Opcode.PING, Buffer.alloc(126)));
    assert.equal((await peer.closeFrame()).code, 1002);
  });

  test('pings count against the rate: a ping flood trips the ceiling', async () => {
    const { core } = makeCore();
    core.connectionRate = { messagesPerSec: 20, bytesPerSec: 0, burstSec: 1, ceilingFactor: 2 };
    const { conn, peer } = open(core);
    const ping = encodeFrame(V1Opcode.PING, Buffer.alloc(0));
    peer.side.write(Buffer.concat(Array.from({ length: 200 }, () => ping)));
    const close = await peer.closeFrame();
    assert.equal(close.code, 1008);
    assert.equal(conn.closeReason, 'rate');
  });
});

describe('the public connection API', () => {
  test('close() refuses codes a peer may not receive and long reasons, before sending anything', async () => {
    const errors: unknown[] = [];
    const handler: MessageHandler = (_m, c) => {
      for (const code of [1005, 999, 70000, 1006, 1015, 2999]) {
        try {
          c.close(code, 'x');
        } catch (err) {
          errors.push(err);
        }
      }
      try {
        c.close(4000, 'y'.repeat(124));
      } catch (err) {
        errors.push(err);
      }
      c.close(4000, 'ok');
      return null;
    };
    const { core } = makeCore({}, handler);
    const { peer } = open(core);
    peer.side.write(encodeFrame(V1Opcode.TEXT, Buffer.from('go')));
    assert.deepEqual(await peer.closeFrame(), { code: 4000, reason: 'ok' });
    assert.equal(errors.length, 7);
    for (const e of errors) assert.ok(e instanceof EchoError && e.code === 'ECHO_ERR_ARGUMENT');
  });

  test('send() returns false above the send-queue limit, and drained() resolves once it is below', async () => {
    let pushed: boolean[] = [];
    let drained: Promise<void> | undefined;
    const handler: MessageHandler = (_m, c) => {
      pushed = Array.from({ length: 40 }, () => c.send(Buffer.alloc(1024)));
      drained = c.drained();
      return null;
    };
    const { core } = makeCore({ maxQueueBytes: 4096 }, handler);
    const [serverSide, clientSide] = duplexPair(1024);
    const admitted = core.admit('inproc', 'test', 'k');
    assert.ok(!('reason' in admitted));
    core.accept(serverSide, 'inproc', 'test', makeStreamProtocol('v1'), admitted);
    clientSide.write(encodeFrame(V1Opcode.TEXT, Buffer.from('go')));
    clientSide.pause();
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(pushed[0], true);
    assert.equal(pushed.at(-1), false, 'the embedder is told to stop');
    clientSide.resume();
    await drained;
  });
});

describe('lifecycle', () => {
  test('a drain past its deadline does not wait for a stream that never emits close', async () => {
    const { core, clock } = makeCore();
    const stubborn = new Duplex({
      emitClose: false,
      read() {},
      write(_c, _e, cb) {
        cb();
      },
    });
    const admitted = core.admit('inproc', 'test', 'k');
    assert.ok(!('reason' in admitted));
    core.accept(stubborn, 'inproc', 'test', makeStreamProtocol('len'), admitted);
    const done = core.drain(1000);
    clock.advance(1000);
    assert.equal(await done, false);
    assert.equal(core.connections.size, 0);
  });

  test('a protocol factory that throws registers nothing: the drain does not wait for it', async () => {
    const { core } = makeCore();
    const [serverSide] = duplexPair();
    const admitted = core.admit('inproc', 'test', 'k');
    assert.ok(!('reason' in admitted));
    const conn = core.accept(
      serverSide,
      'inproc',
      'test',
      (): ProtocolAdapter => {
        throw new Error('factory failed');
      },
      admitted,
    );
    assert.equal(conn, undefined);
    assert.equal(core.connections.size, 0);
    assert.equal(core.stats.inproc.rejects.internal, 1);
    assert.equal(await core.drain(1000), true);
  });

  test('upgrades waiting on authentication hold a place under the connection limit', () => {
    const { core } = makeCore({ maxConnections: 2 });
    assert.equal(core.reserve('ws', 'a'), undefined);
    assert.equal(core.reserve('ws', 'b'), undefined);
    const refused = core.admit('tcp', 'c', 'k');
    assert.ok('reason' in refused && refused.code === 1013);
    core.unreserve();
    assert.ok(!('reason' in core.admit('tcp', 'c', 'k')));
  });
});

describe('memory: partial frames', () => {
  test('a frame declared at 16 MiB holds what has arrived, not 16 MiB', async () => {
    const { core } = makeCore();
    const { conn, peer } = open(core);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(16 * 1024 * 1024, 0);
    head[4] = V1Opcode.BINARY;
    peer.side.write(Buffer.concat([head, Buffer.alloc(4000)]));
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok(conn.protocol.bufferedBytes < 64 * 1024, `held ${conn.protocol.bufferedBytes}`);
    assert.equal(core.heldBytes, conn.protocol.bufferedBytes);
  });

  test('over the server-wide budget, peers holding large partial frames pause; small messages keep flowing; all complete', async () => {
    const { core } = makeCore({ maxBufferedBytes: 256 * 1024 });
    const big = Array.from({ length: 4 }, () => open(core, 'len', 'tcp'));
    const frame = encodeLen(Buffer.alloc(512 * 1024, 7));
    // Each sends half of a 512 KiB frame: 4 x 256 KiB > the budget.
    for (const b of big) b.peer.side.write(frame.subarray(0, 256 * 1024));
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok(core.budgetPaused.size >= 1, 'some peers are paused');
    assert.ok(core.heldBytes <= 256 * 1024 + 2 * 512 * 1024, `held ${core.heldBytes}`);
    const small = open(core, 'len', 'tcp');
    small.peer.side.write(encodeLen(Buffer.from('small')));
    await small.peer.until(() => small.peer.bytes.length === 9);
    for (const b of big) b.peer.side.write(frame.subarray(256 * 1024));
    for (const b of big) await b.peer.until(() => b.peer.bytes.length === frame.length);
    for (const b of big) assert.ok(b.peer.bytes.equals(frame));
    assert.equal(core.heldBytes, 0);
    assert.equal(core.budgetPaused.size, 0);
  });
});
