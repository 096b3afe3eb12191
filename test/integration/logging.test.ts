/**
 * Structured logs of the real CLI (`dist/cli.js serve --log-format json --log-level debug`):
 * a line per connection open and close with id, transport, peer, duration, counts and close
 * reason, a debug line per message with its id, and no secret anywhere in stdout or stderr,
 * whether it came in a v1 metadata header, a hello, an Authorization or Cookie header, a URL
 * query or a broken header that fails to parse.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { it } from 'node:test';
import WebSocket from 'ws';
import { connectV1 } from '../../src/index.js';
import { parseV1Frames, RawSocket } from '../../test-helpers/raw.js';
import { spawnCli, type LogLine } from '../../test-helpers/cli-lines.js';
import { PLAIN_SERVE_ARGS } from '../../test-helpers/cli.js';

/** Every secret the test hands the server; none may appear in any output. */
const SECRETS = ['s3cr3t-token', 's3cr3t-bearer', 's3cr3t-hello', 's3cr3t-cookie', 's3cr3t-query', 's3cr3t-broken'];

it('logs connections and messages as JSON, and never a secret', { timeout: 20_000 }, async (t) => {
  const cli = spawnCli([...PLAIN_SERVE_ARGS, '--log-level', 'debug', '--instance', 'log-test']);
  t.after(() => cli.kill());
  const listeners = await cli.listening();
  assert.ok(listeners.ws !== undefined && listeners.tcp !== undefined, JSON.stringify(listeners));

  // ---- TCP framing v1: hello with a token, one message whose header carries a token
  const tcp = await connectV1({ port: listeners.tcp.port });
  const tcpSocket = tcp.stream as Socket;
  const tcpPeer = `127.0.0.1:${tcpSocket.localPort}`;
  const tcpOpen = await cli.waitFor((l) => l['event'] === 'connection.open' && l['peer'] === tcpPeer, 'the TCP open line');
  await tcp.hello({ token: 's3cr3t-hello' });
  const echo = once(tcp, 'message');
  tcp.send('hello', { id: 'msg-42', token: 's3cr3t-token' });
  const [echoed] = (await echo) as [{ header: Record<string, unknown> | undefined }];
  assert.equal(echoed.header?.['id'], 'msg-42');
  const closeInfo = await tcp.close(1000, 'bye');
  assert.equal(closeInfo.code, 1000);

  // ---- WebSocket with credentials in headers and in the query
  const ws = new WebSocket(`ws://127.0.0.1:${listeners.ws.port}/?access_token=s3cr3t-query`, {
    headers: { Authorization: 'Bearer s3cr3t-bearer', Cookie: 'session=s3cr3t-cookie' },
  });
  // 'open' follows 'upgrade' in the same tick: listen for both first.
  const upgraded = once(ws, 'upgrade');
  const opened = once(ws, 'open');
  const [upgrade] = (await upgraded) as [IncomingMessage];
  const wsPeer = `127.0.0.1:${(upgrade.socket as Socket).localPort}`;
  await opened;
  const wsEcho = once(ws, 'message');
  ws.send('over websocket');
  await wsEcho;
  const wsClosed = once(ws, 'close');
  ws.close(1000);
  await wsClosed;

  // ---- a v1 header that is not JSON (it carries a secret): the server closes 1002
  const broken = await RawSocket.connect({ port: listeners.tcp.port });
  const brokenPeer = `127.0.0.1:${broken.socket.localPort}`;
  const header = Buffer.from('{"token":"s3cr3t-broken"');
  const payload = Buffer.from('x');
  const body = Buffer.concat([Buffer.from([0x81, header.length >> 8, header.length & 0xff]), header, payload]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  await broken.write(Buffer.concat([len, body]));
  await broken.waitClose();
  assert.equal(parseV1Frames(broken.data()).frames[0]?.payload.readUInt16BE(0), 1002);

  // ---- the lines
  const tcpClose = await cli.waitFor((l) => l['event'] === 'connection.close' && l['peer'] === tcpPeer, 'the TCP close line');
  const wsOpen = await cli.waitFor((l) => l['event'] === 'connection.open' && l['peer'] === wsPeer, 'the WebSocket open line');
  const wsClose = await cli.waitFor((l) => l['event'] === 'connection.close' && l['peer'] === wsPeer, 'the WebSocket close line');
  const brokenClose = await cli.waitFor((l) => l['event'] === 'connection.close' && l['peer'] === brokenPeer, 'the malformed close line');

  const common = (l: LogLine): void => {
    assert.equal(l['level'], 30, 'info');
    assert.equal(typeof l['time'], 'number');
    assert.equal(l['pid'], cli.child.pid);
    assert.equal(typeof l['hostname'], 'string', 'hostname on every line (docs/OBSERVABILITY.md)');
    assert.equal(l['instance'], 'log-test');
    assert.equal(typeof l['conn'], 'string');
  };
  for (const l of [tcpOpen, tcpClose, wsOpen, wsClose, brokenClose]) common(l);

  assert.equal(tcpOpen['transport'], 'tcp');
  assert.equal(tcpOpen['msg'], 'connection open');
  assert.equal(tcpClose['conn'], tcpOpen['conn']);
  assert.equal(tcpClose['msg'], 'connection closed');
  assert.equal(tcpClose['transport'], 'tcp');
  assert.equal(typeof tcpClose['durationMs'], 'number');
  assert.ok((tcpClose['durationMs'] as number) >= 0);
  assert.equal(tcpClose['messagesIn'], 1);
  assert.equal(tcpClose['messagesOut'], 1);
  assert.equal(tcpClose['bytesIn'], tcpSocket.bytesWritten, 'bytesIn = what the client wrote');
  assert.equal(tcpClose['bytesOut'], tcpSocket.bytesRead, 'bytesOut = what the client read');
  assert.equal(tcpClose['code'], 1000);
  assert.equal(tcpClose['reason'], 'normal');

  assert.equal(wsOpen['transport'], 'ws');
  assert.notEqual(wsOpen['conn'], tcpOpen['conn']);
  assert.equal(wsClose['conn'], wsOpen['conn']);
  assert.equal(wsClose['messagesIn'], 1);
  assert.equal(wsClose['messagesOut'], 1);
  assert.equal(wsClose['code'], 1000);
  assert.equal(wsClose['reason'], 'normal');
  assert.equal(typeof wsClose['durationMs'], 'number');

  assert.equal(brokenClose['transport'], 'tcp');
  assert.equal(brokenClose['reason'], 'malformed');
  assert.equal(brokenClose['code'], 1002);

  // Debug line per message: the header id, or a generated `<conn>-<seq>`.
  const tcpMsg = await cli.waitFor((l) => l['event'] === 'message' && l['msgId'] === 'msg-42', 'the debug line of msg-42');
  assert.equal(tcpMsg['level'], 20, 'debug');
  assert.equal(tcpMsg['conn'], tcpOpen['conn']);
  assert.equal(tcpMsg['transport'], 'tcp');
  assert.equal(tcpMsg['kind'], 'text');
  assert.equal(tcpMsg['size'], 5);
  const wsMsg = await cli.waitFor((l) => l['event'] === 'message' && l['conn'] === wsOpen['conn'], 'the WebSocket message line');
  assert.equal(wsMsg['msgId'], `${String(wsOpen['conn'])}-1`);
  assert.equal(wsMsg['size'], Buffer.byteLength('over websocket'));

  // ---- graceful stop, then the whole output is searched
  cli.child.kill('SIGTERM');
  const { code } = await cli.exited;
  assert.equal(code, 0, cli.stderr());
  assert.ok(
    cli.lines.some((l) => l['event'] === 'stopped'),
    'a stopped line',
  );
  const everything = cli.stdout() + cli.stderr();
  for (const secret of SECRETS) assert.ok(!everything.includes(secret), `secret ${secret} appears in the output`);
  assert.ok(!everything.includes('s3cr3t'), 'no part of any secret appears');
  // Every stdout line is JSON (nothing printed around the logger).
  for (const line of cli
    .stdout()
    .split('\n')
    .filter((x) => x !== ''))
    assert.doesNotThrow(() => JSON.parse(line), line);
});
