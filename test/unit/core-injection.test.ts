/**
 * Latency and fault injection in the core, without sockets: in-memory duplex pairs and a
 * ManualClock, so delays are exact and nothing waits on real time. Backpressure through the
 * delay queue, order, other connections, drain, and refusals.
 */
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { resolveSettings, type Settings } from '../../src/config/index.js';
import { ManualClock } from '../../src/core/clock.js';
import { Pause, type Connection } from '../../src/core/connection.js';
import { clientKeyOf, EchoCore } from '../../src/core/core.js';
import { decodeClose, encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { duplexPair } from '../../src/transports/inproc.js';
import { makeStreamProtocol } from '../../src/transports/stream.js';

function makeCore(overrides: Partial<Settings> = {}): { core: EchoCore; clock: ManualClock } {
  const clock = new ManualClock();
  const settings = resolveSettings({ instance: 'unit', wsPort: null, tcpPort: null, ...overrides });
  return { core: new EchoCore(settings, undefined, clock), clock };
}

interface Frame {
  opcode: number;
  header: Record<string, unknown> | undefined;
  payload: Buffer;
}

/** The client end: collects v1 frames. */
class Peer {
  private buf = Buffer.alloc(0);
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];
  constructor(readonly side: Duplex) {
    side.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) {
        const len = this.buf.readUInt32BE(0);
        const kind = this.buf[4] as number;
        let ps = 5;
        let header: Record<string, unknown> | undefined;
        if (kind & 0x80) {
          const hl = this.buf.readUInt16BE(5);
          header = JSON.parse(this.buf.toString('utf8', 7, 7 + hl)) as Record<string, unknown>;
          ps = 7 + hl;
        }
        this.frames.push({ opcode: kind & 0x0f, header, payload: Buffer.from(this.buf.subarray(ps, 4 + len)) });
        this.buf = this.buf.subarray(4 + len);
      }
      this.wake();
    });
    side.on('close', () => this.wake());
    side.on('error', () => undefined);
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  async until(check: () => boolean): Promise<void> {
    while (!check()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  texts(): string[] {
    return this.frames.filter((f) => f.opcode === V1Opcode.TEXT).map((f) => f.payload.toString());
  }
}

function open(core: EchoCore): { conn: Connection; peer: Peer; send(text: string, header?: Record<string, unknown>): void } {
  const [serverSide, clientSide] = duplexPair();
  const admitted = core.admit('inproc', 'test', clientKeyOf('inproc', undefined, undefined));
  assert.ok(!('reason' in admitted));
  const conn = core.accept(serverSide, 'inproc', 'test', makeStreamProtocol('v1'), admitted);
  assert.ok(conn);
  const peer = new Peer(clientSide);
  return {
    conn,
    peer,
    send(text, header) {
      clientSide.write(
        encodeFrame(V1Opcode.TEXT, Buffer.from(text), header === undefined ? undefined : Buffer.from(JSON.stringify(header))),
      );
    },
  };
}

/** Lets the in-memory streams deliver what was written (a few turns of the event loop, no timers). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('latency injection in the core (fake clock)', () => {
  test('a header delay holds the echo until the clock says so; later echoes wait behind it; srv.delay', async () => {
    const { core, clock } = makeCore();
    const a = open(core);
    a.send('one', { delay: 500 });
    a.send('two');
    await settle();
    assert.deepEqual(a.peer.texts(), [], 'nothing before the delay');
    assert.equal(a.conn.messagesIn, 2);
    assert.equal(a.conn.messagesOut, 0, 'a delayed echo counts as sent when it is');
    assert.ok(a.conn.queuedBytes > 0, 'delayed bytes count as queued');
    clock.advance(499);
    await settle();
    assert.deepEqual(a.peer.texts(), []);
    clock.advance(1);
    await a.peer.until(() => a.peer.texts().length === 2);
    assert.deepEqual(a.peer.texts(), ['one', 'two']);
    assert.equal((a.peer.frames[0]?.header?.['srv'] as Record<string, unknown>)['delay'], 500);
    assert.equal(a.conn.messagesOut, 2);
  });

  test('another connection is never held up by a delayed one', async () => {
    const { core } = makeCore();
    const slow = open(core);
    const fast = open(core);
    slow.send('slow', { delay: 10_000 });
    fast.send('fast');
    await fast.peer.until(() => fast.peer.texts().length === 1);
    assert.deepEqual(slow.peer.texts(), []);
  });

  test('delayed bytes count against the send queue: reading pauses above maxQueueBytes and resumes when sent', async () => {
    const { core, clock } = makeCore({ maxQueueBytes: 1024 });
    const c = open(core);
    const big = 'x'.repeat(600);
    for (let i = 0; i < 3; i++) c.send(`${i}${big}`, { delay: 100 });
    await settle();
    assert.ok((c.conn.paused & Pause.DELAY) !== 0, 'paused by the delay queue');
    const readSoFar = c.conn.messagesIn;
    c.send('after');
    await settle();
    assert.equal(c.conn.messagesIn, readSoFar, 'nothing more is read while paused');
    clock.advance(100);
    await c.peer.until(() => c.peer.texts().length === 2);
    assert.equal(c.conn.paused & Pause.DELAY, 0, 'resumed once the delayed echoes were sent');
    // The rest were read after the resume: their delay runs from then, and 'after' waits behind.
    await settle();
    assert.equal(c.conn.messagesIn, 4);
    clock.advance(100);
    await c.peer.until(() => c.peer.texts().length === 4);
    assert.deepEqual(
      c.peer.texts().map((t) => t.slice(0, 5)),
      ['0xxxx', '1xxxx', '2xxxx', 'after'],
    );
  });

  test('drain sends delayed echoes at once, then close 1001', async () => {
    const { core } = makeCore();
    const c = open(core);
    c.send('held', { delay: 20_000 });
    await settle();
    void core.drain(1000);
    await c.peer.until(() => c.peer.frames.some((f) => f.opcode === V1Opcode.CLOSE));
    assert.deepEqual(
      c.peer.frames.map((f) => f.opcode),
      [V1Opcode.TEXT, V1Opcode.CLOSE],
    );
    const close = c.peer.frames[1] as Frame;
    assert.equal(decodeClose(close.payload, 0, close.payload.length).code, 1001);
  });

  test('a refused header closes with 1008 and the reason; nothing is echoed', async () => {
    const { core } = makeCore({ maxDelayMs: 1000 });
    const c = open(core);
    c.send('x', { delay: 1001 });
    await c.peer.until(() => c.peer.frames.some((f) => f.opcode === V1Opcode.CLOSE));
    const close = c.peer.frames.find((f) => f.opcode === V1Opcode.CLOSE) as Frame;
    const { code, reason } = decodeClose(close.payload, 0, close.payload.length);
    assert.equal(code, 1008);
    assert.match(reason, /over --max-delay/);
    assert.deepEqual(c.peer.texts(), []);
  });

  test('counters: delay, drop and close per transport', async () => {
    const { core, clock } = makeCore({ faultInjection: true });
    const c = open(core);
    c.send('d', { delay: 10 });
    c.send('x', { drop: 1 });
    c.send('bye', { close: 4000 });
    c.send('discarded');
    await settle();
    clock.advance(10);
    await c.peer.until(() => c.peer.frames.some((f) => f.opcode === V1Opcode.CLOSE));
    assert.deepEqual(c.peer.texts(), ['d', 'bye']);
    assert.deepEqual(core.stats.inproc.injected, { delay: 1, drop: 1, close: 1 });
    assert.equal(c.conn.closeReason, 'fault');
  });
});
