/**
 * Every program in examples/ runs (compiled to build/examples/ by `npm test`) and prints what
 * it should: the embedding examples are documentation that cannot rot.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanEnv } from '../../test-helpers/cli.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // NODE_TEST_CONTEXT would make a nested `node --test` report to our runner instead of stdout.
  const { NODE_TEST_CONTEXT: _ignored, ...env } = cleanEnv();
  const child = spawn(process.execPath, args, { cwd: EXAMPLES, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(guard);
  return { code, stdout, stderr };
}

/** Each example and the lines its output must contain, in order. */
const EXPECTED: Record<string, (string | RegExp)[]> = {
  'attach-http.js': ['app route: hello from the app', 'echo: hello over http', 'done'],
  'attach-express.js': ['express route: {"from":"express"}', 'echo: hello over express', 'done'],
  'attach-fastify.js': ['fastify route: {"from":"fastify"}', 'echo: hello over fastify', 'done'],
  'client.js': [
    /^ws: "hello" id=[0-9a-f]{8}-1 route=eu from echo-1 conn \S+ seq 1 in \d+\.\d\d ms$/,
    /^ws: ping \d+\.\d\d ms$/,
    /^tcp: a=([0-9a-f]{8})-1 b=\1-2 c=\1-3$/,
    'tcp: binary 010203 header=none',
    'done',
  ],
  'unix-ipc.js': [
    /^server \d+: listening on unix:.*echo\.sock$/,
    /^client \d+: connected as \S+$/,
    'client: echo of job-1: job 1 (seq 1)',
    'client: echo of job-2: job 2 (seq 2)',
    'client: echo of job-3: job 3 (seq 3)',
    'server: client exited 0; messages echoed over unix: 3 (ws 0, tcp 0)',
  ],
  'command-control.js': [
    /^admin hello: .*"ok":true.*"identity":"admin"/,
    /^viewer status: \{"ok":true,"mode":"normal","generation":1,.*"you":"viewer"\}$/,
    'viewer reload: {"ok":false,"error":"reload needs the admin identity"}',
    'admin reload: {"ok":true,"reloaded":2,"mode":"maintenance"}',
    /^admin status: \{"ok":true,"mode":"maintenance","generation":2,.*"you":"admin"\}$/,
    'admin bogus: {"ok":false,"error":"unknown command \\"selfdestruct\\""}',
    'anonymous: closed 1008 (hello required)',
  ],
};

describe('examples/', () => {
  it('every example is listed here (a new one gets its expected output)', () => {
    const built = readdirSync(EXAMPLES).filter((f) => f.endsWith('.js') && !f.endsWith('.test.js'));
    assert.deepEqual(built.sort(), Object.keys(EXPECTED).sort());
  });

  for (const [file, lines] of Object.entries(EXPECTED)) {
    it(`${file} runs and prints what it should`, { timeout: 40_000 }, async () => {
      const r = await run([file]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const out = r.stdout.trimEnd().split('\n');
      assert.equal(out.length, lines.length, r.stdout);
      lines.forEach((want, i) => {
        if (typeof want === 'string') assert.equal(out[i], want);
        else assert.match(out[i] ?? '', want);
      });
    });
  }

  it('in-process.test.js: the in-process client in a unit test passes', { timeout: 40_000 }, async () => {
    const r = await run(['--test', 'in-process.test.js']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^# pass 2$/m);
    assert.match(r.stdout, /^# fail 0$/m);
  });
});
