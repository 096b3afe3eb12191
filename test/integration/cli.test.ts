/**
 * The CLI as users run it (`node dist/cli.js`): --help, invalid settings (exit 2, one line
 * naming the setting), precedence flags > env > file observed on a started server, the
 * --insecure requirement and a port already in use (exit 1).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SETTINGS } from '../../src/index.js';
import { freePort, runCli, startCli, type RunningCli } from '../../test-helpers/cli.js';
import { httpGet } from '../../test-helpers/server.js';

const dir = mkdtempSync(join(tmpdir(), 'echo-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const BASE = ['--host', '127.0.0.1', '--log-format', 'json'];

/** stderr as lines, without the trailing newline. */
const stderrLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '');

describe('--help', () => {
  test('exits 0 and documents every flag, with its env var', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    for (const def of SETTINGS) {
      assert.ok(r.stdout.includes(def.flag), `--help lists ${def.flag}`);
      assert.ok(r.stdout.includes(def.env), `--help lists ${def.env}`);
    }
    for (const word of [
      '--config',
      'serve',
      '--insecure',
      '--ws-port',
      '--tcp-port',
      '--unix',
      '--raw-port',
      '--max-connections',
      '--max-frame-bytes',
      '--idle-timeout',
      '--drain-timeout',
    ]) {
      assert.ok(r.stdout.includes(word), `--help mentions ${word}`);
    }
  });

  test('help works next to an invalid flag', async () => {
    const r = await runCli(['serve', '--help', '--ws-port', 'nope']);
    assert.equal(r.code, 0);
  });
});

