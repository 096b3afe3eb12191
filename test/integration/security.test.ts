/**
 * Security over real sockets (issue 4, "How it is checked"), part 1: TLS by default (wss and
 * TLS-TCP), mTLS with a test CA, token and JWT authentication (WebSocket 401, TCP hello 1008),
 * the origin allow-list, replay protection, slowloris on the upgrade, the TLS handshake and the
 * hello, and certificate reload. Rate and connection limits and EMFILE: security-limits.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { encodeBody, parseBody, V1Opcode } from '../../src/protocol/v1.js';
import {
  connectTls,
  httpsGetJson,
  makeCa,
  makeClientCert,
  makeServerCert,
  openWss,
  startTlsServer,
  TlsV1,
  wssClosed,
  wssRefusal,
  wssRoundTrip,
  type Pem,
  type TlsServer,
} from '../../test-helpers/tls.js';

const TOKEN_ALICE = 'alice-0123456789abcdefghijkl';
const TOKEN_BOB = 'bob-0123456789abcdefghijklmn';
const JWT_SECRET = 'a-jwt-secret-of-at-least-32-bytes-long!!';

/** Connections of `server` with this identity. */
const withIdentity = (s: TlsServer, identity: string, transport?: string) =>
  [...s.server.connections].filter((c) => c.identity === identity && (transport === undefined || c.transport === transport));

/** Closes a `ws` client and waits for the close. */
async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = once(ws, 'close');
  ws.close();
  await closed;
}

/**
 * True when the server refuses this TLS client: the handshake fails, or (TLS 1.3: the client's
 * handshake completes before the server has checked its certificate) the connection closes
 * without echoing a message sent right away.
 */
async function tlsRefused(port: number, options: Parameters<typeof connectTls>[1]): Promise<boolean> {
  let c: TlsV1;
  try {
    c = await TlsV1.connect(port, options);
  } catch {
    return true;
  }
  c.client.send('should not be echoed');
  await c.closed;
  return c.messages.length === 0;
}

// ---------------------------------------------------------------------------------------------

