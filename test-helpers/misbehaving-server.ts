/**
 * Deliberately wrong echo servers for the bench tests. They speak the bare `len` framing
 * (`[u32be length][payload]`, parsed with src/protocol's LenDecoder) on 127.0.0.1 port 0 and
 * echo every frame, except that:
 * - `corruptEvery: n`: every n-th frame comes back with its last payload byte flipped (a load
 *   generator that verifies echoes must report mismatches);
 * - `stallAfter: n, stallMs`: after the n-th frame, echoes are held back once for `stallMs`
 *   (a load generator at a fixed rate must see the stall in the latency of every message that
 *   was due during it, not only the one that waited: coordinated omission).
 */
import { once } from 'node:events';
import net from 'node:net';
import { LenDecoder } from '../src/protocol/len.js';

export interface MisbehavingOptions {
  corruptEvery?: number;
  stallAfter?: number;
  stallMs?: number;
}

export interface MisbehavingServer {
  readonly port: number;
  /** Frames corrupted so far. */
  readonly corrupted: number;
  close(): Promise<void>;
}

export async function startMisbehavingServer(options: MisbehavingOptions): Promise<MisbehavingServer> {
  let frames = 0;
  let corrupted = 0;
  let stallUntil = 0;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const decoder = new LenDecoder(64 * 1024 * 1024);
    const sink = {
      onFrame(buf: Buffer, frameStart: number, bodyStart: number, bodyEnd: number): void {
        const frame = Buffer.from(buf.subarray(frameStart, bodyEnd));
        frames++;
        if (options.corruptEvery !== undefined && frames % options.corruptEvery === 0 && bodyEnd > bodyStart) {
          frame[frame.length - 1] = (frame[frame.length - 1] as number) ^ 0xff;
          corrupted++;
        }
        if (frames === options.stallAfter) stallUntil = Date.now() + (options.stallMs ?? 0);
        const wait = stallUntil - Date.now();
        if (wait <= 0) {
          socket.write(frame);
          return;
        }
        // Held until the stall ends. (Tests stall with one message in flight, so order is not at stake.)
        const t = setTimeout(() => {
          timers.delete(t);
          if (!socket.destroyed) socket.write(frame);
        }, wait);
        timers.add(t);
      },
    };
    socket.on('data', (chunk: Buffer) => decoder.push(chunk, sink));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    get corrupted() {
      return corrupted;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
