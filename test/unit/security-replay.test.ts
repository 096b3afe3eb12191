import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/errors.js';
import { headerTimestamp, parseRfc3339, REPLAY_DEFAULTS, ReplayGuard, replayError, replayFields } from '../../src/security/replay.js';

const W = 30_000;
const T0 = 1_700_000_000_000;

test('defaults: 30 s window, 10 000 entries', () => {
  const g = new ReplayGuard();
  assert.equal(g.windowMs, REPLAY_DEFAULTS.windowMs);
  assert.equal(g.windowMs, 30_000);
  assert.equal(g.maxEntries, 10_000);
});

test('an id seen within the window is a duplicate; other ids pass', () => {
  const g = new ReplayGuard({ windowMs: W });
  assert.equal(g.check('a', T0, T0), 'ok');
  assert.equal(g.check('a', T0, T0 + 1), 'duplicate');
  assert.equal(g.check('b', T0, T0 + 1), 'ok');
  assert.equal(g.check('a', undefined, T0 + 2), 'duplicate');
});

test('ts window boundaries: [now - window, now + window] inclusive', () => {
  const g = new ReplayGuard({ windowMs: W });
  assert.equal(g.check(undefined, T0 - W, T0), 'ok');
  assert.equal(g.check(undefined, T0 - W - 1, T0), 'stale');
  assert.equal(g.check(undefined, T0 + W, T0), 'ok');
  assert.equal(g.check(undefined, T0 + W + 1, T0), 'future');
  assert.equal(g.check(undefined, Number.NaN, T0), 'stale');
  assert.equal(g.check(undefined, Infinity, T0), 'stale');
  // A refused message's id is not remembered.
  assert.equal(g.check('x', T0 - W - 1, T0), 'stale');
  assert.equal(g.check('x', T0, T0), 'ok');
});

test('without id nor ts everything passes and nothing is stored', () => {
  const g = new ReplayGuard({ windowMs: W, maxEntries: 1 });
  for (let i = 0; i < 100; i++) assert.equal(g.check(undefined, undefined, T0), 'ok');
  assert.equal(g.size, 0);
});

test('an id without ts is forgotten one window after it was seen', () => {
  const g = new ReplayGuard({ windowMs: W });
  assert.equal(g.check('a', undefined, T0), 'ok');
  assert.equal(g.check('a', undefined, T0 + W - 1), 'duplicate');
  assert.equal(g.check('a', undefined, T0 + W), 'ok');
});

test('an id stamped in the future is remembered until ts + window', () => {
  const g = new ReplayGuard({ windowMs: W });
  const ts = T0 + W; // as far ahead as accepted
  assert.equal(g.check('f', ts, T0), 'ok');
  // One window later the ts is still acceptable, so the id must still be known.
  assert.equal(g.check('f', ts, T0 + W + 1), 'duplicate');
  assert.equal(g.check('f', ts, T0 + 2 * W - 1), 'duplicate');
  // Then the ts itself is stale.
  assert.equal(g.check('f', ts, T0 + 2 * W + 1), 'stale');
});

test('the cap holds: a full table of live ids refuses with overflow instead of evicting', () => {
  const g = new ReplayGuard({ windowMs: W, maxEntries: 3 });
  assert.equal(g.check('1', T0, T0), 'ok');
  assert.equal(g.check('2', T0, T0), 'ok');
  assert.equal(g.check('3', T0, T0), 'ok');
  assert.equal(g.check('4', T0, T0), 'overflow');
  assert.equal(g.size, 3);
  // '1' was not evicted by the attempt: replaying it is still caught.
  assert.equal(g.check('1', T0, T0), 'duplicate');
  // Once the window has passed, room is made.
  assert.equal(g.check('4', T0 + W, T0 + W), 'ok');
  assert.equal(g.size, 1);
});

test('the cap holds under a long stream of unique ids', () => {
  const g = new ReplayGuard({ windowMs: 1000, maxEntries: 500 });
  let overflow = 0;
  for (let i = 0; i < 100_000; i++) {
    const now = T0 + i; // 1000 ids per window, twice the cap
    const v = g.check(`id-${i}`, now, now);
    if (v === 'overflow') overflow++;
    else assert.equal(v, 'ok');
    assert.ok(g.size <= 500);
  }
  assert.ok(overflow > 0);
});

