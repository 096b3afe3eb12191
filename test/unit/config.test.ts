import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, SETTINGS, helpText, loadSettings, resolveSettings } from '../../src/config/index.js';
import { TLS_CIPHERS } from '../../src/config/schema.js';
import type { Settings } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'echo-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function writeTemp(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Asserts that `fn` throws a ConfigError for exactly `setting`, optionally matching `message`. */
function throwsConfig(fn: () => unknown, setting: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.setting, setting);
    assert.equal(err.code, 'ECHO_ERR_CONFIG');
    if (message) assert.match(err.message, message);
    return true;
  });
}

const option = <K extends keyof Settings>(name: K, value: unknown): Settings[K] => resolveSettings({ [name]: value })[name];

describe('defaults', () => {
  test('DEFAULTS has the documented values', () => {
    assert.deepEqual({ ...DEFAULTS, wsPaths: [...DEFAULTS.wsPaths] }, {
      host: '0.0.0.0',
      wsPort: 8080,
      wsPaths: ['/', '/ws'],
      tcpPort: 9000,
      tcpFraming: 'v1',
      unixPath: null,
      rawPort: null,
      insecure: false,
      instance: hostname(),
      maxConnections: 100_000,
      maxFrameBytes: 16_777_216,
      maxHeaderBytes: 4096,
      maxQueueBytes: 1_048_576,
      maxBufferedBytes: 67_108_864,
      socketIo: 'direct',
      stallTimeoutMs: 30_000,
      idleTimeoutMs: 600_000,
      keepaliveIntervalMs: 30_000,
      handshakeTimeoutMs: 10_000,
      drainTimeoutMs: 10_000,
      logLevel: 'info',
      logFormat: 'auto',
      workers: 1,
      metrics: true,
      console: true,
      adminPort: null,
      traceSampleRatio: 0.01,
      tlsCert: null,
      tlsKey: null,
      tlsCa: null,
      tlsClientAuth: 'none',
      tlsHostnames: [],
      auth: 'none',
      authTokensFile: null,
      authTokens: null,
      authQueryParam: 'token',
      jwtSecret: null,
      jwtPublicKey: null,
      jwtJwksUrl: null,
      jwtAudience: null,
      jwtIssuer: null,
      jwtClockToleranceMs: 30_000,
      allowedOrigins: null,
      rateMessages: 0,
      rateBytes: 0,
      clientRateMessages: 0,
      clientRateBytes: 0,
      rateBurstMs: 1000,
      rateCeiling: 0,
      maxConnectionsPerClient: 0,
      maxClients: 100_000,
      replayWindowMs: null,
      replayMaxEntries: 10_000,
      workerId: null,
      trustedProxies: [],
      httpEchoPath: '/echo',
      maxDelayMs: 30_000,
      faultInjection: false,
      tlsCiphers: TLS_CIPHERS,
      jwtMaxLifetimeMs: 0,
    } satisfies Settings);
  });

  test('resolveSettings() and an empty command line give the defaults', () => {
    assert.deepEqual(resolveSettings(), DEFAULTS);
    assert.deepEqual(resolveSettings({ host: undefined }), DEFAULTS);
    const cli = loadSettings([], {});
    assert.equal(cli.command, 'serve');
    assert.deepEqual(cli.rest, []);
    assert.equal(cli.configPath, undefined);
    assert.deepEqual(cli.settings, DEFAULTS);
  });

  test('one row per setting, unique flags and env vars derived from the flag', () => {
    assert.deepEqual(SETTINGS.map((d) => d.name).sort(), Object.keys(DEFAULTS).sort());
    assert.equal(new Set(SETTINGS.map((d) => d.flag)).size, SETTINGS.length);
    assert.equal(new Set(SETTINGS.map((d) => d.env)).size, SETTINGS.length);
    const envOf = (name: string): string | undefined => SETTINGS.find((d) => d.name === name)?.env;
    assert.equal(envOf('host'), 'ECHO_HOST');
    assert.equal(envOf('wsPort'), 'ECHO_WS_PORT');
    assert.equal(envOf('wsPaths'), 'ECHO_WS_PATH');
    assert.equal(envOf('instance'), 'ECHO_INSTANCE');
    assert.equal(envOf('maxFrameBytes'), 'ECHO_MAX_FRAME_BYTES');
    for (const d of SETTINGS) assert.ok(d.doc.length > 10, `${d.name} has doc text`);
  });
});

