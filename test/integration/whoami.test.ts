/**
 * `GET /whoami` and the HTTP request echo (issue 12) over real sockets: what the server saw,
 * redaction of credentials, trusted and untrusted forwarded chains, TLS and mTLS fields, JWT
 * claims, Kubernetes placement, authentication like an upgrade, the body cap, and that the
 * existing routes keep their behaviour.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { request, requestJson } from '../../test-helpers/http.js';
import { startServer, type StartedServer } from '../../test-helpers/server.js';
import { makeCa, makeClientCert, makeServerCert, startTlsServer, type Pem, type TlsServer } from '../../test-helpers/tls.js';

const TOKEN = 'alice-0123456789abcdefghijkl';
const COOKIE = 'session=cookie-secret-7f3a9';
const PROXY_AUTH = 'Basic cHJveHktc2VjcmV0LTQ0';
const JWT_SECRET = 'a-jwt-secret-of-at-least-32-bytes-long!!';

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => v as Json;

describe('/whoami and /echo without authentication', () => {
  let s: StartedServer;
  const env = { POD_NAME: process.env['POD_NAME'], POD_NAMESPACE: process.env['POD_NAMESPACE'], NODE_NAME: process.env['NODE_NAME'] };
  before(async () => {
    // The server reads the downward-API variables when it is created.
    process.env['POD_NAME'] = 'echo-7d9f-abcde';
    process.env['POD_NAMESPACE'] = 'debug';
    process.env['NODE_NAME'] = 'node-3';
    s = await startServer({ maxFrameBytes: 1024 });
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  after(() => s.close());

  test('shows the peer, the request line and headers, placement, no TLS, anonymous', async () => {
    const { status, json } = await requestJson(s.wsPort, { path: '/whoami?x=1', headers: { 'x-custom': 'hello' } });
    assert.equal(status, 200);
    const remote = obj(json['remote']);
    assert.equal(remote['address'], '127.0.0.1');
    assert.equal(typeof remote['port'], 'number');
    const req = obj(json['request']);
    assert.equal(req['method'], 'GET');
    assert.equal(req['url'], '/whoami?x=1');
    assert.equal(obj(req['headers'])['x-custom'], 'hello');
    assert.equal(json['instance'], 'test');
    assert.equal(json['worker'], null);
    assert.deepEqual(json['kubernetes'], { pod: 'echo-7d9f-abcde', namespace: 'debug', node: 'node-3' });
    assert.equal(json['tls'], null);
    assert.deepEqual(json['auth'], { mode: 'none', identity: null, claims: null });
    const fwd = obj(json['forwarded']);
    assert.equal(fwd['header'], null);
    assert.equal(fwd['client'], '127.0.0.1');
  });

  test('credentials never come back: Authorization, Proxy-Authorization, Cookie, the token parameter', async () => {
    const headers = { authorization: `Bearer ${TOKEN}`, cookie: COOKIE, 'proxy-authorization': PROXY_AUTH };
    const who = await requestJson(s.wsPort, { path: `/whoami?token=${TOKEN}&keep=1`, headers });
    const echo = await requestJson(s.wsPort, { method: 'POST', path: `/echo?token=${TOKEN}&keep=1`, headers, body: 'hi' });
    for (const r of [who, echo]) {
      assert.equal(r.status, 200);
      for (const secret of [TOKEN, 'cookie-secret', 'cHJveHktc2VjcmV0']) assert.ok(!r.body.includes(secret), `leaks ${secret}: ${r.body}`);
    }
    const h = obj(obj(who.json['request'])['headers']);
    assert.equal(h['authorization'], '[REDACTED]');
    assert.equal(h['cookie'], '[REDACTED]');
    assert.equal(h['proxy-authorization'], '[REDACTED]');
    assert.equal(obj(who.json['request'])['url'], '/whoami?token=[REDACTED]&keep=1');
    assert.deepEqual(echo.json['query'], { token: '[REDACTED]', keep: '1' });
    assert.equal(obj(echo.json['headers'])['cookie'], '[REDACTED]');
  });

  test('an untrusted peer: the forwarded chain is shown as client-supplied and not believed', async () => {
    const { json } = await requestJson(s.wsPort, { path: '/whoami', headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.2' } });
    const fwd = obj(json['forwarded']);
    assert.equal(fwd['header'], 'x-forwarded-for');
    assert.equal(fwd['peerTrusted'], false);
    assert.equal(fwd['clientSupplied'], true);
    assert.equal(fwd['client'], '127.0.0.1');
    assert.deepEqual(fwd['hops'], [{ for: '203.0.113.7' }, { for: '10.0.0.2' }]);
  });

  test('request echo: any method, query, text body, binary body as base64, instance', async () => {
    const text = await request(s.wsPort, { method: 'PUT', path: '/echo/', body: 'x' });
    assert.equal(text.status, 405, 'the echo path is exact: /echo/ is another path');
    const put = await requestJson(s.wsPort, { method: 'PUT', path: '/echo?a=1&a=2&b=%C3%A9', body: 'héllo' });
    assert.equal(put.status, 200);
    assert.equal(put.json['method'], 'PUT');
    assert.equal(put.json['path'], '/echo');
    assert.deepEqual(put.json['query'], { a: ['1', '2'], b: 'é' });
    assert.equal(put.json['body'], 'héllo');
    assert.equal(put.json['bodyEncoding'], 'utf8');
    assert.equal(put.json['bodyBytes'], 6);
    assert.equal(put.json['instance'], 'test');
    const bin = Buffer.from([0xff, 0x00, 0xc3, 0x28]);
    const post = await requestJson(s.wsPort, { method: 'POST', path: '/echo', body: bin });
    assert.equal(post.json['bodyEncoding'], 'base64');
    assert.deepEqual(Buffer.from(post.json['body'] as string, 'base64'), bin);
    for (const method of ['GET', 'DELETE', 'PATCH', 'OPTIONS']) {
      const r = await requestJson(s.wsPort, { method, path: '/echo' });
      assert.equal(r.status, 200, method);
      assert.equal(r.json['method'], method);
      assert.equal(r.json['body'], '');
    }
  });

  test('request echo: a body over the frame limit gets 413, declared or streamed', async () => {
    const declared = await request(s.wsPort, { method: 'POST', path: '/echo', body: Buffer.alloc(1025, 0x61) });
    assert.equal(declared.status, 413);
    assert.match(declared.body, /frame limit \(1024 bytes\)/);
    const streamed = await request(s.wsPort, { method: 'POST', path: '/echo', chunks: [Buffer.alloc(600, 0x61), Buffer.alloc(600, 0x62)] });
    assert.equal(streamed.status, 413);
    const exact = await requestJson(s.wsPort, { method: 'POST', path: '/echo', body: Buffer.alloc(1024, 0x61) });
    assert.equal(exact.status, 200);
    assert.equal(exact.json['bodyBytes'], 1024);
  });

  test('existing routes are unchanged: WebSocket paths hint 426, other methods 405, unknown 404', async () => {
    assert.equal((await request(s.wsPort, { path: '/ws' })).status, 426);
    assert.equal((await request(s.wsPort, { path: '/' })).status, 426);
    assert.equal((await request(s.wsPort, { method: 'POST', path: '/healthz' })).status, 405);
    assert.equal((await request(s.wsPort, { method: 'POST', path: '/whoami' })).status, 405);
    assert.equal((await request(s.wsPort, { path: '/nope' })).status, 404);
    assert.equal((await request(s.wsPort, { path: '/healthz' })).status, 200);
  });
});

describe('--http-echo-path and --trusted-proxies', () => {
  test('the echo path moves or turns off; routes refuse to be shadowed', async (t) => {
    const moved = await startServer({ httpEchoPath: '/debug/echo' });
    t.after(() => moved.close());
    assert.equal((await request(moved.wsPort, { path: '/echo' })).status, 404);
    assert.equal((await requestJson(moved.wsPort, { method: 'POST', path: '/debug/echo', body: 'x' })).json['body'], 'x');
    const off = await startServer({ httpEchoPath: 'off' });
    t.after(() => off.close());
    assert.equal((await request(off.wsPort, { method: 'POST', path: '/echo' })).status, 405);
    await assert.rejects(startServer({ httpEchoPath: '/healthz' }), /httpEchoPath: \/healthz is already served/);
    await assert.rejects(startServer({ trustedProxies: ['10.0.0.0/8', 'proxy.local'] }), /trustedProxies: 'proxy.local' is not an IP/);
  });

  test('a trusted peer: the client is the rightmost hop that is not a trusted proxy', async (t) => {
    const s = await startServer({ trustedProxies: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'] });
    t.after(() => s.close());
    // 6.6.6.6 was typed by the client; 203.0.113.7 was appended by our proxy 10.1.2.3.
    const xff = await requestJson(s.wsPort, { path: '/whoami', headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.7, 10.1.2.3' } });
    const f1 = obj(xff.json['forwarded']);
    assert.equal(f1['peerTrusted'], true);
    assert.equal(f1['clientSupplied'], false);
    assert.equal(f1['client'], '203.0.113.7');
    assert.equal(f1['clientSource'], 'x-forwarded-for');
    const std = await requestJson(s.wsPort, {
      path: '/whoami',
      headers: { forwarded: 'for="[2001:db8::7]:4711";proto=https, for="[fd00::3]"' },
    });
    const f2 = obj(std.json['forwarded']);
    assert.equal(f2['header'], 'forwarded');
    assert.equal(f2['client'], '2001:db8::7');
    assert.deepEqual(f2['hops'], [{ for: '2001:db8::7', port: '4711', proto: 'https' }, { for: 'fd00::3' }]);
  });
});

describe('/whoami and /echo with token authentication', () => {
  let s: StartedServer;
  before(async () => {
    s = await startServer({ auth: 'token', authTokens: `alice:${TOKEN}`, tcpPort: null });
  });
  after(() => s.close());

  test('without credentials: 401 with a Bearer challenge, like an upgrade', async () => {
    for (const spec of [
      { path: '/whoami' },
      { method: 'POST', path: '/echo', body: 'x' },
      { path: '/whoami?token=wrong-0123456789abcdef' },
    ]) {
      const r = await request(s.wsPort, spec);
      assert.equal(r.status, 401, spec.path);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
    }
    assert.equal((await request(s.wsPort, { path: '/healthz' })).status, 200, 'probes stay open');
  });

  test('with the token (header or query): the identity, never the token', async () => {
    const h = await requestJson(s.wsPort, { path: '/whoami', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(h.status, 200);
    assert.deepEqual(h.json['auth'], { mode: 'token', identity: 'alice', claims: null });
    const q = await requestJson(s.wsPort, { path: `/whoami?token=${TOKEN}` });
    assert.equal(obj(q.json['auth'])['identity'], 'alice');
    const e = await requestJson(s.wsPort, { method: 'POST', path: `/echo?token=${TOKEN}`, body: 'ok' });
    assert.equal(e.status, 200);
    for (const r of [h, q, e]) assert.ok(!r.body.includes(TOKEN));
  });
});

describe('/whoami with JWT authentication', () => {
  test('returns the verified claims and the subject, never the token', async (t) => {
    const s = await startServer({ auth: 'jwt', jwtSecret: JWT_SECRET, jwtAudience: ['echo'], tcpPort: null });
    t.after(() => s.close());
    const jwt = await new SignJWT({ role: 'debugger', tenant: 't-42' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('carol')
      .setAudience('echo')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(JWT_SECRET));
    const r = await requestJson(s.wsPort, { path: '/whoami', headers: { authorization: `Bearer ${jwt}` } });
    assert.equal(r.status, 200);
    const auth = obj(r.json['auth']);
    assert.equal(auth['mode'], 'jwt');
    assert.equal(auth['identity'], 'carol');
    const claims = obj(auth['claims']);
    assert.equal(claims['sub'], 'carol');
    assert.equal(claims['role'], 'debugger');
    assert.equal(claims['tenant'], 't-42');
    assert.equal(claims['aud'], 'echo');
    assert.equal(typeof claims['exp'], 'number');
    for (const part of jwt.split('.')) assert.ok(!r.body.includes(part), 'no part of the token comes back');
  });
});

describe('/whoami over TLS and mTLS', () => {
  let s: TlsServer;
  let ca: Pem;
  let alice: Pem;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-whoami-'));
    ca = await makeCa('Whoami Test CA');
    const serverCert = await makeServerCert('localhost', ca);
    alice = await makeClientCert('alice', ca);
    await writeFile(join(dir, 'ca.pem'), ca.cert);
    await writeFile(join(dir, 'server.crt'), serverCert.cert);
    await writeFile(join(dir, 'server.key'), serverCert.key, { mode: 0o600 });
    s = await startTlsServer(
      {
        tlsCa: join(dir, 'ca.pem'),
        tlsCert: join(dir, 'server.crt'),
        tlsKey: join(dir, 'server.key'),
        tlsClientAuth: 'optional',
        tcpPort: null,
      },
      ca.cert,
    );
  });
  after(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('TLS: version, cipher, SNI and ALPN; no client certificate', async () => {
    const r = await requestJson(s.wsPort, { path: '/whoami', tls: { ca: s.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] } });
    assert.equal(r.status, 200);
    const t = obj(r.json['tls']);
    assert.match(t['version'] as string, /^TLSv1\.[23]$/);
    assert.equal(typeof t['cipher'], 'string');
    assert.ok((t['cipher'] as string).length > 0);
    assert.equal(t['sni'], 'localhost');
    assert.equal(t['alpn'], 'http/1.1');
    assert.equal(t['clientCertificate'], null);
    assert.equal(obj(r.json['auth'])['identity'], null);
  });

  test('mTLS: the client certificate subject and SHA-256 fingerprint, and the identity', async () => {
    const r = await requestJson(s.wsPort, { path: '/whoami', tls: { ca: s.ca, cert: alice.cert, key: alice.key } });
    assert.equal(r.status, 200);
    const cert = obj(obj(r.json['tls'])['clientCertificate']);
    assert.equal(cert['subject'], 'CN=alice');
    assert.equal(cert['issuer'], 'CN=Whoami Test CA');
    assert.equal(cert['fingerprint256'], new X509Certificate(alice.cert).fingerprint256);
    assert.equal(cert['authorized'], true);
    assert.equal(cert['authorizationError'], null);
    assert.equal(obj(r.json['auth'])['identity'], 'alice');
  });
});
