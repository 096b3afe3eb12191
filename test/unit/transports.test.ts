/**
 * Transports without sockets: the WebSocket and stream adapters over an in-memory duplex, driven
 * through the core exactly as a listener would (admit, accept), with a manual clock.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { resolveSettings } from '../../src/config/index.js';
import { ManualClock } from '../../src/core/clock.js';
import { clientKeyOf, EchoCore } from '../../src/core/core.js';
import { encodeFrame as encodeWs, WsOpcode } from '../../src/protocol/ws-frame.js';
import { duplexPair } from '../../src/transports/inproc.js';
import { WsProtocol } from '../../src/transports/ws.js';

const KEY = Buffer.from([1, 2, 3, 4]);

function wsPair(): {
  core: EchoCore;
  client: ReturnType<typeof duplexPair>[1];
  received: () => Buffer;
  next: (n: number) => Promise<Buffer>;
} {
  const core = new EchoCore(resolveSettings({ instance: 'unit', wsPort: null, tcpPort: null }), undefined, new ManualClock());
  const [serverSide, client] = duplexPair();
  const admitted = core.admit('ws', 'test', clientKeyOf('ws', undefined, '127.0.0.1'));
  assert.ok(!('reason' in admitted));
  core.accept(serverSide, 'ws', 'test', (conn) => new WsProtocol(conn, false), admitted);
  const chunks: Buffer[] = [];
  let waiter: (() => void) | undefined;
  client.on('data', (c: Buffer) => {
    chunks.push(c);
    waiter?.();
  });
  const received = (): Buffer => Buffer.concat(chunks);
  const next = async (n: number): Promise<Buffer> => {
    while (received().length < n) await new Promise<void>((resolve) => (waiter = resolve));
    return received();
  };
  return { core, client, received, next };
}

describe('WebSocket transport over an in-memory duplex', () => {
  test('frames of one read are echoed in place, in order, in one write', async () => {
    const { client, next } = wsPair();
    const frames = ['a', 'bb', 'ccc'].map((t) => encodeWs(WsOpcode.TEXT, Buffer.from(t), { maskKey: KEY }));
    client.write(Buffer.concat(frames));
    const out = await next(3 * 2 + 6);
    assert.ok(out.equals(Buffer.concat(['a', 'bb', 'ccc'].map((t) => encodeWs(WsOpcode.TEXT, Buffer.from(t))))));
  });

  test('a ping is answered, and pings count as control frames', async () => {
    const { client, next } = wsPair();
    client.write(encodeWs(WsOpcode.PING, Buffer.from('p'), { maskKey: KEY }));
    const out = await next(3);
    assert.ok(out.equals(encodeWs(WsOpcode.PONG, Buffer.from('p'))));
  });

  test('an unmasked client frame closes with 1002', async () => {
    const { client, next } = wsPair();
    client.write(encodeWs(WsOpcode.TEXT, Buffer.from('x')));
    const out = await next(4);
    assert.equal(out[0], 0x88);
    assert.equal(out.readUInt16BE(2), 1002);
  });

  test('a message spanning reads is collected and echoed once', async () => {
    const { client, next } = wsPair();
    const big = Buffer.alloc(300 * 1024, 0x61);
    const frame = encodeWs(WsOpcode.BINARY, big, { maskKey: KEY });
    for (let i = 0; i < frame.length; i += 7000) client.write(frame.subarray(i, i + 7000));
    const expected = encodeWs(WsOpcode.BINARY, big);
    const out = await next(expected.length);
    assert.ok(out.equals(expected));
  });
});
