/**
 * Direct socket I/O (core/direct-io.ts) over real sockets: every plaintext TCP read lands in one
 * shared buffer, so echoes the kernel could not take at once must be copies. A peer that stops
 * reading gets its echoes queued while other peers' reads reuse the buffer; every byte it then
 * reads must be its own, in order. Run with both `--socket-io` modes.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { directIo } from '../../src/core/direct-io.js';
import type { ConnectionInfo } from '../../src/index.js';
import { encodeLen } from '../../src/protocol/len.js';
import { openWs, startServer, type StartedServer } from '../../test-helpers/server.js';

const FRAME_BODY = 16 * 1024;

/** A `len` frame whose body is `seq` (u32be) followed by bytes derived from `tag` and `seq`. */
function frame(tag: number, seq: number): Buffer {
  const body = Buffer.alloc(FRAME_BODY, (tag + seq) & 0xff);
  body.writeUInt32BE(seq, 0);
  return encodeLen(body);
}

/** Reads `count` frames of FRAME_BODY bytes and checks each against `frame(tag, i)`. */
function expectFrames(socket: net.Socket, tag: number, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const want = count * (4 + FRAME_BODY);
    let got = 0;
    let seq = 0;
    let pending: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      got += chunk.length;
      while (pending.length >= 4 + FRAME_BODY) {
        const f = pending.subarray(0, 4 + FRAME_BODY);
        if (!f.equals(frame(tag, seq))) {
          socket.off('data', onData);
          reject(new Error(`frame ${seq} of peer ${tag} arrived changed (first bytes ${f.subarray(0, 12).toString('hex')})`));
          return;
        }
        seq++;
        pending = pending.subarray(4 + FRAME_BODY);
      }
      if (got >= want) {
        socket.off('data', onData);
        if (got === want && seq === count) resolve();
        else reject(new Error(`peer ${tag}: ${got} bytes for ${want}`));
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error(`peer ${tag}: closed after ${got} of ${want} bytes`)));
  });
}

/** Resolves once `pred` holds, checked on every turn of the event loop (bounded by the test timeout). */
function until(pred: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => (pred() ? resolve() : void setImmediate(check));
    check();
  });
}

async function connect(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  await once(s, 'connect');
  return s;
}

for (const socketIo of ['direct', 'stream'] as const) {
  describe(`--socket-io ${socketIo}`, () => {
    test("a stalled peer's queued echoes are its own bytes while other peers' reads go on", { timeout: 60_000 }, async () => {
      const srv: StartedServer = await startServer({ tcpFraming: 'len', socketIo, maxQueueBytes: 8 * 1024 * 1024 });
      const stalled = await connect(srv.tcpPort);
      const good = await connect(srv.tcpPort);
      try {
        // The stalled peer sends ~12 MiB and reads nothing: both kernel buffers fill, and the
        // server's echoes to it are queued (from the read buffer, in direct mode).
        stalled.pause();
        const stalledFrames = 768;
        for (let i = 0; i < stalledFrames; i++) stalled.write(frame(0x11, i));
        const info = (): ConnectionInfo | undefined => [...srv.server.connections].find((c) => c.bytesIn > 0 && c.queuedBytes > 0);
        await until(() => info() !== undefined);
        // Meanwhile another peer's traffic reuses the read buffer many times over.
        const goodFrames = 512;
        const goodDone = expectFrames(good, 0x77, goodFrames);
        for (let i = 0; i < goodFrames; i++) good.write(frame(0x77, i));
        await goodDone;
        assert.ok((info()?.queuedBytes ?? 0) > 0, 'the stalled peer still had echoes queued while the good peer ran');
        // Now the stalled peer reads: everything, in order, unchanged.
        const stalledDone = expectFrames(stalled, 0x11, stalledFrames);
        stalled.resume();
        await stalledDone;
      } finally {
        stalled.destroy();
        good.destroy();
        await srv.close();
      }
    });

    test("a stalled WebSocket peer's queued echoes are its own bytes while a TCP peer's reads go on", { timeout: 60_000 }, async () => {
      const srv: StartedServer = await startServer({ tcpFraming: 'len', socketIo, maxQueueBytes: 8 * 1024 * 1024 });
      const ws = await openWs(srv.wsUrl());
      const good = await connect(srv.tcpPort);
      try {
        ws.pause();
        const count = 768;
        const body = (i: number): Buffer => frame(0x33, i).subarray(4);
        for (let i = 0; i < count; i++) ws.send(body(i));
        const info = (): ConnectionInfo | undefined => [...srv.server.connections].find((c) => c.transport === 'ws' && c.queuedBytes > 0);
        await until(() => info() !== undefined);
        const goodDone = expectFrames(good, 0x77, 512);
        for (let i = 0; i < 512; i++) good.write(frame(0x77, i));
        await goodDone;
        assert.ok((info()?.queuedBytes ?? 0) > 0, 'the stalled peer still had echoes queued while the TCP peer ran');
        let seq = 0;
        const all = new Promise<void>((resolve, reject) => {
          ws.on('message', (data: Buffer) => {
            if (!data.equals(body(seq))) reject(new Error(`message ${seq} arrived changed`));
            else if (++seq === count) resolve();
          });
          ws.once('close', () => reject(new Error(`closed after ${seq} messages`)));
        });
        ws.resume();
        await all;
      } finally {
        ws.terminate();
        good.destroy();
        await srv.close();
      }
    });
  });
}

describe('directIo()', () => {
  test('switches an accepted plaintext socket to direct reads; a socket with data already buffered stays on streams', async () => {
    const accepted: net.Socket[] = [];
    const server = net.createServer((s) => accepted.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    const a = await connect(port);
    const b = await connect(port);
    try {
      await until(() => accepted.length === 2);
      const [sa, sb] = accepted as [net.Socket, net.Socket];
      const reads: string[] = [];
      assert.ok(directIo(sa, (chunk) => reads.push(chunk.toString())) >= 0, 'a plain TCP socket takes the direct path');
      a.write('hello');
      await until(() => reads.length > 0);
      assert.equal(reads.join(''), 'hello');
      // Data the stream already holds would be skipped by direct reads: keep the stream path.
      sb.pause();
      b.write('queued');
      await until(() => sb.readableLength > 0);
      assert.equal(
        directIo(sb, () => undefined),
        -1,
      );
    } finally {
      a.destroy();
      b.destroy();
      for (const s of accepted) s.destroy();
      server.close();
    }
  });
});
