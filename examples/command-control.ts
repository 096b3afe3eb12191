/**
 * A command-and-control service on the message hook, with authentication on: clients send
 * JSON commands, `status` (any authenticated client) and `reload` (only the `admin` identity),
 * and the hook answers instead of echoing. Unauthenticated clients are refused (close 1008)
 * before the hook ever sees them.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectV1, createEchoServer, type ClientMessage, type EchoServer, type MessageHandler, type V1Client } from '../src/index.js';

// The service's own configuration, re-read on `reload`.
const dir = mkdtempSync(join(tmpdir(), 'echo-cc-'));
const configFile = join(dir, 'service.json');
writeFileSync(configFile, JSON.stringify({ mode: 'normal' }));
let config = JSON.parse(readFileSync(configFile, 'utf8')) as { mode: string };
let generation = 1;
const startedAt = Date.now();

const reply = (body: Record<string, unknown>) => ({ data: JSON.stringify(body) });

const onMessage: MessageHandler = (message, connection) => {
  let command: { cmd?: unknown };
  try {
    command = JSON.parse(message.data.toString('utf8')) as { cmd?: unknown };
  } catch {
    return reply({ ok: false, error: 'expected JSON like {"cmd":"status"}' });
  }
  switch (command.cmd) {
    case 'status':
      return reply({
        ok: true,
        mode: config.mode,
        generation,
        uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
        connections: server.connections.size,
        you: connection.identity,
      });
    case 'reload':
      // Authorization on top of authentication: the identity is the token's name.
      if (connection.identity !== 'admin') return reply({ ok: false, error: 'reload needs the admin identity' });
      config = JSON.parse(readFileSync(configFile, 'utf8')) as { mode: string };
      generation++;
      return reply({ ok: true, reloaded: generation, mode: config.mode });
    default:
      return reply({ ok: false, error: `unknown command ${JSON.stringify(command.cmd)}` });
  }
};

// Plaintext is acceptable here only because it listens on loopback; in production keep TLS on.
const server: EchoServer = createEchoServer({
  host: '127.0.0.1',
  wsPort: null,
  tcpPort: 0,
  insecure: true,
  auth: 'token',
  authTokens: 'admin:admin-token-0123456789abcdef,viewer:viewer-token-0123456789abcdef',
  onMessage,
});
const { tcp } = await server.listen();
const port = tcp?.port as number;

async function command(client: V1Client, cmd: string): Promise<Record<string, unknown>> {
  const answer = once(client, 'message');
  client.send(JSON.stringify({ cmd }));
  const [msg] = (await answer) as [ClientMessage];
  return JSON.parse(msg.data.toString()) as Record<string, unknown>;
}

const admin = await connectV1({ port });
console.log('admin hello:', JSON.stringify(await admin.hello({ token: 'admin-token-0123456789abcdef' })));
const viewer = await connectV1({ port });
await viewer.hello({ token: 'viewer-token-0123456789abcdef' });

console.log('viewer status:', JSON.stringify(await command(viewer, 'status')));
console.log('viewer reload:', JSON.stringify(await command(viewer, 'reload')));
writeFileSync(configFile, JSON.stringify({ mode: 'maintenance' }));
console.log('admin reload:', JSON.stringify(await command(admin, 'reload')));
console.log('admin status:', JSON.stringify(await command(admin, 'status')));
console.log('admin bogus:', JSON.stringify(await command(admin, 'selfdestruct')));

// No credential: the server closes before any command runs.
const anonymous = await connectV1({ port });
const closed = once(anonymous, 'close');
anonymous.send(JSON.stringify({ cmd: 'status' }));
const [info] = (await closed) as [{ code: number; reason: string }];
console.log(`anonymous: closed ${info.code} (${info.reason})`);

await Promise.all([admin.close(), viewer.close()]);
await server.close();
rmSync(dir, { recursive: true, force: true });
