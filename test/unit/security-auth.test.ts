import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, base64url } from 'jose';
import { ConfigError } from '../../src/errors.js';
import {
  MAX_CREDENTIAL_BYTES,
  authHttpError,
  authProtocolError,
  createAuthenticator,
  extractBearer,
  loadTokens,
  parseTokens,
  redactUrl,
  type AuthFailure,
  type AuthResult,
} from '../../src/security/auth.js';

const NOW_S = 1_700_000_000;
const now = (): number => NOW_S * 1000;
const SECRET = 'this-is-a-test-secret-of-32-bytes!!';
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdef';

function assertRefused(r: AuthResult, secretsThatMustNotLeak: readonly string[] = [], cause?: AuthFailure): string {
  assert.equal(r.ok, false);
  if (r.ok) return '';
  assert.equal(r.reason, 'unauthorized');
  if (cause !== undefined) assert.equal(r.cause, cause, r.detail);
  for (const s of secretsThatMustNotLeak) assert.ok(!r.detail.includes(s), `detail leaks: ${r.detail}`);
  return r.detail;
}

// ------------------------------------------------------------------ extractBearer / redactUrl

test('extractBearer: header, case-insensitive scheme, query fallback', () => {
  assert.equal(extractBearer('Bearer abc.def-ghi_~+/=='), 'abc.def-ghi_~+/==');
  assert.equal(extractBearer('bearer   abc'), 'abc');
  assert.equal(extractBearer('Basic dXNlcjpwdw=='), undefined);
  assert.equal(extractBearer('Bearer'), undefined);
  assert.equal(extractBearer('Bearer a b'), undefined);
  assert.equal(extractBearer('Bearer a"b'), undefined);
  assert.equal(extractBearer(undefined, '/ws?token=q1'), 'q1');
  assert.equal(extractBearer(undefined, '/ws?access=q1', 'access'), 'q1');
  assert.equal(extractBearer('Bearer h1', '/ws?token=q1'), 'h1');
  assert.equal(extractBearer(undefined, '/ws?token=a&token=b'), undefined); // ambiguous
  assert.equal(extractBearer(undefined, '/ws?token='), undefined);
  assert.equal(extractBearer(undefined, '/ws'), undefined);
  assert.equal(extractBearer(undefined, `/ws?token=${'x'.repeat(MAX_CREDENTIAL_BYTES + 1)}`), undefined);
  assert.equal(extractBearer(), undefined);
});

test('redactUrl hides the token parameter only', () => {
  assert.equal(redactUrl('/ws?a=1&token=s3cr3t&b=2'), '/ws?a=1&token=[REDACTED]&b=2');
  assert.equal(redactUrl('/ws?to%6Ben=s3cr3t'), '/ws?to%6Ben=[REDACTED]');
  assert.equal(redactUrl('/ws'), '/ws');
  assert.equal(redactUrl('/ws?k=s3cr3t', 'k'), '/ws?k=[REDACTED]');
});

// ------------------------------------------------------------------ token lists

test('parseTokens: lines, comments, commas, JSON', () => {
  const lines = parseTokens(`# team tokens\nalice:${ALICE}\n\n bob : ${BOB} \n`);
  assert.deepEqual(
    [...lines],
    [
      ['alice', ALICE],
      ['bob', BOB],
    ],
  );
  assert.deepEqual(
    [...parseTokens(`alice:${ALICE},bob:${BOB}`)],
    [
      ['alice', ALICE],
      ['bob', BOB],
    ],
  );
  assert.deepEqual([...parseTokens(JSON.stringify({ alice: ALICE }))], [['alice', ALICE]]);
  // The name ends at the first colon; the token may contain colons.
  assert.equal(parseTokens('svc:abc:def:0123456789abcdef').get('svc'), 'abc:def:0123456789abcdef');
});