describe('value syntax', () => {
  test('durations: plain milliseconds and ms/s/m/h suffixes, decimals, any case', () => {
    const ok: Array<[unknown, number]> = [
      ['250', 250],
      [250, 250],
      ['0', 0],
      ['500ms', 500],
      ['30s', 30_000],
      ['5m', 300_000],
      ['1h', 3_600_000],
      ['1.5s', 1500],
      ['1.005s', 1005],
      ['0.57s', 570],
      ['0.5m', 30_000],
      ['2S', 2000],
      ['10MS', 10],
      [' 7s ', 7000],
      ['2.0', 2],
    ];
    for (const [raw, ms] of ok) assert.equal(option('idleTimeoutMs', raw), ms, `idleTimeoutMs ${String(raw)}`);
    const bad: unknown[] = ['-5', '-1s', '10x', '5 m', 's', '', '1.5', '0.0005s', '1e3', NaN, Infinity, 1.5, true, null, 2 ** 31, '25d'];
    for (const raw of bad) throwsConfig(() => option('idleTimeoutMs', raw), 'idleTimeoutMs', /must be a duration/);
    throwsConfig(() => option('handshakeTimeoutMs', 0), 'handshakeTimeoutMs', /from 1 to 2147483647 ms/);
  });

  test('sizes: plain bytes, KiB/MiB/GiB (1024) and kb/mb/gb (1000), any case', () => {
    const ok: Array<[unknown, number]> = [
      ['4096', 4096],
      [4096, 4096],
      ['1b', 1],
      ['64KiB', 65_536],
      ['64kib', 65_536],
      ['1MiB', 1_048_576],
      ['1mib', 1_048_576],
      ['1GiB', 2 ** 30],
      ['4kb', 4000],
      ['4KB', 4000],
      ['1mb', 1_000_000],
      ['1GB', 1e9],
      ['1.5KiB', 1536],
      ['0.57kb', 570],
      ['0.29mb', 290_000],
    ];
    for (const [raw, bytes] of ok) assert.equal(option('maxFrameBytes', raw), bytes, `maxFrameBytes ${String(raw)}`);
    const bad: unknown[] = ['10x', '-1', '0', 0, '2GiB', '1.1KiB', '1 MiB', 'KiB', '1k', '', 1.5, NaN, null, [1]];
    for (const raw of bad) throwsConfig(() => option('maxFrameBytes', raw), 'maxFrameBytes', /must be a size/);
    assert.equal(option('maxHeaderBytes', '63KiB'), 64_512);
    throwsConfig(() => option('maxHeaderBytes', '64KiB'), 'maxHeaderBytes', /from 2 to 64512 bytes/);
    throwsConfig(() => option('maxQueueBytes', '1000'), 'maxQueueBytes', /from 1024 to/);
    assert.equal(option('maxQueueBytes', '1KiB'), 1024);
  });

  test("ports: 0..65535, 'off'/'none'/'false' and null switch the listener off", () => {
    assert.equal(option('wsPort', '0'), 0);
    assert.equal(option('wsPort', '65535'), 65_535);
    assert.equal(option('tcpPort', 1234), 1234);
    for (const off of ['off', 'none', 'false', 'OFF', null, false]) assert.equal(option('tcpPort', off), null);
    assert.equal(option('rawPort', '7'), 7);
    throwsConfig(() => option('wsPort', '70000'), 'wsPort', /^wsPort: must be an integer from 0 to 65535 or 'off', got '70000'$/);
    for (const raw of ['-1', '80.5', '0x50', '', 'http', 80.5, true, '1e3']) {
      throwsConfig(() => option('wsPort', raw), 'wsPort', /must be an integer from 0 to 65535/);
    }
  });

  test('integers, booleans, enums, lists, strings and paths', () => {
    assert.equal(option('workers', '64'), 64);
    throwsConfig(() => option('workers', '65'), 'workers', /from 1 to 64, got '65'/);
    throwsConfig(() => option('workers', 0), 'workers', /from 1 to 64/);
    throwsConfig(() => option('maxConnections', '0'), 'maxConnections', /from 1 to/);
    for (const t of [true, 'true', '1', 'yes', 'on', 'TRUE']) assert.equal(option('insecure', t), true, String(t));
    for (const f of [false, 'false', '0', 'no', 'off']) assert.equal(option('insecure', f), false, String(f));
    throwsConfig(() => option('insecure', 'maybe'), 'insecure', /true or false/);
    throwsConfig(() => option('insecure', 1), 'insecure', /true or false/);
    assert.equal(option('logLevel', 'DEBUG'), 'debug');
    assert.equal(option('tcpFraming', 'len'), 'len');
    throwsConfig(() => option('logLevel', 'loud'), 'logLevel', /one of trace, debug, info/);
    throwsConfig(() => option('logFormat', 'xml'), 'logFormat', /one of auto, json, pretty/);
    assert.deepEqual(option('wsPaths', '/a, /b,'), ['/a', '/b']);
    assert.deepEqual(option('wsPaths', ['/x']), ['/x']);
    throwsConfig(() => option('wsPaths', '/a,b'), 'wsPaths', /must start with '\/'/);
    throwsConfig(() => option('wsPaths', ','), 'wsPaths', /non-empty list/);
    throwsConfig(() => option('wsPaths', [1]), 'wsPaths', /list of strings/);
    assert.equal(option('host', ' ::1 '), '::1');
    throwsConfig(() => option('host', ''), 'host', /non-empty string/);
    throwsConfig(() => option('instance', 42), 'instance', /non-empty string/);
    assert.equal(option('unixPath', '/tmp/echo.sock'), '/tmp/echo.sock');
    assert.equal(option('unixPath', 'off'), null);
    throwsConfig(() => option('unixPath', `/tmp/${'x'.repeat(120)}.sock`), 'unixPath', /at most \d+ bytes/);
  });
});

