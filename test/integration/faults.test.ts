/**
 * Faults, each a test: peers that reset mid-frame, half-open peers, peers that never speak,
 * a connection flood over the limit, descriptor exhaustion (see also security-limits.test.ts),
 * a worker killed under --workers 2, SIGTERM under load, and logs going nowhere. Servers that
 * could crash run as CLI child processes, so a crash is an exit the test sees.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { PLAIN_SERVE_ARGS, startCli } from '../../test-helpers/cli.js';

/** Connects and resolves on 'connect' or 'error' (a dead server must not hang the test). */
function connectTcp(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  return new Promise((resolve) => {
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(s));
  });
}

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
