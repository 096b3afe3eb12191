/**
 * Issue 14 (what a hostile tester got through), over real sockets: TLS renegotiation refused,
 * the admin port's request-head deadline, deeply nested metadata headers, replay ids that are
 * not strings and RFC 3339 `ts`, the TLS 1.2 cipher list, hardening headers on every HTTP
 * response, JWT connections closed when their token expires (and extended by a fresh hello),
 * the reason of auth failures in the logs (never the credential), and the open-file limit
 * warning.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { SignJWT } from 'jose';
import { connectV1, createEchoServer, type V1Client } from '../../src/index.js';
import { attachLogging, createLogger } from '../../src/observability/logger.js';
import { encodeBody, encodeFrame, V1Opcode } from '../../src/protocol/v1.js';
import { RawSocket } from '../../test-helpers/raw.js';
import {
  httpGet,
  nextClose,
  nextWsMessage,
  openWs,
  refusedUpgradeStatus,
  startServer,
  wsClosed,
  type StartedServer,
} from '../../test-helpers/server.js';
import { connectTls, startTlsServer, TlsV1, type TlsServer } from '../../test-helpers/tls.js';

const JWT_SECRET = 'a-jwt-secret-of-at-least-32-bytes-long!!';
const secret = new TextEncoder().encode(JWT_SECRET);
const nowSec = (): number => Math.floor(Date.now() / 1000);

function jwt(sub: string, exp: number, iat = nowSec()): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt(iat).setExpirationTime(exp).sign(secret);
}

/** Fails when `p` has not settled within `ms` (a bound on a wait for an event, not a sleep). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const closeOf = (c: V1Client): Promise<{ code: number; reason: string }> =>
  once(c, 'close').then(([info]) => info as { code: number; reason: string });

/** Asks for a TLS renegotiation; resolves 'completed' or 'refused' (error, or the server closed). */
function renegotiate(socket: TLSSocket): Promise<'completed' | 'refused'> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve('refused'));
    socket.on('error', () => resolve('refused'));
    const started = socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err === null ? 'completed' : 'refused'));
    if (!started) resolve('refused');
  });
}

// ---------------------------------------------------------------------------------------------
// Item 1: renegotiation

