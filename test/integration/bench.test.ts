// `echoserver bench URL`: the load generator against the real server over every transport,
// its verification failing against a corrupting server, --rate, --html, and usage errors.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createEchoServer, type EchoServer, type ServerAddresses } from '../../src/index.js';
import { runCli } from '../../test-helpers/cli.js';
import { startMisbehavingServer, type MisbehavingServer } from '../../test-helpers/misbehaving-server.js';

/** The fields of `--json` these tests read. */
interface Result {
  url: string;
  connected: number;
  sent: number;
  echoed: number;
  messagesPerS: number;
  rate: number | null;
  latencyFrom: string;
  latencyMs: { p50: number; p90: number; p99: number; max: number; count: number };
  connectMs: { count: number };
  errors: { total: number; counts: Record<string, number>; samples: Record<string, string> };
  timeline: { t: number; messagesPerS: number }[];
  percentiles: { percentile: number; ms: number }[];
}

/** Short runs: about one second each, so the file stays quick on a busy 2-core machine. */
const SHORT = ['--duration', '600ms', '--warmup', '200ms', '--json'];

async function bench(args: string[], expectCode = 0): Promise<Result> {
  const r = await runCli(['bench', ...args, ...SHORT], { killAfterMs: 30_000 });
  assert.equal(r.code, expectCode, `bench ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout.slice(0, 2000)}`);
  return JSON.parse(r.stdout) as Result;
}

/** Everything sent was echoed and verified, with nothing else going wrong. */
function addsUp(r: Result, connections: number): void {
  assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
  assert.equal(r.connected, connections);
  assert.ok(r.sent > 0, 'messages were sent');
  assert.equal(r.echoed, r.sent, 'sent = echoed');
  assert.equal(r.latencyMs.count, r.echoed, 'one latency sample per echo');
  assert.equal(r.connectMs.count, connections, 'one connect time per connection');
  assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max);
  assert.ok(r.timeline.length >= 1 && r.percentiles.length > 1);
}