describe('sources and precedence', () => {
  test('flags > env > file > defaults, with a JSON file', () => {
    const file = writeTemp('prec.json', JSON.stringify({ wsPort: 1111, logLevel: 'debug', maxFrameBytes: '64KiB', workers: 2 }));
    const env = { ECHO_WS_PORT: '2222', ECHO_LOG_LEVEL: 'warn' };
    const { settings, configPath } = loadSettings(['--config', file, '--ws-port', '3333'], env);
    assert.equal(configPath, file);
    assert.equal(settings.wsPort, 3333); // flag beats env and file
    assert.equal(settings.logLevel, 'warn'); // env beats file
    assert.equal(settings.maxFrameBytes, 65_536); // file beats default
    assert.equal(settings.workers, 2);
    assert.equal(settings.tcpPort, DEFAULTS.tcpPort); // default when nobody sets it
    assert.equal(loadSettings(['--config', file], env).settings.wsPort, 2222);
    assert.equal(loadSettings(['--config', file], {}).settings.wsPort, 1111);
  });

  test('YAML files (.yaml and .yml), ECHO_CONFIG, and relative paths against cwd', () => {
    const yaml = 'wsPort: off\nwsPaths: [/echo, /ws]\nstallTimeoutMs: 5s\ninsecure: yes\nunixPath: ~\n';
    writeTemp('c.yaml', yaml);
    const yml = writeTemp('c.yml', 'tcpFraming: len\nidleTimeoutMs: 1m\n');
    const a = loadSettings(['--config=c.yaml'], {}, { cwd: dir });
    assert.equal(a.configPath, join(dir, 'c.yaml'));
    assert.equal(a.settings.wsPort, null);
    assert.deepEqual(a.settings.wsPaths, ['/echo', '/ws']);
    assert.equal(a.settings.stallTimeoutMs, 5000);
    assert.equal(a.settings.insecure, true);
    assert.equal(a.settings.unixPath, null);
    const b = loadSettings([], { ECHO_CONFIG: yml });
    assert.equal(b.settings.tcpFraming, 'len');
    assert.equal(b.settings.idleTimeoutMs, 60_000);
    // --config beats ECHO_CONFIG
    assert.equal(loadSettings(['--config', 'c.yaml'], { ECHO_CONFIG: yml }, { cwd: dir }).settings.tcpFraming, 'v1');
    // an empty file sets nothing
    assert.deepEqual(loadSettings(['--config', writeTemp('empty.yaml', '')], {}).settings, DEFAULTS);
  });

  test('env vars use the string syntax; empty ones count as unset', () => {
    const env = { ECHO_WS_PATH: '/a,/b', ECHO_INSECURE: '1', ECHO_IDLE_TIMEOUT: '2m', ECHO_HOST: '', ECHO_RAW_PORT: '7' };
    const s = loadSettings([], env).settings;
    assert.deepEqual(s.wsPaths, ['/a', '/b']);
    assert.equal(s.insecure, true);
    assert.equal(s.idleTimeoutMs, 120_000);
    assert.equal(s.host, '0.0.0.0');
    assert.equal(s.rawPort, 7);
  });

  test('command line: command word, rest, --, booleans, repeated lists', () => {
    const p = loadSettings(['--insecure', 'probe', 'ws://x', '--max-frame-bytes=4kb', '--', '--not-a-flag'], {});
    assert.equal(p.command, 'probe');
    assert.deepEqual(p.rest, ['ws://x', '--not-a-flag']);
    assert.equal(p.settings.insecure, true);
    assert.equal(p.settings.maxFrameBytes, 4000);
    assert.equal(loadSettings(['--no-insecure'], { ECHO_INSECURE: 'true' }).settings.insecure, false);
    assert.equal(loadSettings(['--insecure=false'], {}).settings.insecure, false);
    assert.deepEqual(loadSettings(['--ws-path', '/a', '--ws-path=/b,/c'], {}).settings.wsPaths, ['/a', '/b', '/c']);
    assert.equal(loadSettings(['--ws-port', '1', '--ws-port', '2'], {}).settings.wsPort, 2);
    assert.equal(loadSettings(['--unix', '/tmp/e.sock', 'serve'], {}).settings.unixPath, '/tmp/e.sock');
  });

  test('--help/-h and --version/-v win, even next to invalid settings', () => {
    assert.equal(loadSettings(['serve', '--help'], {}).command, 'help');
    assert.equal(loadSettings(['-h'], {}).command, 'help');
    assert.equal(loadSettings(['--version'], {}).command, 'version');
    assert.equal(loadSettings(['-v'], {}).command, 'version');
    const broken = loadSettings(['--bogus', '-h'], { ECHO_WS_PORT: 'x' });
    assert.equal(broken.command, 'help');
    assert.deepEqual(broken.settings, DEFAULTS);
  });
});

