// The floor for a Node.js echo on this machine, for bench/RESULTS.md: a raw byte echo with
// nothing but the server's own socket I/O layer (src/core/direct-io.ts: reads into one shared
// buffer, writes straight to the descriptor while nothing is queued). No framing, no limits, no
// metrics: whatever the server costs per message above this is ours; below it, Node's.
// Usage: node bench/floor-echo.mjs PORT   (needs `npm run build` for dist/)
import net from 'node:net';
import { directIo, writeNow } from '../dist/core/direct-io.js';

const port = Number(process.argv[2]);
net
  .createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => undefined);
    const fd = directIo(socket, (chunk) => {
      try {
        const n = socket.writableLength === 0 ? writeNow(fd, chunk) : 0;
        if (n < chunk.length) socket.write(Buffer.from(chunk.subarray(n)));
      } catch (err) {
        socket.destroy(err);
      }
    });
    if (fd < 0) socket.on('data', (d) => socket.write(d));
  })
  .listen(port, '127.0.0.1');