test('parseTokens: errors name the problem, never the token', () => {
  const cases: [string, RegExp][] = [
    ['alice:tiny-s3cr3t', /shorter than 16/],
    [`alice${ALICE}`, /expected name:token/],
    [`alice:${ALICE}\nalice:${BOB}`, /duplicate name/],
    [`a:${ALICE}\nb:${ALICE}`, /same token/],
    [`a:${ALICE} ${BOB}`, /whitespace/],
    ['', /no tokens/],
    ['{"a": 1}', /not a string/],
    [`{"a": "${ALICE}"`, /invalid JSON/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(
      () => parseTokens(text),
      (e: unknown) =>
        e instanceof ConfigError && expected.test(e.message) && ![ALICE, BOB, 'tiny-s3cr3t'].some((t) => e.message.includes(t)),
      text,
    );
  }
});

test('loadTokens: file wins over env; missing file is a ConfigError', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'echo-auth-'));
  try {
    const file = join(dir, 'tokens');
    await writeFile(file, `alice:${ALICE}\n`);
    assert.deepEqual([...(await loadTokens({ file, env: `bob:${BOB}` }))], [['alice', ALICE]]);
    assert.deepEqual([...(await loadTokens({ env: `bob:${BOB}` }))], [['bob', BOB]]);
    await assert.rejects(loadTokens({ file: join(dir, 'nope') }), ConfigError);
    await assert.rejects(loadTokens({}), ConfigError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ token mode

test('token: right, wrong, missing, too long', async () => {
  const auth = createAuthenticator({
    mode: 'token',
    tokens: new Map([
      ['alice', ALICE],
      ['bob', BOB],
    ]),
  });
  assert.equal(auth.mode, 'token');
  assert.deepEqual(await auth.authenticate(ALICE), { ok: true, identity: 'alice', anonymous: false });
  assert.deepEqual(await auth.authenticate(BOB), { ok: true, identity: 'bob', anonymous: false });
  const wrong = `${ALICE}x`;
  assert.match(assertRefused(await auth.authenticate(wrong), [wrong, ALICE, BOB], 'unknown-token'), /^unknown token/);
  assertRefused(await auth.authenticate(ALICE.slice(0, -1)), [ALICE], 'unknown-token');
  assert.match(assertRefused(await auth.authenticate(undefined), [], 'missing'), /^missing credential/);
  assertRefused(await auth.authenticate(''), [], 'missing');
  assert.match(assertRefused(await auth.authenticate('x'.repeat(MAX_CREDENTIAL_BYTES + 1)), [], 'too-long'), /too long/);
  assert.throws(() => createAuthenticator({ mode: 'token' }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'token', tokens: new Map([['a', 'short']]) }), ConfigError);
});

test('none: everyone is anonymous', async () => {
  const auth = createAuthenticator({ mode: 'none' });
  assert.deepEqual(await auth.authenticate(undefined), { ok: true, identity: 'anonymous', anonymous: true });
});

test('the wire refusals are generic', () => {
  assert.equal(authProtocolError().closeCode, 1008);
  assert.equal(authProtocolError().message, 'unauthorized');
  assert.equal(authHttpError().status, 401);
  assert.equal(authHttpError().code, 'ECHO_ERR_AUTH');
});

// ------------------------------------------------------------------ JWT, HS256

const secretKey = new TextEncoder().encode(SECRET);

function hs(claims: Record<string, unknown> = {}, alg = 'HS256', key: Uint8Array = secretKey): Promise<string> {
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg })
    .setSubject('svc-a')
    .setIssuer('https://issuer.test')
    .setAudience('echo')
    .setIssuedAt(NOW_S)
    .setExpirationTime(NOW_S + 300)
    .sign(key);
}

const hsAuth = createAuthenticator({
  mode: 'jwt',
  jwt: { secret: SECRET, audience: 'echo', issuer: 'https://issuer.test', clockToleranceSec: 30 },
  now,
});

test('jwt HS256: valid token gives the subject', async () => {
  const hsResult = await hsAuth.authenticate(await hs());
  // validUntil: exp + the clock tolerance, when the connection it opened is closed.
  assert.deepEqual(
    { ...hsResult, claims: undefined },
    { ok: true, identity: 'svc-a', anonymous: false, validUntil: (NOW_S + 330) * 1000, claims: undefined },
  );
  // The verified claims come with the identity (for /whoami), never the token.
  assert.equal(hsResult.ok && hsResult.claims?.['sub'], 'svc-a');
  assert.deepEqual(hsAuth.warnings, []);
});

