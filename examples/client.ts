/**
 * The typed client against a server started here (port 0, TLS off for the demo):
 * request/echo with `srv` and RTT over WebSocket echo.v1, pipelined requests over TCP matched
 * by id, a ping, async iteration. Run: npm test (or npx tsc -p tsconfig.json), then
 * node build/examples/client.js
 */
import { createEchoServer } from '../src/index.js';
import { connect } from '../src/client/index.js';

const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true, instance: 'echo-1', logLevel: 'silent' });
const { ws, tcp } = await server.listen();

const c = await connect(`ws://127.0.0.1:${ws?.port}/ws`); // echo.v1 by default; reconnects by default
const r = await c.request('hello', { header: { route: 'eu' }, timeout: 2000 });
const h = r.header ?? {};
console.log(
  `ws: ${JSON.stringify(r.data)} id=${String(h['id'])} route=${String(h['route'])} from ${r.srv?.instance} conn ${r.srv?.conn} seq ${r.srv?.seq} in ${r.rttMs.toFixed(2)} ms`,
);
console.log(`ws: ping ${(await c.ping()).toFixed(2)} ms`);

const t = await connect(`tcp://127.0.0.1:${tcp?.port}`);
const replies = await Promise.all(['a', 'b', 'c'].map((x) => t.request(x))); // pipelined, matched by id
console.log(`tcp: ${replies.map((x) => `${String(x.data)}=${String(x.header?.['id'])}`).join(' ')}`);
t.send(new Uint8Array([1, 2, 3])); // no header: echoed byte for byte, arrives through iteration
for await (const m of t) {
  console.log(`tcp: ${m.kind} ${Buffer.from(m.data as Uint8Array).toString('hex')} header=${m.header === undefined ? 'none' : 'yes'}`);
  break;
}
await Promise.all([c.close(), t.close()]);
await server.close();
console.log('done');
