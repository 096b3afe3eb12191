/** The WebSocket opening handshake (RFC 6455 §4.2) as pure functions: verdicts and responses. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpError } from '../../src/errors.js';
import {
  acceptKey,
  httpErrorResponse,
  SUBPROTOCOL_V1,
  upgradeResponse,
  validateUpgrade,
  type UpgradeRequest,
} from '../../src/protocol/ws-handshake.js';

const RFC_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const RFC_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

const good = (headers: Record<string, string | string[] | undefined> = {}, over: Partial<UpgradeRequest> = {}): UpgradeRequest => ({
  method: 'GET',
  httpVersion: '1.1',
  headers: {
    host: 'example.com',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': RFC_KEY,
    'sec-websocket-version': '13',
    ...headers,
  },
  ...over,
});

const status = (s: number) => (e: unknown) => e instanceof HttpError && e.status === s && e.code === 'ECHO_ERR_HANDSHAKE';

describe('validateUpgrade', () => {
  test('accepts the RFC 6455 §1.3 example and computes its accept value', () => {
    const v = validateUpgrade(good());
    assert.deepEqual(v, { key: RFC_KEY, protocol: undefined });
    assert.equal(acceptKey(v.key), RFC_ACCEPT);
  });

  test('header tokens are case-insensitive and may be lists', () => {
    const v = validateUpgrade(good({ upgrade: 'WebSocket', connection: 'keep-alive, Upgrade' }));
    assert.equal(v.key, RFC_KEY);
    assert.doesNotThrow(() => validateUpgrade(good({ connection: ['keep-alive', 'upgrade'] })));
  });

  test('picks echo.v1 among the offered subprotocols', () => {
    assert.equal(SUBPROTOCOL_V1, 'echo.v1');
    assert.equal(validateUpgrade(good({ 'sec-websocket-protocol': 'chat, echo.v1, superchat' })).protocol, 'echo.v1');
    assert.equal(validateUpgrade(good({ 'sec-websocket-protocol': 'echo.v1' })).protocol, 'echo.v1');
    assert.equal(validateUpgrade(good({ 'sec-websocket-protocol': 'chat, echo.v2' })).protocol, undefined);
  });

  test('a method other than GET is 405', () => {
    for (const method of ['POST', 'PUT', 'HEAD', undefined])
      assert.throws(() => validateUpgrade(good({}, { method })), status(405), String(method));
  });

  test('HTTP/1.0 is 400', () => {
    assert.throws(() => validateUpgrade(good({}, { httpVersion: '1.0' })), status(400));
    assert.throws(() => validateUpgrade(good({}, { httpVersion: '0.9' })), status(400));
  });

  test('a missing or wrong Upgrade header is 400', () => {
    assert.throws(() => validateUpgrade(good({ upgrade: undefined })), status(400));
    assert.throws(() => validateUpgrade(good({ upgrade: 'h2c' })), status(400));
  });

  test('a Connection header without upgrade is 400', () => {
    assert.throws(() => validateUpgrade(good({ connection: undefined })), status(400));
    assert.throws(() => validateUpgrade(good({ connection: 'keep-alive' })), status(400));
  });

  test('a version other than 13 is 426', () => {
    assert.throws(() => validateUpgrade(good({ 'sec-websocket-version': '8' })), status(426));
    assert.throws(() => validateUpgrade(good({ 'sec-websocket-version': undefined })), status(426));
  });

  test('a bad key is 400: wrong length, not base64, missing', () => {
    for (const key of [
      undefined,
      '',
      'dGhlIHNhbXBsZSBub25jZQ=',
      'dGhlIHNhbXBsZSBub25jZQ===',
      'dGhlIHNhbXBsZSBub25jZQ',
      'dGhlIHNhbXBsZSBub25j',
      'dGhlIHNhbXBsZSBub25jZ!==',
      'dGhlIHNhbXBsZSBub25jZ-==',
      'dGhlIHNhbXBsZSBub25jZQabc==',
    ]) {
      assert.throws(() => validateUpgrade(good({ 'sec-websocket-key': key })), status(400), String(key));
    }
  });
});

describe('responses', () => {
  test('upgradeResponse is a 101 with the accept value and the chosen subprotocol', () => {
    const r = upgradeResponse({ key: RFC_KEY, protocol: 'echo.v1' });
    assert.ok(r.startsWith('HTTP/1.1 101 Switching Protocols\r\n'));
    assert.ok(r.endsWith('\r\n\r\n'));
    const lines = r.split('\r\n');
    assert.ok(lines.includes(`Sec-WebSocket-Accept: ${RFC_ACCEPT}`));
    assert.ok(lines.includes('Sec-WebSocket-Protocol: echo.v1'));
    assert.ok(lines.some((l) => /^upgrade: websocket$/i.test(l)));
    assert.ok(!upgradeResponse({ key: RFC_KEY, protocol: undefined }).includes('Sec-WebSocket-Protocol'));
    assert.ok(!r.toLowerCase().includes('sec-websocket-extensions'), 'no extension is ever accepted');
  });

  test('httpErrorResponse has a correct Content-Length and reason phrase', () => {
    const r = httpErrorResponse(426, 'Sec-WebSocket-Version must be 13', ['Sec-WebSocket-Version: 13']);
    const [head, body] = r.split('\r\n\r\n') as [string, string];
    assert.ok(head.startsWith('HTTP/1.1 426 Upgrade Required'));
    assert.ok(head.split('\r\n').includes('Sec-WebSocket-Version: 13'));
    const len = Number(/Content-Length: (\d+)/.exec(head)?.[1]);
    assert.equal(Buffer.byteLength(body), len);
    assert.deepEqual(JSON.parse(body), { error: 'Sec-WebSocket-Version must be 13' });
  });
});
