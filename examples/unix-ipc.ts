/**
 * Two processes talking over a Unix socket (framing v1): this process runs the server and
 * forks itself as the client. Unix sockets carry no TLS; access is the socket file's mode
 * (0660: same user or group).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectV1, createEchoServer, type ClientMessage } from '../src/index.js';

if (process.argv[2] === 'client') {
  const path = process.argv[3] as string;
  const client = await connectV1({ path });
  const hello = await client.hello();
  console.log(`client ${process.pid}: connected as ${String(hello['conn'])}`);
  for (let i = 1; i <= 3; i++) {
    const reply = once(client, 'message');
    client.send(`job ${i}`, { id: `job-${i}` });
    const [msg] = (await reply) as [ClientMessage];
    const srv = msg.header?.['srv'] as { seq: number };
    console.log(`client: echo of ${String(msg.header?.['id'])}: ${msg.data.toString()} (seq ${srv.seq})`);
  }
  await client.close();
} else {
  const dir = mkdtempSync(join(tmpdir(), 'echo-ipc-'));
  const path = join(dir, 'echo.sock');
  const server = createEchoServer({ wsPort: null, tcpPort: null, unixPath: path });
  await server.listen();
  console.log(`server ${process.pid}: listening on unix:${path}`);
  const child = fork(fileURLToPath(import.meta.url), ['client', path], { stdio: 'inherit' });
  const [code] = (await once(child, 'exit')) as [number | null];
  const { ws, tcp, unix } = server.stats();
  console.log(
    `server: client exited ${code}; messages echoed over unix: ${unix.messagesOut} (ws ${ws.messagesOut}, tcp ${tcp.messagesOut})`,
  );
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  process.exitCode = code ?? 1;
}
