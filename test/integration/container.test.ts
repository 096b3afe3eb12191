/**
 * The container, without a container engine (none here): the Dockerfile is linted (multi-stage,
 * numeric non-root USER, HEALTHCHECK running our probe, OCI labels, every file it copies exists
 * and is in the build context), and the image's exact start command (ENTRYPOINT + CMD + ENV)
 * is run, with its HEALTHCHECK command against it, as the container would, on loopback and
 * ephemeral ports. It writes nothing (the image runs with a read-only root filesystem).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadSettings } from '../../src/config/index.js';
import { runCli } from '../../test-helpers/cli.js';
import { spawnCli } from '../../test-helpers/cli-lines.js';
import { ROOT } from '../../test-helpers/k8s.js';

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    current += (current === '' ? '' : ' ') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) continue;
    const sp = current.indexOf(' ');
    out.push({ op: current.slice(0, sp).toUpperCase(), args: current.slice(sp + 1).trim() });
    current = '';
  }
  return out;
}

const DOCKERFILE = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const lastStage = DOCKERFILE.slice(DOCKERFILE.map((i) => i.op).lastIndexOf('FROM'));
const execForm = (op: string): string[] => {
  const i = lastStage.find((x) => x.op === op);
  assert.ok(i !== undefined, `${op} in the runtime stage`);
  return JSON.parse(i.args.replace(/^.*?CMD\s+/, '')) as string[];
};
/** ENV of the runtime stage (`ENV A=1 B=2` form). */
const imageEnv = (): Record<string, string> =>
  Object.fromEntries(
    lastStage
      .filter((i) => i.op === 'ENV')
      .flatMap((i) => [...i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((m) => [m[1], (m[2] ?? '').replace(/^"|"$/g, '')])),
  );

describe('Dockerfile', () => {
  it('is multi-stage, runs as a numeric non-root user, has a HEALTHCHECK running our probe and OCI labels', () => {
    const froms = DOCKERFILE.filter((i) => i.op === 'FROM');
    assert.ok(froms.length >= 2, 'multi-stage');
    assert.match(froms.at(-1)?.args ?? '', /-slim$/, 'a slim runtime base');
    const users = lastStage.filter((i) => i.op === 'USER');
    assert.equal(users.length, 1);
    const m = /^(\d+)(?::(\d+))?$/.exec(users[0]?.args ?? '');
    assert.ok(m !== null, `USER must be numeric (the kubelet cannot check a name is not root): ${users[0]?.args}`);
    assert.notEqual(Number(m[1]), 0, 'not root');
    assert.deepEqual(execForm('HEALTHCHECK').slice(0, 3), ['node', 'dist/cli.js', 'probe']);
    const labels = lastStage
      .filter((i) => i.op === 'LABEL')
      .map((i) => i.args)
      .join(' ');
    for (const key of ['title', 'description', 'version', 'licenses', 'source'])
      assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${key}=`), key);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string };
    assert.ok(
      lastStage.some((i) => i.op === 'ARG' && i.args === `VERSION=${pkg.version}`),
      'version label defaults to package.json',
    );
    assert.match(labels, new RegExp(`licenses="${pkg.license}"`));
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(ignore[0], '*', '.dockerignore is an allow-list');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    let copies = 0;
    for (const i of DOCKERFILE.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
      const parts = i.args.split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        copies++;
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: exists`);
        assert.ok(allowed.includes(src.replace(/\/$/, '')), `COPY ${src}: in the build context (.dockerignore)`);
      }
    }
    assert.ok(copies >= 5);
  });

  it('ENTRYPOINT + CMD parse as serve; EXPOSE lists the default ports', () => {
    const argv = [...execForm('ENTRYPOINT'), ...execForm('CMD')];
    assert.deepEqual(argv.slice(0, 2), ['node', 'dist/cli.js']);
    const { command, settings } = loadSettings(argv.slice(2), imageEnv());
    assert.equal(command, 'serve');
    const exposed = (lastStage.find((i) => i.op === 'EXPOSE')?.args ?? '').split(/\s+/).map(Number);
    for (const p of [settings.wsPort, settings.tcpPort]) assert.ok(exposed.includes(p as number), `EXPOSE ${p}`);
  });
});

describe("the image's start command", () => {
  const argv = (): string[] => [...execForm('ENTRYPOINT'), ...execForm('CMD')].slice(2);

  for (const variant of ['TLS by default (self-signed)', 'token auth on']) {
    it(`serves, passes its own HEALTHCHECK, writes nothing, and stops on SIGTERM: ${variant}`, { timeout: 30_000 }, async () => {
      const home = mkdtempSync(join(tmpdir(), 'echo-image-home-'));
      const auth: Record<string, string> =
        variant === 'token auth on' ? { ECHO_AUTH: 'token', ECHO_AUTH_TOKENS: 'probe:0123456789abcdef0123456789abcdef' } : {};
      // The container's environment, with loopback and ephemeral ports (the only change).
      const env = { ...imageEnv(), HOME: home, ECHO_HOST: '127.0.0.1', ECHO_WS_PORT: '0', ECHO_TCP_PORT: '0', ...auth };
      const server = spawnCli(argv(), env);
      try {
        const listeners = await server.listening();
        const wsPort = String(listeners.ws?.port);
        const health = execForm('HEALTHCHECK').slice(2);
        // HEALTHCHECK runs in the same container: same environment, the port it really has.
        const ok = await runCli(health, { env: { ...env, ECHO_WS_PORT: wsPort } });
        assert.equal(ok.code, 0, ok.stdout + ok.stderr);
        const line = JSON.parse(ok.stdout) as { ok: boolean; url: string };
        assert.equal(line.ok, true);
        assert.ok(line.url.startsWith(variant === 'token auth on' ? 'https://127.0.0.1:' : 'wss://127.0.0.1:'), line.url);
        // And it fails when nothing answers there (the check can fail).
        const down = await runCli(health, { env: { ...env, ECHO_WS_PORT: String(listeners.tcp?.port) } });
        assert.equal(down.code, 1, down.stdout);
        server.child.kill('SIGTERM');
        assert.deepEqual(await server.exited, { code: 0, signal: null }, server.stderr());
        assert.deepEqual(readdirSync(home), [], 'nothing written to HOME');
      } finally {
        server.kill();
        rmSync(home, { recursive: true, force: true });
      }
    });
  }

  it('probe self with no listener configured is a usage error', async () => {
    const r = await runCli(['probe', 'self', '--ws-port', 'off', '--tcp-port', 'off']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /probe self: no listener/);
  });
});