describe('TLS by default (generated certificate)', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer();
  });
  after(() => s.close());

  test('wss echo with the generated certificate trusted as CA', async () => {
    assert.equal(s.server.tls?.selfSigned, true);
    assert.match(s.addr.ws?.url ?? '', /^wss:\/\//);
    const ws = await openWss(s.wssUrl(), { ca: s.ca });
    assert.equal((await wssRoundTrip(ws, 'over wss')).toString(), 'over wss');
    await closeWs(ws);
  });

  test('TLS-TCP framing v1 echo; the peer certificate is the one the server reports', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal(c.socket.authorized, true);
    assert.equal(c.socket.getPeerCertificate().fingerprint256, s.server.tls?.fingerprint256);
    const hello = await c.hello();
    assert.equal(hello['ok'], true);
    const echo = await c.roundTrip('over tls-tcp');
    assert.equal(echo.data.toString(), 'over tls-tcp');
    assert.equal(echo.kind, 'text');
    await c.client.close();
  });

  test('a client that does not trust the certificate fails with a certificate error', async () => {
    await assert.rejects(connectTls(s.tcpPort, {}), (e: NodeJS.ErrnoException) => e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
    await assert.rejects(openWss(s.wssUrl()), (e: NodeJS.ErrnoException) => e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  test('a plaintext client on the TLS port gets no echo', async () => {
    const socket = net.connect(s.tcpPort, '127.0.0.1');
    await once(socket, 'connect');
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('error', () => undefined);
    socket.write(Buffer.from('\x00\x00\x00\x06\x01plain', 'latin1'));
    await once(socket, 'close');
    assert.ok(!Buffer.concat(got).includes('plain'), 'plaintext must not be echoed');
  });

  test('TLS 1.1 is refused by the server (TLS 1.2 with the same client options works)', async () => {
    // SECLEVEL=0: the client itself would not offer TLS 1.1 otherwise; the refusal must be the server's.
    const old = { ca: s.ca, minVersion: 'TLSv1.1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT@SECLEVEL=0' };
    await assert.rejects(connectTls(s.tcpPort, old), (e: NodeJS.ErrnoException) =>
      /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/i.test(`${e.code ?? ''} ${e.message}`),
    );
    await assert.rejects(connectTls(s.wsPort, old), (e: NodeJS.ErrnoException) =>
      /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/i.test(`${e.code ?? ''} ${e.message}`),
    );
    const ok = await connectTls(s.tcpPort, { ...old, maxVersion: 'TLSv1.2' });
    assert.equal(ok.getProtocol(), 'TLSv1.2');
    ok.destroy();
  });

  test('the WebSocket listener negotiates ALPN http/1.1', async () => {
    const socket = await connectTls(s.wsPort, { ca: s.ca, ALPNProtocols: ['http/1.1'] });
    assert.equal(socket.alpnProtocol, 'http/1.1');
    socket.destroy();
  });

  test('/info reports TLS and the certificate fingerprint', async () => {
    const info = await httpsGetJson(s.wsPort, '/info', s.ca);
    const security = info['security'] as Record<string, unknown>;
    assert.equal(security['tls'], true);
    assert.equal(security['certificateSha256'], s.server.tls?.fingerprint256);
    assert.match(String(security['certificateSha256']), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test('default origin policy without mTLS: any Origin is accepted', async () => {
    const ws = await openWss(s.wssUrl(), { ca: s.ca, origin: 'https://evil.example' });
    assert.equal((await wssRoundTrip(ws, 'x')).toString(), 'x');
    await closeWs(ws);
  });
});

// ---------------------------------------------------------------------------------------------

describe('mTLS (tlsClientAuth require, test CA)', () => {
  let s: TlsServer;
  let ca: Pem;
  let alice: Pem;
  let stranger: Pem;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-mtls-'));
    ca = await makeCa('Echo Test CA');
    const serverCert = await makeServerCert('localhost', ca);
    alice = await makeClientCert('alice', ca);
    stranger = await makeClientCert('mallory', await makeCa('Another CA'));
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(join(dir, 'server.crt'), serverCert.cert);
    await writeFile(join(dir, 'server.key'), serverCert.key, { mode: 0o600 });
    s = await startTlsServer(
      { tlsCa: join(dir, 'ca.pem'), tlsCert: join(dir, 'server.crt'), tlsKey: join(dir, 'server.key'), tlsClientAuth: 'require' },
      ca.cert,
    );
  });
  after(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a valid client certificate: TCP echo, identity in the hello reply, connections and /info', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca, cert: alice.cert, key: alice.key });
    const hello = await c.hello();
    assert.equal(hello['ok'], true);
    assert.equal(hello['identity'], 'alice');
    assert.equal((await c.roundTrip('mtls')).data.toString(), 'mtls');
    assert.equal(withIdentity(s, 'alice', 'tcp').length, 1);
    const info = await httpsGetJson(s.wsPort, '/info', s.ca, { cert: alice.cert, key: alice.key });
    const byIdentity = (info['connections'] as { byIdentity: Record<string, number> }).byIdentity;
    assert.equal(byIdentity['alice'], 1);
    assert.equal((info['security'] as Record<string, unknown>)['clientAuth'], 'require');
    await c.client.close();
  });

  test('a valid client certificate over wss: echo and identity', async () => {
    const ws = await openWss(s.wssUrl(), { ca: s.ca, cert: alice.cert, key: alice.key });
    assert.equal((await wssRoundTrip(ws, 'mtls ws')).toString(), 'mtls ws');
    assert.equal(withIdentity(s, 'alice', 'ws').length, 1);
    await closeWs(ws);
  });

  test('no client certificate: refused (TCP and wss)', async () => {
    assert.equal(await tlsRefused(s.tcpPort, { ca: s.ca }), true);
    await assert.rejects(openWss(s.wssUrl(), { ca: s.ca }));
  });

  test('a certificate from another CA: refused (TCP and wss)', async () => {
    assert.equal(await tlsRefused(s.tcpPort, { ca: s.ca, cert: stranger.cert, key: stranger.key }), true);
    await assert.rejects(openWss(s.wssUrl(), { ca: s.ca, cert: stranger.cert, key: stranger.key }));
    assert.equal(withIdentity(s, 'mallory').length, 0);
  });

  test('with mTLS and no allow-list, only the server’s own origins may upgrade', async () => {
    const opts = { ca: s.ca, cert: alice.cert, key: alice.key };
    assert.equal((await wssRefusal(s.wssUrl(), { ...opts, origin: 'https://evil.example' })).status, 403);
    const ws = await openWss(s.wssUrl(), { ...opts, origin: `https://localhost:${s.wsPort}` });
    await closeWs(ws);
    const noOrigin = await openWss(s.wssUrl(), opts);
    await closeWs(noOrigin);
  });
});

// ---------------------------------------------------------------------------------------------

describe('token authentication', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer({ auth: 'token', authTokens: `alice:${TOKEN_ALICE},bob:${TOKEN_BOB}`, handshakeTimeoutMs: 300 });
  });
  after(() => s.close());

  test('WebSocket with Authorization: Bearer: echo, identity alice', async () => {
    const ws = await openWss(s.wssUrl(), { ca: s.ca, headers: { Authorization: `Bearer ${TOKEN_ALICE}` } });
    assert.equal((await wssRoundTrip(ws, 'authed')).toString(), 'authed');
    assert.equal(withIdentity(s, 'alice', 'ws').length, 1);
    await closeWs(ws);
  });

  test('WebSocket with the ?token= query parameter: echo, identity bob', async () => {
    const ws = await openWss(s.wssUrl(`/?token=${TOKEN_BOB}`), { ca: s.ca });
    assert.equal((await wssRoundTrip(ws, 'query')).toString(), 'query');
    assert.equal(withIdentity(s, 'bob', 'ws').length, 1);
    await closeWs(ws);
  });

  test('WebSocket with a wrong or missing token: 401 with WWW-Authenticate, same answer for both', async () => {
    const wrong = await wssRefusal(s.wssUrl(), { ca: s.ca, headers: { Authorization: `Bearer ${TOKEN_ALICE}x` } });
    const wrongQuery = await wssRefusal(s.wssUrl('/?token=not-a-token-at-all-0123456789'), { ca: s.ca });
    const missing = await wssRefusal(s.wssUrl(), { ca: s.ca });
    for (const r of [wrong, wrongQuery, missing]) {
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /^Bearer/);
    }
    // Nothing tells a wrong token from a missing one.
    assert.equal(wrong.body, missing.body);
    assert.equal(wrongQuery.body, missing.body);
    assert.ok(!wrong.body.includes(TOKEN_ALICE));
  });

  test('TCP: hello with a valid token, then echo; identity in the reply and on the connection', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    const hello = await c.hello({ token: TOKEN_ALICE });
    assert.equal(hello['ok'], true);
    assert.equal(hello['identity'], 'alice');
    assert.equal(typeof hello['conn'], 'string');
    assert.equal((await c.roundTrip('after hello')).data.toString(), 'after hello');
    assert.equal(withIdentity(s, 'alice', 'tcp').length, 1);
    await c.client.close();
  });

  test('TCP: frames right behind the hello (same write) are held and echoed after it', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    const hello = c.hello({ token: TOKEN_BOB });
    c.client.send('one');
    c.client.send('two');
    assert.equal((await hello)['identity'], 'bob');
    const [a, b] = await c.waitMessages(2);
    assert.deepEqual([a?.data.toString(), b?.data.toString()], ['one', 'two']);
    await c.client.close();
  });

  test('TCP: wrong or missing token → close 1008 "unauthorized", the same reason for every failure', async () => {
    const reasons: string[] = [];
    for (const fields of [
      { token: `${TOKEN_ALICE}x` },
      { token: TOKEN_ALICE.slice(0, -1) },
      {},
      { token: 42 },
      { token: 'eyJhbGciOiJIUzI1NiJ9.e30.x' },
    ]) {
      const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
      void c.hello(fields).catch(() => undefined);
      const { code, reason } = await c.closed;
      assert.equal(code, 1008, JSON.stringify(fields));
      assert.equal(c.messages.length, 0);
      reasons.push(reason);
    }
    assert.deepEqual(new Set(reasons), new Set(['unauthorized']));
  });

  test('TCP: data before the hello → close 1008, nothing echoed', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    c.client.send('sneaky');
    const { code } = await c.closed;
    assert.equal(code, 1008);
    assert.equal(c.messages.length, 0);
  });

  test('slowloris on the hello: closed with 1008 at the timeout while an authenticated client is served', async () => {
    const good = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    await good.hello({ token: TOKEN_ALICE });
    const slow = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    let slowClosed = false;
    const slowClose = slow.closed.then((info) => {
      slowClosed = true;
      return info;
    });
    // Keep the good client busy until the silent one has been cut (bounded).
    let served = 0;
    while (!slowClosed && served < 200_000) {
      assert.equal((await good.roundTrip(`m${served}`)).data.toString(), `m${served}`);
      served++;
    }
    const { code } = await slowClose;
    assert.equal(code, 1008);
    assert.equal(slow.messages.length, 0);
    assert.ok(served > 0, 'the good client was served while the slow one waited');
    assert.equal((await good.roundTrip('still here')).data.toString(), 'still here');
    await good.client.close();
  });
});