describe('TLS renegotiation', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer({ adminPort: 0 });
  });
  after(() => s.close());

  for (const listener of ['tcp', 'ws', 'admin'] as const) {
    test(`is refused on the ${listener} listener (TLS 1.2), and the socket is closed`, async () => {
      const port = listener === 'tcp' ? s.tcpPort : listener === 'ws' ? s.wsPort : (s.addr.admin?.port ?? 0);
      const socket = await connectTls(port, { ca: s.ca, maxVersion: 'TLSv1.2' });
      try {
        assert.equal(socket.getProtocol(), 'TLSv1.2');
        assert.equal(await within(renegotiate(socket), 10_000, 'renegotiation'), 'refused');
      } finally {
        socket.destroy();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Item 9: cipher suites

describe('TLS cipher suites', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer();
  });
  after(() => s.close());

  test('a TLS 1.2 CBC suite is refused', async () => {
    for (const ciphers of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384']) {
      await assert.rejects(connectTls(s.tcpPort, { ca: s.ca, maxVersion: 'TLSv1.2', ciphers }), Error, ciphers);
    }
  });

  test('TLS 1.2 with AES-GCM and ChaCha20-Poly1305, and TLS 1.3, still work', async () => {
    for (const ciphers of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      const socket = await connectTls(s.tcpPort, { ca: s.ca, maxVersion: 'TLSv1.2', ciphers });
      assert.equal(socket.getCipher().standardName.includes('CBC'), false);
      socket.destroy();
    }
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal(c.socket.getProtocol(), 'TLSv1.3');
    assert.equal((await c.roundTrip('tls 1.3')).data.toString(), 'tls 1.3');
    c.destroy();
  });

  test('tlsCiphers changes the list; an invalid list is a start-up error naming the setting', async () => {
    const only = await startTlsServer({ wsPort: null, tlsCiphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' });
    try {
      await assert.rejects(connectTls(only.tcpPort, { ca: only.ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }));
      const ok = await connectTls(only.tcpPort, { ca: only.ca, maxVersion: 'TLSv1.2' });
      assert.equal(ok.getCipher().name, 'ECDHE-ECDSA-CHACHA20-POLY1305');
      ok.destroy();
    } finally {
      await only.close();
    }
    const bad = createEchoServer({ host: '127.0.0.1', wsPort: null, tcpPort: 0, tlsCiphers: 'NOT-A-CIPHER' });
    await assert.rejects(bad.listen(), /tlsCiphers/);
  });
});

// ---------------------------------------------------------------------------------------------
// Item 5: admin port request-head deadline

test('the admin and WebSocket ports cut a request head trickled past --handshake-timeout (408)', { timeout: 20_000 }, async (t) => {
  const s = await startServer({ adminPort: 0, handshakeTimeoutMs: 300 });
  t.after(() => s.close());
  for (const port of [s.addr.admin?.port ?? 0, s.wsPort]) {
    const raw = await RawSocket.connect({ port });
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    // One byte every 100 ms: always something new, never a complete head.
    const trickle = setInterval(() => {
      if (!raw.isClosed) raw.socket.write('a');
    }, 100);
    t.after(() => clearInterval(trickle));
    await within(raw.closed, 5000, `port ${port} closing a slow request head`);
    clearInterval(trickle);
    assert.match(raw.data().toString('latin1'), /^HTTP\/1\.1 408 /);
  }
});

// ---------------------------------------------------------------------------------------------
// Item 7: nesting depth of the metadata header

describe('deeply nested metadata headers (TCP v1)', () => {
  let s: StartedServer;
  before(async () => {
    s = await startServer({ wsPort: null, maxHeaderBytes: 64512 });
  });
  after(() => s.close());

  const nested = (depth: number): Buffer => Buffer.from(`{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`);

  test('5000 nested arrays close with 1002, not 1011', async () => {
    const raw = await RawSocket.connect({ port: s.tcpPort });
    raw.socket.write(encodeFrame(V1Opcode.TEXT, Buffer.from('x'), nested(5000)));
    await raw.closed;
    const frames = raw.data();
    // The close frame: [len][0x03][code u16]...
    assert.equal(frames[4], V1Opcode.CLOSE);
    assert.equal(frames.readUInt16BE(5), 1002);
    assert.match(frames.toString('utf8', 7), /nest/);
  });

  test('depth 32 is echoed, depth 33 is refused', async () => {
    const c = await connectV1({ port: s.tcpPort });
    const echo = once(c, 'message');
    c.send('ok', JSON.parse(nested(32).toString()) as Record<string, unknown>);
    await echo;
    const closed = closeOf(c);
    c.send('too deep', JSON.parse(nested(33).toString()) as Record<string, unknown>);
    assert.equal((await within(closed, 5000, 'the close')).code, 1002);
  });
});

// ---------------------------------------------------------------------------------------------
// Item 8: replay ids and timestamps

describe('replay protection: id types and ts forms', () => {
  let s: StartedServer;
  before(async () => {
    s = await startServer({ replayWindowMs: 30_000 });
  });
  after(() => s.close());

  for (const id of [{}, [], null, true, 7]) {
    test(`an id ${JSON.stringify(id)} is refused with 1008 (TCP)`, async () => {
      const c = await connectV1({ port: s.tcpPort });
      const closed = closeOf(c);
      c.send('a', { id });
      c.send('a', { id });
      const info = await within(closed, 5000, 'the close');
      assert.deepEqual(info, { code: 1008, reason: 'replay protection: invalid id' });
    });
  }

  test('ts as an RFC 3339 string is accepted; a stale or malformed one is refused', async () => {
    const c = await connectV1({ port: s.tcpPort });
    for (const ts of [new Date().toISOString(), new Date().toISOString().replace('Z', '+00:00'), Date.now()]) {
      const echo = once(c, 'message');
      c.send('now', { ts });
      await within(echo, 5000, `the echo of ts ${String(ts)}`);
    }
    const closed = closeOf(c);
    c.send('old', { ts: new Date(Date.now() - 3_600_000).toISOString() });
    assert.deepEqual(await within(closed, 5000, 'the close'), { code: 1008, reason: 'replay protection: stale' });

    const d = await connectV1({ port: s.tcpPort });
    const closedD = closeOf(d);
    d.send('bad', { ts: 'yesterday' });
    assert.deepEqual(await within(closedD, 5000, 'the close'), { code: 1008, reason: 'replay protection: invalid ts' });
  });
});

// ---------------------------------------------------------------------------------------------
// Item 10: HTTP hardening headers

test('every HTTP response carries the hardening headers; the console CSP allows only its own origin', async (t) => {
  const s = await startServer({ tcpPort: null });
  t.after(() => s.close());
  for (const path of ['/healthz', '/readyz', '/info', '/metrics', '/nope', '/console', '/ws']) {
    const r = await httpGet(s.wsPort, path);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', path);
    assert.equal(r.headers['x-frame-options'], 'DENY', path);
    assert.equal(r.headers['referrer-policy'], 'no-referrer', path);
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors 'none'/, path);
    if (path === '/console') {
      // Its own origin, and WebSockets to its own host only (named, for browsers whose 'self'
      // does not cover ws:/wss:); never a bare ws: or wss: scheme, which allows any host.
      const connect = /connect-src ([^;]*)/.exec(csp)?.[1]?.trim().split(/\s+/) ?? [];
      assert.deepEqual(connect, ["'self'", `ws://127.0.0.1:${s.wsPort}`, `wss://127.0.0.1:${s.wsPort}`], csp);
    } else assert.match(csp, /default-src 'none'/, path);
  }
});

// ---------------------------------------------------------------------------------------------
// Items 11 and 12: JWT expiry on open connections, auth failure reasons in the logs

describe('JWT connections end with their token', () => {
  let s: StartedServer;
  before(async () => {
    s = await startServer({ auth: 'jwt', jwtSecret: JWT_SECRET, jwtClockToleranceMs: 0, jwtMaxLifetimeMs: 3_600_000 });
  });
  after(() => s.close());

  test('WebSocket: close 1008 "token expired" at exp', { timeout: 15_000 }, async () => {
    const token = await jwt('wendy', nowSec() + 2);
    const ws = await openWs(s.wsUrl(), undefined, { headers: { authorization: `Bearer ${token}` } });
    const closed = await within(wsClosed(ws), 8000, 'the expiry close');
    assert.deepEqual(closed, { code: 1008, reason: 'token expired' });
  });

  test('TCP: close 1008 at exp, unless a hello with a fresh token extended it', { timeout: 15_000 }, async () => {
    const exp = nowSec() + 2;
    const short = await connectV1({ port: s.tcpPort });
    const renewed = await connectV1({ port: s.tcpPort });
    await short.hello({ token: await jwt('tom', exp) });
    await renewed.hello({ token: await jwt('tom', exp) });
    await renewed.hello({ token: await jwt('tom', nowSec() + 600) });
    const info = await within(closeOf(short), 8000, 'the expiry close');
    assert.deepEqual(info, { code: 1008, reason: 'token expired' });
    // Same exp, same sweep: had the second hello not extended it, it would be closed too.
    const echo = once(renewed, 'message');
    renewed.send('still here');
    const [m] = (await echo) as [{ data: Buffer }];
    assert.equal(m.data.toString(), 'still here');
    await renewed.close(1000, 'bye');
  });

  test('WebSocket echo.v1: a hello with a fresh token extends the connection', { timeout: 15_000 }, async () => {
    const exp = nowSec() + 2;
    const bearer = { headers: { authorization: `Bearer ${await jwt('wes', exp)}` } };
    const short = await openWs(s.wsUrl(), 'echo.v1', bearer);
    const renewed = await openWs(s.wsUrl(), 'echo.v1', bearer);
    const reply = nextWsMessage(renewed);
    renewed.send(encodeBody(V1Opcode.HELLO, Buffer.from(JSON.stringify({ v: 1, token: await jwt('wes', nowSec() + 600) }))));
    assert.equal((await reply).data[0], V1Opcode.HELLO);
    assert.deepEqual(await within(wsClosed(short), 8000, 'the expiry close'), { code: 1008, reason: 'token expired' });
    const echo = nextWsMessage(renewed);
    renewed.send(encodeBody(V1Opcode.TEXT, Buffer.from('still here')));
    assert.equal((await echo).data.subarray(1).toString(), 'still here');
    const closed = wsClosed(renewed);
    renewed.close(1000);
    await closed;
  });

  test('a refresh hello for another identity closes with 1008', async () => {
    const c = await connectV1({ port: s.tcpPort });
    await c.hello({ token: await jwt('ann', nowSec() + 600) });
    const closed = closeOf(c);
    c.hello({ token: await jwt('mallory', nowSec() + 600) }).catch(() => undefined);
    assert.equal((await within(closed, 5000, 'the close')).code, 1008);
  });

  test('--jwt-max-lifetime refuses tokens valid for longer', async () => {
    const long = await jwt('lee', nowSec() + 7200);
    assert.equal(await refusedUpgradeStatus(`${s.wsUrl()}?token=${long}`), 401);
    const ok = await jwt('lee', nowSec() + 600);
    const ws = await openWs(`${s.wsUrl()}?token=${ok}`);
    ws.terminate();
  });
});

test('auth failures log their reason, never the credential', { timeout: 15_000 }, async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  const detach = attachLogging(createLogger({ format: 'json', destination: sink }));
  t.after(detach);
  const s = await startServer({ auth: 'jwt', jwtSecret: JWT_SECRET });
  t.after(() => s.close());

  const expired = await jwt('eve', nowSec() - 3600, nowSec() - 7200);
  const forged = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('eve')
    .setExpirationTime(nowSec() + 600)
    .sign(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!!!'));
  assert.equal(await refusedUpgradeStatus(`${s.wsUrl()}?token=${expired}`), 401);
  assert.equal(await refusedUpgradeStatus(`${s.wsUrl()}?token=${forged}`), 401);
  assert.equal(await refusedUpgradeStatus(s.wsUrl()), 401);
  const tcpClosed = nextClose((e) => e.connection.transport === 'tcp');
  const c = await connectV1({ port: s.tcpPort });
  const closed = closeOf(c);
  c.hello({ token: expired }).catch(() => undefined);
  assert.equal((await within(closed, 5000, 'the close')).code, 1008);
  // The logger subscribed to the close channel first: its line is written when this resolves.
  await within(tcpClosed, 5000, 'the server-side close');

  const text = lines.join('\n');
  for (const token of [expired, forged]) assert.equal(text.includes(token), false, 'a credential reached the log');
  const auth = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['reason'] === 'auth');
  const has = (transport: string, event: string, cause: RegExp): boolean =>
    auth.some((l) => l['transport'] === transport && l['event'] === event && cause.test(String(l['detail'])));
  const seen = auth.map((l) => `${String(l['transport'])} ${String(l['event'])}: ${String(l['detail'])}`).join(' | ');
  assert.ok(has('ws', 'connection.reject', /^unauthorized: expired/), seen);
  assert.ok(has('ws', 'connection.reject', /^unauthorized: bad signature/), seen);
  assert.ok(has('ws', 'connection.reject', /^unauthorized: missing credential/), seen);
  assert.ok(has('tcp', 'connection.close', /^unauthorized: expired/), seen);
});

// ---------------------------------------------------------------------------------------------
// Item 13: open-file limit

/** The soft open-file limit of this process (Linux), or undefined. */
function softFdLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

test('a --max-connections above the open-file limit is warned about, naming the limit to raise', async (t) => {
  const soft = softFdLimit();
  if (soft === undefined) return t.skip('no /proc/self/limits, or no limit');
  const small = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: null, insecure: true, maxConnections: 10 });
  await small.listen();
  t.after(() => small.close({ drainMs: 100 }));
  assert.equal(
    small.warnings.some((w) => /open files|LimitNOFILE/.test(w)),
    false,
  );
  const large = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: null, insecure: true, maxConnections: soft + 1 });
  await large.listen();
  t.after(() => large.close({ drainMs: 100 }));
  const w = large.warnings.find((x) => /open files/.test(x));
  assert.ok(w !== undefined, large.warnings.join(' | '));
  assert.match(w, new RegExp(`${soft}`));
  assert.match(w, /LimitNOFILE|ulimit -n/);
});