test('jwt: expired, and the clock tolerance', async () => {
  const expiredLongAgo = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('echo')
    .setIssuer('https://issuer.test')
    .setExpirationTime(NOW_S - 31)
    .sign(secretKey);
  const t = await hs();
  assert.match(assertRefused(await hsAuth.authenticate(expiredLongAgo), [expiredLongAgo, SECRET], 'expired'), /^expired .*ERR_JWT_EXPIRED/);
  const withinSkew = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('echo')
    .setIssuer('https://issuer.test')
    .setExpirationTime(NOW_S - 29)
    .sign(secretKey);
  assert.equal((await hsAuth.authenticate(withinSkew)).ok, true);
  assert.equal((await hsAuth.authenticate(t)).ok, true);
});

test('jwt: not yet valid (nbf beyond the tolerance)', async () => {
  const t = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('echo')
    .setIssuer('https://issuer.test')
    .setNotBefore(NOW_S + 60)
    .setExpirationTime(NOW_S + 600)
    .sign(secretKey);
  assert.match(assertRefused(await hsAuth.authenticate(t), [], 'not-yet-valid'), /nbf/);
});

test('jwt: wrong audience, wrong issuer', async () => {
  const aud = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('other')
    .setIssuer('https://issuer.test')
    .setExpirationTime(NOW_S + 60)
    .sign(secretKey);
  assert.match(assertRefused(await hsAuth.authenticate(aud), [], 'bad-claim'), /aud/);
  const iss = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('echo')
    .setIssuer('https://evil.test')
    .setExpirationTime(NOW_S + 60)
    .sign(secretKey);
  assert.match(assertRefused(await hsAuth.authenticate(iss)), /iss/);
});

test('jwt: bad signature, tampered payload, other HMAC algorithm', async () => {
  const other = await hs({}, 'HS256', new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
  assert.match(assertRefused(await hsAuth.authenticate(other), [], 'bad-signature'), /^bad signature/);
  const good = await hs();
  const [h, , s] = good.split('.');
  const forged = `${h}.${base64url.encode(JSON.stringify({ sub: 'root', aud: 'echo', iss: 'https://issuer.test', exp: NOW_S + 60 }))}.${s}`;
  assertRefused(await hsAuth.authenticate(forged));
  const hs384 = await hs({}, 'HS384');
  assert.match(assertRefused(await hsAuth.authenticate(hs384), [], 'bad-algorithm'), /alg/i);
});

test('jwt: alg none is refused', async () => {
  const enc = (o: object): string => base64url.encode(JSON.stringify(o));
  const none = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: 'root', aud: 'echo', iss: 'https://issuer.test', exp: NOW_S + 60 })}.`;
  assertRefused(await hsAuth.authenticate(none));
});

test('jwt: missing exp or sub is refused; garbage is refused', async () => {
  const noExp = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('s')
    .setAudience('echo')
    .setIssuer('https://issuer.test')
    .sign(secretKey);
  assert.match(assertRefused(await hsAuth.authenticate(noExp)), /exp/);
  const noSub = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setAudience('echo')
    .setIssuer('https://issuer.test')
    .setExpirationTime(NOW_S + 60)
    .sign(secretKey);
  assert.match(assertRefused(await hsAuth.authenticate(noSub)), /sub/);
  assertRefused(await hsAuth.authenticate('not.a.jwt'), [], 'malformed');
  assertRefused(await hsAuth.authenticate(undefined), [], 'missing');
});

test('jwt: configuration is validated at creation', () => {
  assert.throws(() => createAuthenticator({ mode: 'jwt' }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { secret: 'too-short' } }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET, jwksUrl: 'https://x.test/jwks' } }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { jwksUrl: 'http://idp.example.com/jwks' } }), /https/);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET, clockToleranceSec: 301 } }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET, algorithms: ['RS256'] } }), ConfigError);
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { publicKeyPem: 'nope' } }), ConfigError);
  const weak = createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET } });
  assert.equal(weak.warnings.length, 2);
});

// ------------------------------------------------------------------ JWT, public key

test('jwt with an EC public key: ES256 ok; HS256 signed with the public key is refused', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const auth = createAuthenticator({ mode: 'jwt', jwt: { publicKeyPem: pem, audience: 'echo' }, now });
  const ok = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setSubject('device-7')
    .setAudience('echo')
    .setExpirationTime(NOW_S + 60)
    .sign(privateKey);
  assert.deepEqual(
    { ...(await auth.authenticate(ok)), claims: undefined },
    { ok: true, identity: 'device-7', anonymous: false, validUntil: (NOW_S + 90) * 1000, claims: undefined },
  );
  // Algorithm confusion: the public key used as an HMAC secret.
  const confused = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('root')
    .setAudience('echo')
    .setExpirationTime(NOW_S + 60)
    .sign(new TextEncoder().encode(pem));
  assertRefused(await auth.authenticate(confused));
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const bad = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setSubject('x')
    .setAudience('echo')
    .setExpirationTime(NOW_S + 60)
    .sign(other);
  assertRefused(await auth.authenticate(bad));
});

// ------------------------------------------------------------------ JWT, JWKS

test('jwt with a JWKS URL served on 127.0.0.1: ok, unknown key, keys cached', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let fetches = 0;
  const server = createServer(function serveJwks(req: IncomingMessage, res: ServerResponse) {
    fetches++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const auth = createAuthenticator({
    mode: 'jwt',
    jwt: { jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`, audience: 'echo', issuer: 'https://idp.test' },
    now,
  });
  const sign = (kid: string, key = privateKey): Promise<string> =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid })
      .setSubject('user-1')
      .setAudience('echo')
      .setIssuer('https://idp.test')
      .setExpirationTime(NOW_S + 60)
      .sign(key);
  for (let i = 0; i < 2; i++) {
    const r = await auth.authenticate(await sign('k1'));
    assert.deepEqual(
      { ...r, claims: undefined },
      { ok: true, identity: 'user-1', anonymous: false, validUntil: (NOW_S + 90) * 1000, claims: undefined },
    );
  }
  assert.equal(fetches, 1, 'the key set is cached');
  // Unknown kid: within the cooldown no refetch happens, and the token is refused.
  assert.match(assertRefused(await auth.authenticate(await sign('k2')), [], 'unknown-key'), /JWKS/);
  assert.equal(fetches, 1, 'cooldown prevents a refetch per unknown kid');
  // Right kid, wrong key.
  const intruder = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  assertRefused(await auth.authenticate(await sign('k1', intruder)));
});

