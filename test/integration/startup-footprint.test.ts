/**
 * What `serve` keeps in the main thread's heap: optional features load their libraries only
 * when configured (the OpenTelemetry SDK and exporter, jose, the YAML parser, the ws client of
 * the probe), and the self-signed certificate is generated in a worker thread. A heap past
 * V8's 8 MB incremental-marking threshold turned TLS echo at 64 KiB into a loop of major GCs
 * (bench/RESULTS.md), so this is a performance property, checked here by module, not by time.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCli, type RunningCli } from '../../test-helpers/cli.js';

const MODULE_LOG = fileURLToPath(new URL('../../test-helpers/module-log.js', import.meta.url));
const BASE = ['--host', '127.0.0.1', '--ws-port', '0', '--tcp-port', '0', '--log-format', 'json'];

/** The packages (under node_modules) the main thread loaded, from start to a clean exit. */
async function loadedPackages(args: string[], env: Record<string, string> = {}): Promise<Set<string>> {
  let cli: RunningCli | undefined;
  try {
    cli = await startCli(['serve', ...BASE, ...args], { env, nodeArgs: ['--import', MODULE_LOG] });
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    assert.equal(code, 0, cli.stderr());
    const line = cli
      .stderr()
      .split('\n')
      .find((l) => l.startsWith('MODULES '));
    assert.ok(line !== undefined, `no module list on stderr: ${cli.stderr()}`);
    const packages = new Set<string>();
    for (const m of JSON.parse(line.slice('MODULES '.length)) as string[]) {
      const p = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m)?.[1];
      if (p !== undefined) packages.add(p);
    }
    return packages;
  } finally {
    cli?.kill();
  }
}

const OPTIONAL = ['@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-http', 'jose', 'yaml', 'ws', 'selfsigned'];

describe('serve start-up footprint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echo-footprint-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('with defaults (TLS on, generated certificate) loads none of the optional libraries', { timeout: 20_000 }, async () => {
    const packages = await loadedPackages([]);
    assert.ok(packages.has('prom-client') && packages.has('pino'), `the module log sees packages: ${[...packages].join(', ')}`);
    for (const p of OPTIONAL) assert.equal(packages.has(p), false, `${p} loaded at start with defaults`);
  });

  test('loads each optional library once its feature is configured', { timeout: 20_000 }, async () => {
    const file = join(dir, 'echo.yaml');
    writeFileSync(file, 'instance: footprint\n');
    const packages = await loadedPackages(['--insecure', '--config', file, '--auth', 'jwt', '--jwt-secret', 'x'.repeat(32)], {
      // Nothing listens there; no span is made, so nothing is sent.
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
    });
    for (const p of ['@opentelemetry/sdk-trace-base', '@opentelemetry/exporter-trace-otlp-http', 'jose', 'yaml'])
      assert.equal(packages.has(p), true, `${p} not loaded although configured`);
  });
});