// ---------------------------------------------------------------------------------------------

describe('JWT authentication (HS256, audience, issuer)', () => {
  let s: TlsServer;
  const key = new TextEncoder().encode(JWT_SECRET);
  const now = (): number => Math.floor(Date.now() / 1000);
  const sign = (claims: { sub?: string; aud?: string; iss?: string; exp?: number }, secret = key): Promise<string> => {
    let jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now() - 60);
    if (claims.sub !== undefined) jwt = jwt.setSubject(claims.sub);
    if (claims.aud !== undefined) jwt = jwt.setAudience(claims.aud);
    if (claims.iss !== undefined) jwt = jwt.setIssuer(claims.iss);
    if (claims.exp !== undefined) jwt = jwt.setExpirationTime(claims.exp);
    return jwt.sign(secret);
  };
  const good = { sub: 'carol', aud: 'echo', iss: 'https://idp.test', exp: now() + 300 };

  before(async () => {
    s = await startTlsServer({ auth: 'jwt', jwtSecret: JWT_SECRET, jwtAudience: ['echo'], jwtIssuer: ['https://idp.test'] });
  });
  after(() => s.close());

  test('a good token: wss echo with identity = sub; TCP hello identity = sub', async () => {
    const token = await sign(good);
    const ws = await openWss(s.wssUrl(), { ca: s.ca, headers: { Authorization: `Bearer ${token}` } });
    assert.equal((await wssRoundTrip(ws, 'jwt')).toString(), 'jwt');
    assert.equal(withIdentity(s, 'carol', 'ws').length, 1);
    await closeWs(ws);
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal((await c.hello({ token }))['identity'], 'carol');
    assert.equal((await c.roundTrip('jwt tcp')).data.toString(), 'jwt tcp');
    await c.client.close();
  });

  test('expired, wrong audience, wrong issuer, wrong key, no exp, missing → 401 with the same body', async () => {
    const tokens = [
      await sign({ ...good, exp: now() - 600 }),
      await sign({ ...good, aud: 'another-service' }),
      await sign({ ...good, iss: 'https://evil.test' }),
      await sign(good, new TextEncoder().encode('another-secret-that-is-32-bytes-long!!')),
      await sign({ sub: good.sub, aud: good.aud, iss: good.iss }),
    ];
    const missing = await wssRefusal(s.wssUrl(), { ca: s.ca });
    assert.equal(missing.status, 401);
    for (const token of tokens) {
      const r = await wssRefusal(s.wssUrl(), { ca: s.ca, headers: { Authorization: `Bearer ${token}` } });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), /^Bearer/);
      assert.equal(r.body, missing.body);
    }
    // The same on TCP: 1008 "unauthorized".
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    void c.hello({ token: tokens[0] }).catch(() => undefined);
    assert.deepEqual(await c.closed, { code: 1008, reason: 'unauthorized' });
  });
});