test('jwt with an unreachable JWKS: refused, detail names no token', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  const auth = createAuthenticator({ mode: 'jwt', jwt: { jwksUrl: `http://localhost:${port}/jwks`, jwksTimeoutMs: 2000 }, now });
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'RS256', kid: 'k' })
    .setSubject('u')
    .setExpirationTime(NOW_S + 60)
    .sign(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
  assertRefused(await auth.authenticate(token), [token]);
});

test('jwt: maxLifetimeSec refuses tokens valid for longer (exp - iat, else exp - now)', async () => {
  const capped = createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET, audience: 'echo', maxLifetimeSec: 600 }, now });
  const make = (exp: number, iat?: number): Promise<string> => {
    let j = new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('s').setAudience('echo').setExpirationTime(exp);
    if (iat !== undefined) j = j.setIssuedAt(iat);
    return j.sign(secretKey);
  };
  assert.equal((await capped.authenticate(await make(NOW_S + 600, NOW_S))).ok, true);
  assert.match(assertRefused(await capped.authenticate(await make(NOW_S + 601, NOW_S)), [], 'lifetime'), /lifetime/);
  // Issued earlier, for a day: refused even though only 10 minutes are left.
  assertRefused(await capped.authenticate(await make(NOW_S + 600, NOW_S - 86_400)), [], 'lifetime');
  // Without iat, from now; an iat in the future does not shorten it.
  assert.equal((await capped.authenticate(await make(NOW_S + 599))).ok, true);
  assertRefused(await capped.authenticate(await make(NOW_S + 3600)), [], 'lifetime');
  assertRefused(await capped.authenticate(await make(NOW_S + 3600, NOW_S + 3500)), [], 'lifetime');
  assert.throws(() => createAuthenticator({ mode: 'jwt', jwt: { secret: SECRET, maxLifetimeSec: -1 } }), ConfigError);
});