test('long ids are stored as a digest and still compared exactly', () => {
  const g = new ReplayGuard({ windowMs: W });
  const long = 'x'.repeat(4000);
  assert.equal(g.check(`${long}a`, T0, T0), 'ok');
  assert.equal(g.check(`${long}b`, T0, T0), 'ok');
  assert.equal(g.check(`${long}a`, T0, T0), 'duplicate');
});

test('options are validated; the refusal closes with 1008', () => {
  assert.throws(() => new ReplayGuard({ windowMs: 0 }), ConfigError);
  assert.throws(() => new ReplayGuard({ maxEntries: 0 }), ConfigError);
  assert.throws(() => new ReplayGuard({ maxEntries: 1.5 }), ConfigError);
  const e = replayError('duplicate');
  assert.equal(e.closeCode, 1008);
  assert.equal(e.code, 'ECHO_ERR_REPLAY');
});

test('replayFields: id must be a string; anything else is refused as invalid id', () => {
  assert.deepEqual(replayFields({ id: 'm1' }), { id: 'm1', ts: undefined });
  assert.deepEqual(replayFields({}), { id: undefined, ts: undefined });
  for (const id of [{}, [], null, true, false, 7, 0, 1.5]) assert.equal(replayFields({ id }), 'invalid id', JSON.stringify(id));
  assert.equal(replayError('invalid id').message, 'replay protection: invalid id');
  assert.equal(replayError('invalid id').closeCode, 1008);
});

test('replayFields: ts is epoch ms or an RFC 3339 string; other forms are invalid ts', () => {
  assert.deepEqual(replayFields({ ts: T0 }), { id: undefined, ts: T0 });
  assert.deepEqual(replayFields({ id: 'x', ts: '2023-11-14T22:13:20Z' }), { id: 'x', ts: T0 });
  for (const ts of ['yesterday', '', '1700000000000', null, true, {}, [], Infinity, NaN, '2023-11-14', '2023-11-14T22:13:20'])
    assert.equal(replayFields({ ts }), 'invalid ts', JSON.stringify(ts));
});

test('parseRfc3339: offsets, fractions, lower-case separators; out-of-range fields are NaN', () => {
  assert.equal(parseRfc3339('2023-11-14T22:13:20Z'), T0);
  assert.equal(parseRfc3339('2023-11-14t22:13:20z'), T0);
  assert.equal(parseRfc3339('2023-11-14 22:13:20Z'), T0);
  assert.equal(parseRfc3339('2023-11-14T23:13:20+01:00'), T0);
  assert.equal(parseRfc3339('2023-11-14T17:43:20-04:30'), T0);
  assert.equal(parseRfc3339('2023-11-14T22:13:20.25Z'), T0 + 250);
  assert.equal(parseRfc3339('2023-11-14T22:13:20.123456789Z'), T0 + 123);
  assert.equal(parseRfc3339('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
  assert.equal(parseRfc3339('2016-12-31T23:59:60Z'), Date.UTC(2016, 11, 31, 23, 59, 59));
  for (const bad of [
    '2023-02-29T00:00:00Z',
    '2023-13-01T00:00:00Z',
    '2023-00-01T00:00:00Z',
    '2023-04-31T00:00:00Z',
    '2023-11-14T24:00:00Z',
    '2023-11-14T22:60:00Z',
    '2023-11-14T22:13:61Z',
    '2023-11-14T22:13:20+24:00',
    '2023-11-14T22:13:20',
    '2023-11-14T22:13:20.Z',
    ` 2023-11-14T22:13:20Z`,
    `2023-11-14T22:13:20.${'1'.repeat(80)}Z`,
  ])
    assert.ok(Number.isNaN(parseRfc3339(bad)), bad);
  assert.equal(headerTimestamp(undefined), undefined);
  assert.ok(Number.isNaN(headerTimestamp(Infinity) as number));
});

test('an RFC 3339 ts is checked against the window like epoch ms', () => {
  const g = new ReplayGuard({ windowMs: W });
  const ts = (ms: number) => headerTimestamp(new Date(ms).toISOString());
  assert.equal(g.check('a', ts(T0), T0), 'ok');
  assert.equal(g.check('b', ts(T0 - W - 1000), T0), 'stale');
  assert.equal(g.check('c', ts(T0 + W + 1000), T0), 'future');
});
