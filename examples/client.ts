/**
 * The typed client against a server started here (port 0, TLS off for the demo):
 * request/echo with `srv` and RTT over WebSocket echo.v1 and TCP, a ping, async iteration.
 * Run: npx tsc -p tsconfig.json && node build/examples/client.js
 */
import { createEchoServer } from '../src/index.js';
import { connect } from '../src/client/index.js';

const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true, instance: 'echo-1', logLevel: 'silent' });
const { ws, tcp } = await server.listen();

const c = await connect(`ws://127.0.0.1:${ws?.port}/ws`); // echo.v1 by default; reconnects by default
const r = await c.request('hello', { header: { route: 'eu' }, timeout: 2000 });
console.log(r.data, r.header, `rtt ${r.rttMs.toFixed(2)} ms`);
console.log('ping', (await c.ping()).toFixed(2), 'ms');

const t = await connect(`tcp://127.0.0.1:${tcp?.port}`);
const replies = await Promise.all(['a', 'b', 'c'].map((x) => t.request(x))); // pipelined, matched by id
console.log(replies.map((x) => `${String(x.data)}:${x.header?.['id'] as string}`).join(' '));
t.send(new Uint8Array([1, 2, 3]));
for await (const m of t) {
  console.log(m.kind, m.data, 'from', m.srv?.instance ?? 'no header: byte-for-byte echo');
  break;
}
await Promise.all([c.close(), t.close()]);
await server.close();
