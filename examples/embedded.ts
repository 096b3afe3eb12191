/**
 * Embedding EchoServer in an application (run: `npm run build && node build/examples/embedded.js`,
 * after `npx tsc -p tsconfig.json`; `npm test` runs it too).
 *
 * 1. An echo WebSocket endpoint on the application's own HTTP server (`attach`).
 * 2. A command-and-control hook: messages starting with "cmd:" are answered by the app.
 * 3. An in-process client (`connect()`): no socket at all.
 */
import http from 'node:http';
import { once } from 'node:events';
import WebSocket from 'ws';
import { attach, createEchoServer, type MessageHandler } from '../src/index.js';

// The hook: return undefined to echo, null to stay silent, or a reply.
const onMessage: MessageHandler = (message, connection) => {
  const text = message.kind === 'text' ? message.data.toString('utf8') : '';
  if (text === 'cmd:whoami') return { data: JSON.stringify({ id: connection.id, transport: connection.transport, peer: connection.peer }) };
  if (text.startsWith('cmd:')) return { data: `unknown command ${text.slice(4)}` };
  return undefined; // everything else is echoed
};

async function main(): Promise<void> {
  // 1. The application's server, with its own routes; we add /echo to it.
  const app = http.createServer((_req, res) => res.end('hello from the app\n'));
  const echo = attach(app, { path: '/echo', onMessage });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const { port } = app.address() as { port: number };

  const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`);
  await once(ws, 'open');
  ws.send('ping me back');
  const [echoed] = (await once(ws, 'message')) as [Buffer];
  console.log('attach: echoed ->', echoed.toString());
  ws.send('cmd:whoami');
  const [who] = (await once(ws, 'message')) as [Buffer];
  console.log('attach: whoami ->', who.toString());
  ws.close();
  await once(ws, 'close');
  await echo.close(); // drains our connections; the app's server keeps running
  app.close();

  // 3. In-process: a server with no network listeners, and a client without a socket.
  const server = createEchoServer({ wsPort: null, tcpPort: null, onMessage });
  await server.listen();
  const client = server.connect();
  client.send('in-process hello', { id: 'm-1' });
  const [msg] = await once(client, 'message');
  console.log('in-process: echoed ->', msg.data.toString(), 'header.srv.conn =', (msg.header?.['srv'] as { conn: string }).conn);
  await client.close();
  await server.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