describe('errors name the setting', () => {
  test('unknown flag, unknown option, unknown file key', () => {
    throwsConfig(() => loadSettings(['--bogus', '1'], {}), '--bogus', /unknown flag/);
    throwsConfig(() => loadSettings(['--ws-prot=1'], {}), '--ws-prot', /unknown flag/);
    throwsConfig(() => loadSettings(['-x'], {}), '-x', /unknown flag/);
    throwsConfig(() => loadSettings(['--no-host'], {}), '--no-host', /unknown flag/);
    throwsConfig(() => resolveSettings({ wsport: 1 } as Record<string, unknown>), 'wsport', /unknown option/);
    const json = writeTemp('unknown.json', '{"wsPort": 1, "maxFrameByte": 10}');
    throwsConfig(() => loadSettings(['--config', json], {}), `${json}: maxFrameByte`, /unknown setting/);
    const yaml = writeTemp('unknown.yaml', 'max_frame_bytes: 10\n');
    throwsConfig(() => loadSettings(['--config', yaml], {}), `${yaml}: max_frame_bytes`, /unknown setting/);
  });

  test('a bad value names the flag, env var, file key or option it came from', () => {
    throwsConfig(() => loadSettings(['--max-frame-bytes', '10x'], {}), '--max-frame-bytes', /got '10x'/);
    throwsConfig(() => loadSettings([], { ECHO_MAX_FRAME_BYTES: '10x' }), 'ECHO_MAX_FRAME_BYTES', /got '10x'/);
    const file = writeTemp('bad.yaml', 'maxFrameBytes: 10x\n');
    throwsConfig(() => loadSettings(['--config', file], {}), `${file}: maxFrameBytes`, /got '10x'/);
    throwsConfig(() => resolveSettings({ maxFrameBytes: '10x' }), 'maxFrameBytes', /got '10x'/);
    // every layer is checked, even one a higher layer overrides
    throwsConfig(() => loadSettings(['--ws-port', '1'], { ECHO_WS_PORT: 'x' }), 'ECHO_WS_PORT');
  });

  test('missing values and broken config files', () => {
    throwsConfig(() => loadSettings(['--ws-port'], {}), '--ws-port', /missing value/);
    throwsConfig(() => loadSettings(['--host', '--insecure'], {}), '--host', /missing value/);
    throwsConfig(() => loadSettings(['--config'], {}), '--config', /missing value/);
    throwsConfig(() => loadSettings(['--no-insecure=yes'], {}), '--no-insecure', /takes no value/);
    throwsConfig(() => loadSettings(['--config', join(dir, 'nope.json')], {}), '--config', /cannot read .*ENOENT/);
    throwsConfig(() => loadSettings([], { ECHO_CONFIG: writeTemp('c.toml', '') }), 'ECHO_CONFIG', /\.json, \.yaml or \.yml/);
    const badJson = writeTemp('broken.json', '{"wsPort": ');
    throwsConfig(() => loadSettings(['--config', badJson], {}), badJson, /invalid JSON/);
    const badYaml = writeTemp('broken.yaml', 'wsPort: 1\nwsPort: 2\n');
    throwsConfig(() => loadSettings(['--config', badYaml], {}), badYaml, /invalid YAML/);
    const list = writeTemp('list.json', '[1, 2]');
    throwsConfig(() => loadSettings(['--config', list], {}), list, /mapping/);
  });
});

