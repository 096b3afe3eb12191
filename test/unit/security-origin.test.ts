import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/errors.js';
import { createOriginCheck, normalizeOrigin, selfOrigins } from '../../src/security/origin.js';

test('normalizeOrigin: case, default port, trailing slash, IDN', () => {
  assert.equal(normalizeOrigin('HTTPS://App.Example.COM'), 'https://app.example.com');
  assert.equal(normalizeOrigin('https://app.example.com:443'), 'https://app.example.com');
  assert.equal(normalizeOrigin('http://app.example.com:80/'), 'http://app.example.com');
  assert.equal(normalizeOrigin('http://localhost:5173'), 'http://localhost:5173');
  assert.equal(normalizeOrigin('https://bücher.example'), 'https://xn--bcher-kva.example');
  assert.equal(normalizeOrigin('http://[::1]:8080'), 'http://[::1]:8080');
  for (const bad of [
    'https://a.example/path',
    'https://a.example?q',
    'https://u:p@a.example',
    'ftp://a.example',
    'a.example',
    'null',
    '',
    'https://a.example/.',
    'https://a.example#x',
  ])
    assert.equal(normalizeOrigin(bad), undefined, bad);
});

test('exact origins: scheme, host and port must all match', () => {
  const check = createOriginCheck(['https://app.example.com', 'http://localhost:5173']);
  assert.equal(check('https://app.example.com'), true);
  assert.equal(check('https://APP.example.com:443'), true);
  assert.equal(check('http://localhost:5173'), true);
  assert.equal(check('http://app.example.com'), false); // scheme
  assert.equal(check('https://app.example.com:8443'), false); // port
  assert.equal(check('https://evil.example.com'), false);
  assert.equal(check('https://app.example.com.evil.test'), false); // suffix trick
  assert.equal(check('https://evil.test/https://app.example.com'), false);
  assert.equal(check('http://localhost:5174'), false);
  assert.equal(check('null'), false);
  assert.equal(check('garbage'), false);
  assert.equal(check('https://app.example.com, https://evil.test'), false);
});

test('no Origin header (non-browser client) is allowed', () => {
  assert.equal(createOriginCheck(['https://app.example.com'])(undefined), true);
  assert.equal(createOriginCheck([])(undefined), true);
});

test('empty list allows no browser origin; * allows all, including null', () => {
  assert.equal(createOriginCheck([])('https://app.example.com'), false);
  const any = createOriginCheck(['*']);
  assert.equal(any('https://anything.test'), true);
  assert.equal(any('null'), true);
});

test('invalid entries are a ConfigError naming allowedOrigins', () => {
  for (const bad of ['app.example.com', 'https://app.example.com/app', '*.example.com', 'https://*.example.com'])
    assert.throws(
      () => createOriginCheck([bad]),
      (e: unknown) => e instanceof ConfigError && e.setting === 'allowedOrigins',
      bad,
    );
});

test('selfOrigins lists the server own origins for the default allow-list', () => {
  const list = selfOrigins(['echo.internal', '0.0.0.0', '10.0.0.5'], 8443, true);
  assert.deepEqual(list, [
    'https://localhost:8443',
    'https://127.0.0.1:8443',
    'https://[::1]:8443',
    'https://echo.internal:8443',
    'https://10.0.0.5:8443',
  ]);
  const check = createOriginCheck(selfOrigins([], 443, true));
  assert.equal(check('https://localhost'), true);
  assert.equal(check('http://localhost'), false);
});