describe('invalid settings: exit 2 with one line naming the setting', () => {
  const cases: { args: string[]; env?: Record<string, string>; names: RegExp }[] = [
    { args: ['--max-frame-bytes', 'abc'], names: /--max-frame-bytes/ },
    { args: ['--ws-port', '70000'], names: /--ws-port/ },
    { args: ['--tcp-port=-1'], names: /--tcp-port/ },
    { args: ['--bogus-flag'], names: /--bogus-flag/ },
    { args: ['--idle-timeout', 'soon'], names: /--idle-timeout/ },
    { args: ['--tcp-framing', 'xml'], names: /--tcp-framing/ },
    { args: [], env: { ECHO_MAX_CONNECTIONS: '0' }, names: /ECHO_MAX_CONNECTIONS/ },
  ];
  for (const c of cases) {
    test(`${[...c.args, ...Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${v}`)].join(' ')}`, async () => {
      const r = await runCli(['serve', '--insecure', ...BASE, '--ws-port', '0', '--tcp-port', '0', ...c.args], { env: c.env ?? {} });
      assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
      const lines = stderrLines(r.stderr);
      assert.equal(lines.length, 1, `one line on stderr, got: ${JSON.stringify(r.stderr)}`);
      assert.match(lines[0] ?? '', c.names);
      assert.ok(!r.stdout.includes('"listening"'), 'the server did not start');
    });
  }

  test('an invalid config file value names the file key', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'maxFrameBytes: lots\n');
    const r = await runCli(['serve', '--insecure', ...BASE, '--config', file]);
    assert.equal(r.code, 2);
    const lines = stderrLines(r.stderr);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /maxFrameBytes/);
  });

  test('without --insecure nothing is served in plaintext: exit 2 naming insecure, or TLS listeners', { timeout: 15_000 }, async () => {
    // Until TLS existed, plaintext required --insecure (exit 2 naming it); since TLS is the
    // default, the server starts with TLS instead. Either way no plaintext endpoint may appear.
    let cli: RunningCli;
    try {
      cli = await startCli(['serve', ...BASE, '--ws-port', '0', '--tcp-port', '0']);
    } catch (err) {
      const e = err as { exitCode?: number; stderr?: string };
      assert.equal(e.exitCode, 2, String(err));
      const lines = stderrLines(e.stderr ?? '');
      assert.equal(lines.length, 1, `one line on stderr, got: ${JSON.stringify(e.stderr)}`);
      assert.match(lines[0] ?? '', /insecure/);
      return;
    }
    try {
      const ws = cli.listening.listeners.ws as { port: number; url?: string } | undefined;
      assert.ok(ws);
      assert.match(ws.url ?? '', /^wss:/, 'the WebSocket listener is TLS');
      // A plaintext HTTP request is not answered with a 200.
      const status = await httpGet(ws.port, '/healthz').then(
        (r) => r.status,
        () => 0,
      );
      assert.notEqual(status, 200, 'plaintext HTTP must not be served');
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
    }
  });
});

describe('precedence: flags > env > file > defaults, on a started server', () => {
  let cli: RunningCli | undefined;
  after(() => cli?.kill());

  async function stop(c: RunningCli): Promise<void> {
    c.child.kill('SIGTERM');
    const { code } = await c.exited;
    assert.equal(code, 0);
  }

  test('ECHO_WS_PORT beats the file; --ws-port beats ECHO_WS_PORT; file beats defaults', { timeout: 20_000 }, async () => {
    const [filePort, envPort, flagPort] = [await freePort(), await freePort(), await freePort()];
    const file = join(dir, 'echo.yaml');
    writeFileSync(
      file,
      [`wsPort: ${filePort}`, 'tcpPort: off', 'instance: from-file', 'maxFrameBytes: 1000', 'maxHeaderBytes: 100', ''].join('\n'),
    );

    // env over file
    cli = await startCli(['serve', '--insecure', ...BASE, '--config', file], {
      env: { ECHO_WS_PORT: String(envPort), ECHO_INSTANCE: 'from-env', ECHO_MAX_FRAME_BYTES: '2000' },
    });
    assert.equal(cli.listening.listeners.ws?.port, envPort);
    assert.equal(cli.listening.listeners.tcp, undefined, 'tcpPort: off from the file');
    let info = JSON.parse((await httpGet(envPort, '/info')).body) as { instance: string; limits: Record<string, number> };
    assert.equal(info.instance, 'from-env');
    assert.equal(info.limits['maxFrameBytes'], 2000);
    assert.equal(info.limits['maxHeaderBytes'], 100, 'file over default');
    await stop(cli);

    // flags over env over file
    cli = await startCli(['serve', '--insecure', ...BASE, '--config', file, '--ws-port', String(flagPort), '--max-frame-bytes', '3000'], {
      env: { ECHO_WS_PORT: String(envPort), ECHO_INSTANCE: 'from-env', ECHO_MAX_FRAME_BYTES: '2000' },
    });
    assert.equal(cli.listening.listeners.ws?.port, flagPort);
    info = JSON.parse((await httpGet(flagPort, '/info')).body) as { instance: string; limits: Record<string, number> };
    assert.equal(info.instance, 'from-env');
    assert.equal(info.limits['maxFrameBytes'], 3000);
    await stop(cli);

    // the file alone
    cli = await startCli(['serve', '--insecure', ...BASE, '--config', file]);
    assert.equal(cli.listening.listeners.ws?.port, filePort);
    info = JSON.parse((await httpGet(filePort, '/info')).body) as { instance: string; limits: Record<string, number> };
    assert.equal(info.instance, 'from-file');
    assert.equal(info.limits['maxFrameBytes'], 1000);
    await stop(cli);
  });

  test('/info reports the package version', { timeout: 10_000 }, async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    cli = await startCli(['serve', '--insecure', ...BASE, '--ws-port', '0', '--tcp-port', 'off']);
    const port = cli.listening.listeners.ws?.port ?? 0;
    const info = JSON.parse((await httpGet(port, '/info')).body) as { version: string };
    assert.equal(info.version, pkg.version);
    assert.equal(cli.listening['version'], pkg.version);
    await stop(cli);
  });
});

describe('runtime errors', () => {
  test('a port already in use: exit 1 with a one-line message', { timeout: 10_000 }, async () => {
    const blocker = net.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await runCli(['serve', '--insecure', ...BASE, '--ws-port', String(port), '--tcp-port', '0']);
      assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
      const lines = stderrLines(r.stderr);
      assert.equal(lines.length, 1, `one line on stderr, got: ${JSON.stringify(r.stderr)}`);
      assert.match(lines[0] ?? '', new RegExp(`${port}`));
      assert.match(lines[0] ?? '', /in use/);
    } finally {
      blocker.close();
    }
  });
});
