// `echoserver probe URL`: one round trip for health checks, over every transport, with TLS
// verification on by default.
import assert from 'node:assert/strict';
import { describe, it, after, before } from 'node:test';
import { createEchoServer, type EchoServer, type ServerAddresses } from '../../src/index.js';
import { runCli } from '../../test-helpers/cli.js';

describe('echoserver probe', () => {
  let plain: EchoServer;
  let secure: EchoServer;
  let p: ServerAddresses;
  let s: ServerAddresses;
  before(async () => {
    plain = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true, unixPath: `/tmp/echo-probe-${process.pid}.sock` });
    secure = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0 });
    [p, s] = await Promise.all([plain.listen(), secure.listen()]);
  });
  after(async () => {
    await Promise.all([plain.close({ drainMs: 500 }), secure.close({ drainMs: 500 })]);
  });

  const ok = async (args: string[]): Promise<Record<string, unknown>> => {
    const r = await runCli(['probe', ...args]);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    const line = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(line['ok'], true);
    assert.equal(typeof line['rttMs'], 'number');
    return line;
  };

  it('ws://, tcp:// and unix: round trips exit 0 with the round-trip time', async () => {
    await ok([`ws://127.0.0.1:${p.ws?.port}/`]);
    const tcp = await ok([`tcp://127.0.0.1:${p.tcp?.port}`]);
    assert.equal(tcp['instance'], plain.settings.instance, 'the echo header names the instance');
    await ok([`unix:${p.unix?.path}`]);
  });

  it('wss:// and tls:// verify the certificate unless --insecure', async () => {
    const refused = await runCli(['probe', `wss://127.0.0.1:${s.ws?.port}/`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /"ok":false.*certificate/);
    await ok([`wss://127.0.0.1:${s.ws?.port}/`, '--insecure']);
    await ok([`tls://127.0.0.1:${s.tcp?.port}`, '--insecure']);
  });

  it('a WebSocket closed before the echo is reported at once with its code (not as a timeout)', async () => {
    const faulty = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: null, insecure: true, faultInjection: true });
    const a = await faulty.listen();
    try {
      const r = await runCli(['probe', `ws://127.0.0.1:${a.ws?.port}/ws?close=4000`]);
      assert.equal(r.code, 1);
      const line = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(line['error'], 'closed 4000 fault injected');
    } finally {
      await faulty.close({ drainMs: 500 });
    }
  });

  it('a closed port exits 1 with the error; a missing URL exits 2', async () => {
    const closed = await runCli(['probe', 'tcp://127.0.0.1:1']);
    assert.equal(closed.code, 1);
    assert.match(closed.stdout, /ECONNREFUSED/);
    const missing = await runCli(['probe']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /probe needs a URL/);
  });
});
