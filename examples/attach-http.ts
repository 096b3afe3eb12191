/**
 * An echo WebSocket endpoint on a plain Node `http` server that keeps its own routes.
 * Run: `npm test` builds it to build/examples/attach-http.js; `node build/examples/attach-http.js`.
 */
import http from 'node:http';
import { once } from 'node:events';
import WebSocket from 'ws';
import { attach } from '../src/index.js';

const app = http.createServer((_req, res) => res.end('hello from the app\n'));
// One `upgrade` listener on /echo; the app's requests are untouched.
const echo = attach(app, { path: '/echo' });
app.listen(0, '127.0.0.1');
await once(app, 'listening');
const { port } = app.address() as { port: number };

const page = await fetch(`http://127.0.0.1:${port}/`);
console.log('app route:', (await page.text()).trim());

const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
await once(ws, 'open');
ws.send('hello over http');
const [data] = (await once(ws, 'message')) as [Buffer];
console.log('echo:', data.toString());
ws.close();
await once(ws, 'close');

await echo.close(); // drains our connections and removes our listener; the app's server stays up
app.close();
await once(app, 'close');
console.log('done');
