/**
 * An echo WebSocket endpoint on an Express app: `app.listen()` returns the Node http.Server,
 * which is what `attach()` takes. Express keeps every route; /echo upgrades go to us.
 */
import { once } from 'node:events';
import express from 'express';
import WebSocket from 'ws';
import { attach } from '../src/index.js';

const app = express();
app.get('/hello', (_req, res) => {
  res.json({ from: 'express' });
});
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const echo = attach(server, { path: '/echo' });
const { port } = server.address() as { port: number };

const r = await fetch(`http://127.0.0.1:${port}/hello`);
console.log('express route:', JSON.stringify(await r.json()));

const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
await once(ws, 'open');
ws.send('hello over express');
const [data] = (await once(ws, 'message')) as [Buffer];
console.log('echo:', data.toString());
ws.close();
await once(ws, 'close');

await echo.close();
server.close();
await once(server, 'close');
console.log('done');
