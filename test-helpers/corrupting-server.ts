/**
 * A deliberately wrong echo server for the bench tests: speaks the bare `len` framing
 * (`[u32be length][payload]`, parsed with src/protocol's LenDecoder) on 127.0.0.1 port 0 and
 * echoes every frame, except that every `every`-th frame comes back with its last payload byte
 * flipped. A load generator that verifies echoes must report those as mismatches.
 */
import { once } from 'node:events';
import net from 'node:net';
import { LenDecoder } from '../src/protocol/len.js';

export interface CorruptingServer {
  readonly port: number;
  /** Frames corrupted so far. */
  readonly corrupted: number;
  close(): Promise<void>;
}

export async function startCorruptingServer(every: number): Promise<CorruptingServer> {
  let frames = 0;
  let corrupted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const decoder = new LenDecoder(64 * 1024 * 1024);
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk, {
        onFrame(buf, frameStart, bodyStart, bodyEnd) {
          const frame = Buffer.from(buf.subarray(frameStart, bodyEnd));
          if (++frames % every === 0 && bodyEnd > bodyStart) {
            const last = frame.length - 1;
            frame[last] = (frame[last] as number) ^ 0xff;
            corrupted++;
          }
          socket.write(frame);
        },
      });
    });
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
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
