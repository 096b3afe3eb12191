/**
 * An echo WebSocket endpoint on a Fastify app: `fastify.server` is the Node http.Server (it
 * exists before `listen()`). Detach in an onClose hook, so Fastify's own shutdown drains our
 * connections too.
 */
import WebSocket from 'ws';
import { once } from 'node:events';
import Fastify from 'fastify';
import { attach } from '../src/index.js';

const app = Fastify();
app.get('/hello', () => ({ from: 'fastify' }));
const echo = attach(app.server, { path: '/echo' });
app.addHook('onClose', async () => {
  await echo.close();
});
await app.listen({ port: 0, host: '127.0.0.1' });
const { port } = app.server.address() as { port: number };

const r = await fetch(`http://127.0.0.1:${port}/hello`);
console.log('fastify route:', JSON.stringify(await r.json()));

const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
await once(ws, 'open');
ws.send('hello over fastify');
const [data] = (await once(ws, 'message')) as [Buffer];
console.log('echo:', data.toString());
ws.close();
await once(ws, 'close');

await app.close();
console.log('done');