describe('echoserver bench', () => {
  let plain: EchoServer;
  let secure: EchoServer;
  let lenServer: EchoServer;
  let authed: EchoServer;
  let corrupting: MisbehavingServer;
  let stalling: MisbehavingServer;
  let p: ServerAddresses;
  let s: ServerAddresses;
  let l: ServerAddresses;
  let a: ServerAddresses;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-bench-'));
    plain = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0, insecure: true, unixPath: join(dir, 'echo.sock') });
    secure = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: 0 }); // TLS, self-signed
    lenServer = createEchoServer({ host: '127.0.0.1', wsPort: null, tcpPort: 0, insecure: true, tcpFraming: 'len' });
    authed = createEchoServer({
      host: '127.0.0.1',
      wsPort: 0,
      tcpPort: 0,
      insecure: true,
      auth: 'token',
      authTokens: 'bench:s3cret-bench-token-42',
    });
    [p, s, l, a, corrupting, stalling] = await Promise.all([
      plain.listen(),
      secure.listen(),
      lenServer.listen(),
      authed.listen(),
      startMisbehavingServer({ corruptEvery: 25 }),
      startMisbehavingServer({ stallAfter: 60, stallMs: 300 }),
    ]);
  });
  after(async () => {
    // Optional chaining: a failed before() must still close what it started.
    await Promise.all([
      plain?.close({ drainMs: 500 }),
      secure?.close({ drainMs: 500 }),
      lenServer?.close({ drainMs: 500 }),
      authed?.close({ drainMs: 500 }),
      corrupting?.close(),
      stalling?.close(),
    ]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('ws:// adds up with either WebSocket client: sent = echoed, every echo verified, exit 0', async () => {
    const r = await bench([`ws://127.0.0.1:${p.ws?.port}/`, '--connections', '4', '--window', '4']);
    addsUp(r, 4);
    assert.equal(r.rate, null);
    assert.equal(r.latencyFrom, 'send');
    // The same over the `ws` package client instead of our own frame codec (the default).
    addsUp(await bench([`ws://127.0.0.1:${p.ws?.port}/`, '--connections', '2', '--window', '4', '--ws-client', 'ws']), 2);
  });

  it('tcp:// (v1) over two threads and unix: add up', async () => {
    addsUp(await bench([`tcp://127.0.0.1:${p.tcp?.port}`, '--connections', '4', '--window', '8', '--threads', '2']), 4);
    addsUp(await bench([`unix:${p.unix?.path}`, '--connections', '2', '--size', '4KiB']), 2);
  });

  it('tcp:// with --framing len adds up against a len listener', async () => {
    addsUp(await bench([`tcp://127.0.0.1:${l.tcp?.port}`, '--framing', 'len', '--connections', '2', '--window', '4']), 2);
  });

  it('tls:// with the pinned fingerprint and wss:// with --insecure add up; a wrong pin is a connect error', async () => {
    const pin = secure.tls?.fingerprint256;
    assert.ok(pin !== undefined);
    addsUp(await bench([`tls://127.0.0.1:${s.tcp?.port}`, '--fingerprint', pin, '--connections', '2']), 2);
    addsUp(await bench([`wss://127.0.0.1:${s.ws?.port}/`, '--insecure', '--connections', '2']), 2);
    const wrong = pin.replace(/^../, pin.startsWith('00') ? '11' : '00');
    const refused = await bench([`tls://127.0.0.1:${s.tcp?.port}`, '--fingerprint', wrong, '--connections', '2'], 1);
    assert.equal(refused.connected, 0);
    assert.equal(refused.errors.counts['connect'], 2);
    assert.match(refused.errors.samples['connect'] ?? '', /does not match the pinned/);
  });

  it('a server that flips a byte is caught: mismatches counted, exit 1', async () => {
    const r = await bench([`tcp://127.0.0.1:${corrupting.port}`, '--framing', 'len', '--connections', '2', '--window', '4'], 1);
    const mismatches = r.errors.counts['mismatch'] ?? 0;
    assert.ok(mismatches > 0, JSON.stringify(r.errors));
    assert.match(r.errors.samples['mismatch'] ?? '', /byte 63 is/, 'the flipped byte is named');
    // Every sent message is accounted for: verified, or counted as a mismatch.
    assert.ok(r.echoed + mismatches >= r.sent, `echoed ${r.echoed} + mismatches ${mismatches} < sent ${r.sent}`);
    assert.ok(r.echoed < r.sent);
  });

  it('--rate sends at the fixed rate and measures from the intended send time', async () => {
    const r = await bench([`tcp://127.0.0.1:${p.tcp?.port}`, '--rate', '500', '--connections', '2', '--window', '4']);
    addsUp(r, 2);
    assert.equal(r.rate, 500);
    assert.equal(r.latencyFrom, 'intended');
    // 0.6 s at 500 msg/s: 300 messages were due in the measured window (a tick may hold the last few).
    assert.ok(r.sent >= 280 && r.sent <= 300, `sent ${r.sent}`);
  });

  it('--rate corrects for coordinated omission: a 300 ms stall shows in every message due during it', async () => {
    // 200 msg/s on one connection with one message in flight: about 60 messages fall due while
    // the server holds one echo for 300 ms. Measured from the actual send only that one would be
    // slow (p90 well under 1 ms); measured from the intended send the waiting ones are slow too.
    const r = await bench([`tcp://127.0.0.1:${stalling.port}`, '--framing', 'len', '--rate', '200', '--connections', '1']);
    addsUp(r, 1);
    assert.ok(r.latencyMs.max >= 250, `max ${r.latencyMs.max} ms`);
    assert.ok(r.latencyMs.p90 >= 100, `p90 ${r.latencyMs.p90} ms: the messages that waited behind the stall count`);
  });

  it('--token authenticates on ws:// (Bearer) and tcp:// (hello); a wrong token is an auth error', async () => {
    addsUp(await bench([`ws://127.0.0.1:${a.ws?.port}/`, '--token', 's3cret-bench-token-42', '--connections', '2']), 2);
    addsUp(await bench([`tcp://127.0.0.1:${a.tcp?.port}`, '--token', 's3cret-bench-token-42', '--connections', '2']), 2);
    for (const url of [`ws://127.0.0.1:${a.ws?.port}/`, `tcp://127.0.0.1:${a.tcp?.port}`]) {
      const r = await bench([url, '--token', 'wrong', '--connections', '2'], 1);
      assert.equal(r.connected, 0);
      assert.equal(r.errors.counts['auth'], 2, `${url}: ${JSON.stringify(r.errors)}`);
    }
  });

  it('--html writes a self-contained report that carries its data', async () => {
    const file = join(dir, 'report.html');
    const r = await bench([`ws://127.0.0.1:${p.ws?.port}/`, '--connections', '2', '--html', file]);
    const html = await readFile(file, 'utf8');
    const m = /<script type="application\/json" id="bench-data">([^<]*)<\/script>/.exec(html);
    assert.ok(m?.[1] !== undefined, 'the data element is present');
    const data = JSON.parse(m[1]) as Result;
    assert.equal(data.echoed, r.echoed);
    assert.deepEqual(data.latencyMs, r.latencyMs);
    assert.equal((html.match(/<svg /g) ?? []).length, 3, 'latency over time, throughput, percentiles');
    assert.doesNotMatch(html, /<script src|https?:\/\/(?!www\.w3\.org)/, 'nothing is loaded from elsewhere');
  });

  it('bad flags exit 2 with one line; --help exits 0', async () => {
    const url = `tcp://127.0.0.1:${p.tcp?.port}`;
    const cases: [string[], RegExp][] = [
      [[], /needs a URL/],
      [['http://127.0.0.1:1/'], /scheme 'http:' is not supported/],
      [[url, '--connections', '0'], /--connections must be an integer from 1/],
      [[url, '--size', 'big'], /--size must be a size/],
      [[url, '--window', '-1'], /--window/],
      [[url, '--rate', '0'], /--rate must be/],
      [[url, '--duration', '5x'], /--duration must be a duration/],
      [[url, '--threads', '3', '--connections', '2'], /--threads \(3\) must not exceed --connections/],
      [[url, '--framing', 'xml'], /--framing must be v1 or len/],
      [[url, '--fingerprint', 'abc'], /--fingerprint must be a SHA-256/],
      [[url, '--insecure'], /TLS options need a wss:\/\/ or tls:\/\/ URL/],
      [['tls://127.0.0.1:1', '--ca', join(dir, 'missing.pem')], /--ca: cannot read .*ENOENT/],
      [[url, '--nope'], /Unknown option '--nope'/],
      [[url, '--ws-client', 'ws'], /--ws-client needs a ws:\/\/ or wss:\/\/ URL/],
    ];
    for (const [args, re] of cases) {
      const r = await runCli(['bench', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /^echoserver bench: [^\n]+\n$/, `one line: ${JSON.stringify(r.stderr)}`);
      assert.equal(r.stdout, '');
    }
    const help = await runCli(['bench', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: echoserver bench URL/);
  });
});