// ---------------------------------------------------------------------------------------------

describe('origin allow-list', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer({ allowedOrigins: ['https://app.example'] });
  });
  after(() => s.close());

  test('a forbidden origin gets 403; the allowed one and no Origin (non-browser) are accepted', async () => {
    const r = await wssRefusal(s.wssUrl(), { ca: s.ca, origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    const allowed = await openWss(s.wssUrl(), { ca: s.ca, origin: 'https://app.example' });
    assert.equal((await wssRoundTrip(allowed, 'ok')).toString(), 'ok');
    await closeWs(allowed);
    const none = await openWss(s.wssUrl(), { ca: s.ca });
    assert.equal((await wssRoundTrip(none, 'ok')).toString(), 'ok');
    await closeWs(none);
    // `Origin: null` (sandboxed frames) only matches '*'.
    assert.equal((await wssRefusal(s.wssUrl(), { ca: s.ca, origin: 'null' })).status, 403);
  });
});

// ---------------------------------------------------------------------------------------------

describe('replay protection (replayWindowMs 30 s)', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer({ replayWindowMs: 30_000 });
  });
  after(() => s.close());

  test('TCP: a fresh id is echoed; the same id again → 1008 duplicate, also on a new connection', async () => {
    const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    const echo = await c.roundTrip('first', { id: 'm1', ts: Date.now() });
    assert.equal(echo.data.toString(), 'first');
    assert.equal(echo.header?.['id'], 'm1');
    assert.equal((await c.roundTrip('no header')).data.toString(), 'no header');
    c.client.send('again', { id: 'm1', ts: Date.now() });
    assert.deepEqual(await c.closed, { code: 1008, reason: 'replay protection: duplicate' });
    assert.equal(c.messages.length, 2);
    // Anonymous clients cannot be told apart (one NAT, one Unix socket): their ids are per
    // connection, so another client's first message with the same id is echoed (issue 9).
    const c2 = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal((await c2.roundTrip('another client', { id: 'm1' })).data.toString(), 'another client');
    await c2.client.close();
  });

  test('an identified client cannot replay an id by reconnecting', async () => {
    const authed = await startTlsServer({ replayWindowMs: 30_000, auth: 'token', authTokens: `alice:${TOKEN_ALICE}` });
    try {
      const c = await TlsV1.connect(authed.tcpPort, { ca: authed.ca });
      await c.hello({ token: TOKEN_ALICE });
      assert.equal((await c.roundTrip('first', { id: 'r1' })).data.toString(), 'first');
      await c.client.close();
      const c2 = await TlsV1.connect(authed.tcpPort, { ca: authed.ca });
      await c2.hello({ token: TOKEN_ALICE });
      c2.client.send('again', { id: 'r1' });
      assert.deepEqual(await c2.closed, { code: 1008, reason: 'replay protection: duplicate' });
    } finally {
      await authed.close();
    }
  });

  test('TCP: a ts 10 minutes old → 1008 stale; 10 minutes ahead → 1008 future', async () => {
    const old = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    old.client.send('old', { id: 'm-old', ts: Date.now() - 600_000 });
    assert.deepEqual(await old.closed, { code: 1008, reason: 'replay protection: stale' });
    assert.equal(old.messages.length, 0);
    const ahead = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    ahead.client.send('ahead', { ts: Date.now() + 600_000 });
    assert.deepEqual(await ahead.closed, { code: 1008, reason: 'replay protection: future' });
  });

  test('WebSocket echo.v1: a fresh id is echoed, the same id again → 1008 duplicate', async () => {
    const ws = await openWss(s.wssUrl(), { ca: s.ca }, 'echo.v1');
    assert.equal(ws.protocol, 'echo.v1');
    const body = (id: string, text: string): Buffer =>
      encodeBody(V1Opcode.TEXT, Buffer.from(text), Buffer.from(JSON.stringify({ id, ts: Date.now() })));
    const reply = await wssRoundTrip(ws, body('w1', 'over ws'));
    const p = parseBody(reply, 0, reply.length, { maxFrameBytes: 1 << 20, maxHeaderBytes: 65535 });
    assert.equal(p.opcode, V1Opcode.TEXT);
    assert.equal(reply.subarray(p.payloadStart).toString(), 'over ws');
    assert.equal(JSON.parse(reply.subarray(p.headerStart, p.headerEnd).toString())['id'], 'w1');
    const closed = wssClosed(ws);
    ws.send(body('w1', 'replayed'));
    assert.deepEqual(await closed, { code: 1008, reason: 'replay protection: duplicate' });
  });

  test('the id table is capped: when full of live ids, new ids are refused (1008 overflow)', async () => {
    const small = await startTlsServer({ replayWindowMs: 30_000, replayMaxEntries: 3 });
    try {
      const c = await TlsV1.connect(small.tcpPort, { ca: small.ca });
      for (const id of ['c1', 'c2', 'c3']) assert.equal((await c.roundTrip(id, { id })).data.toString(), id);
      c.client.send('c4', { id: 'c4' });
      assert.deepEqual(await c.closed, { code: 1008, reason: 'replay protection: overflow' });
    } finally {
      await small.close();
    }
  });

  test('one client filling its replay table does not refuse another client (per-client cap)', async () => {
    // docs/SECURITY.md and src/security/replay.ts: the cap is per client, so a client that
    // sends ids too fast "only refuses itself".
    const small = await startTlsServer({
      replayWindowMs: 30_000,
      replayMaxEntries: 3,
      auth: 'token',
      authTokens: `alice:${TOKEN_ALICE},bob:${TOKEN_BOB}`,
    });
    try {
      const a = await TlsV1.connect(small.tcpPort, { ca: small.ca });
      await a.hello({ token: TOKEN_ALICE });
      for (const id of ['a1', 'a2', 'a3']) await a.roundTrip(id, { id });
      const b = await TlsV1.connect(small.tcpPort, { ca: small.ca });
      await b.hello({ token: TOKEN_BOB });
      const bClosed = b.closed.then((info) => info);
      b.client.send('b1', { id: 'b1' });
      const first = await Promise.race([
        b.waitMessages(1).then(() => 'echoed'),
        bClosed.then((info) => `closed ${info.code} ${info.reason}`),
      ]);
      assert.equal(first, 'echoed');
      await a.client.close();
      await b.client.close();
    } finally {
      await small.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('slowloris on the upgrade and on the TLS handshake (handshakeTimeoutMs 500)', () => {
  let s: TlsServer;
  before(async () => {
    s = await startTlsServer({ handshakeTimeoutMs: 500 });
  });
  after(() => s.close());

  test('half an upgrade request is closed at the timeout while another client is served', async () => {
    const slow = await connectTls(s.wsPort, { ca: s.ca });
    slow.on('error', () => undefined);
    const answer: Buffer[] = [];
    slow.on('data', (d: Buffer) => answer.push(d));
    let slowClosed = false;
    const closed = once(slow, 'close').then(() => {
      slowClosed = true;
    });
    slow.write('GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n');
    const ws = await openWss(s.wssUrl(), { ca: s.ca });
    let served = 0;
    while (!slowClosed && served < 200_000) {
      assert.equal((await wssRoundTrip(ws, `m${served}`)).toString(), `m${served}`);
      served++;
    }
    await closed;
    assert.ok(served > 0);
    assert.ok(!Buffer.concat(answer).toString('latin1').startsWith('HTTP/1.1 101'), 'never upgraded');
    assert.equal((await wssRoundTrip(ws, 'after')).toString(), 'after');
    await closeWs(ws);
  });

  test('a TCP connection that never starts the TLS handshake is closed at the timeout', async () => {
    for (const [name, port] of [
      ['tcp', s.tcpPort],
      ['ws', s.wsPort],
    ] as const) {
      const silent = net.connect(port, '127.0.0.1');
      silent.on('error', () => undefined);
      await once(silent, 'connect');
      const c = await TlsV1.connect(s.tcpPort, { ca: s.ca });
      assert.equal((await c.roundTrip('meanwhile')).data.toString(), 'meanwhile');
      // Guard only (not synchronisation): a server that never closes it must fail the test, not hang it.
      const ac = new AbortController();
      const outcome = await Promise.race([
        once(silent, 'close').then(() => 'closed'),
        delay(10 * 500, 'still open 10 × handshakeTimeoutMs later', { signal: ac.signal }).catch(() => 'aborted'),
      ]);
      ac.abort();
      silent.destroy();
      assert.equal(outcome, 'closed', `${name} listener`);
      assert.equal((await c.roundTrip('after')).data.toString(), 'after');
      await c.client.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('certificate reload (tlsCert / tlsKey files)', () => {
  let s: TlsServer;
  let ca: Pem;
  let dir: string;
  let first: TlsV1;
  const certFile = (): string => join(dir, 'tls.crt');
  const keyFile = (): string => join(dir, 'tls.key');
  /** Replaces both files by rename (what editors and cert-manager do). */
  const install = async (pem: Pem): Promise<void> => {
    await writeFile(join(dir, 'tls.crt.tmp'), pem.cert);
    await writeFile(join(dir, 'tls.key.tmp'), pem.key, { mode: 0o600 });
    await rename(join(dir, 'tls.key.tmp'), keyFile());
    await rename(join(dir, 'tls.crt.tmp'), certFile());
  };
  const fingerprintOf = (pem: Pem): string => new X509Certificate(pem.cert).fingerprint256;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-reload-'));
    ca = await makeCa('Reload CA');
    await install(await makeServerCert('cert-a', ca));
    s = await startTlsServer({ tlsCert: certFile(), tlsKey: keyFile() }, ca.cert);
    first = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal(first.socket.getPeerCertificate().fingerprint256, s.server.tls?.fingerprint256);
    assert.equal(s.server.tls?.selfSigned, false);
  });
  after(async () => {
    first.destroy();
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('reloadTls(): new handshakes get certificate B; the open connection keeps echoing', async () => {
    const b = await makeServerCert('cert-b', ca);
    const before = s.server.tls?.fingerprint256;
    await install(b);
    await s.server.reloadTls();
    assert.notEqual(s.server.tls?.fingerprint256, before);
    assert.equal(s.server.tls?.fingerprint256, fingerprintOf(b));
    assert.equal((await first.roundTrip('still open')).data.toString(), 'still open');
    const fresh = await TlsV1.connect(s.tcpPort, { ca: s.ca });
    assert.equal(fresh.socket.getPeerCertificate().fingerprint256, fingerprintOf(b));
    await fresh.client.close();
    // The HTTPS/WebSocket listener swapped too.
    const wsSide = await connectTls(s.wsPort, { ca: s.ca });
    assert.equal(wsSide.getPeerCertificate().fingerprint256, fingerprintOf(b));
    wsSide.destroy();
  });

  test('the file watcher swaps in certificate C without a call; the open connection keeps echoing', async () => {
    const c = await makeServerCert('cert-c', ca);
    const want = fingerprintOf(c);
    await install(c);
    // Bounded wait for the watcher (500 ms debounce): poll the condition, at most ~10 s.
    for (let i = 0; i < 400 && s.server.tls?.fingerprint256 !== want; i++) await delay(25);
    assert.equal(s.server.tls?.fingerprint256, want);
    assert.equal((await first.roundTrip('survived two reloads')).data.toString(), 'survived two reloads');
    const fresh = await connectTls(s.tcpPort, { ca: s.ca });
    assert.equal(fresh.getPeerCertificate().fingerprint256, want);
    fresh.destroy();
  });
});