describe('frozen result', () => {
  test('settings, wsPaths, DEFAULTS and SETTINGS cannot be changed', () => {
    const s = resolveSettings({ wsPaths: ['/a'] });
    for (const obj of [s, s.wsPaths, DEFAULTS, DEFAULTS.wsPaths, SETTINGS, SETTINGS[0]]) assert.ok(Object.isFrozen(obj));
    assert.throws(() => {
      (s as Settings).wsPort = 1;
    }, TypeError);
    assert.throws(() => (s.wsPaths as string[]).push('/b'), TypeError);
    const cli = loadSettings(['--ws-path', '/x'], {}).settings;
    assert.ok(Object.isFrozen(cli) && Object.isFrozen(cli.wsPaths));
    // resolving never aliases or mutates the shared defaults
    assert.deepEqual([...DEFAULTS.wsPaths], ['/', '/ws']);
    assert.notEqual(resolveSettings().wsPaths, SETTINGS.find((d) => d.name === 'wsPaths')?.default);
  });
});

describe('helpText', () => {
  test('mentions every flag with its env var, default and unit, plus commands, precedence and exit codes', () => {
    const text = helpText();
    for (const d of SETTINGS) {
      assert.ok(text.includes(`  ${d.flag}`), `help lists ${d.flag}`);
      assert.ok(text.includes(`env ${d.env}`), `help lists ${d.env}`);
      assert.ok(text.includes(d.doc), `help has the doc of ${d.flag}`);
    }
    for (const word of ['--config', 'ECHO_CONFIG', 'serve', 'probe', '--no-insecure', '--help', '--version']) {
      assert.ok(text.includes(word), `help mentions ${word}`);
    }
    assert.match(text, /^Usage: /);
    assert.match(text, /default 1048576 bytes \(1 MiB\)/);
    assert.match(text, /default 30000 ms \(30s\)/);
    assert.match(text, /default the host name/);
    assert.match(text, /flags > ECHO_\* environment variables > config file > defaults/);
    assert.match(text, /0 ok, 1 runtime error, 2 invalid settings/);
  });
});
