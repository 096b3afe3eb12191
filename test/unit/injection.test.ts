import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DelayLine,
  DelayQueue,
  FaultPlan,
  injectionHttpError,
  injectionProtocolError,
  parseDelay,
  parseHeaderInjection,
  parseUrlInjection,
  pickDelay,
  sendableCloseCode,
  type Parsed,
} from '../../src/core/injection.js';
import { ManualClock } from '../../src/core/clock.js';

const ON = { maxDelayMs: 30_000, faultInjection: true };
const OFF = { maxDelayMs: 30_000, faultInjection: false };

function refused<T>(p: Parsed<T>): { refusal: string; reason: string } {
  assert.equal(p.ok, false, 'expected a refusal');
  if (p.ok) throw new Error('unreachable');
  return p;
}
function empty<T>(p: Parsed<T>): boolean {
  return p.ok && p.empty;
}
function value<T>(p: Parsed<T>): T {
  if (!p.ok) assert.fail(`refused: ${p.reason}`);
  return p.value;
}

test('parseDelay: fixed, range (jitter), JSON forms, bounds, cap', () => {
  assert.deepEqual(value(parseDelay('250', 1000)), { min: 250, max: 250 });
  assert.deepEqual(value(parseDelay(' 100 - 300 ', 1000)), { min: 100, max: 300 });
  assert.deepEqual(value(parseDelay(0, 1000)), { min: 0, max: 0 });
  assert.deepEqual(value(parseDelay([5, 9], 1000)), { min: 5, max: 9 });
  assert.deepEqual(value(parseDelay('1000', 1000)), { min: 1000, max: 1000 }, 'the cap itself is allowed');
  for (const bad of ['abc', '-5', '1.5', '300-100', '', '1e3', [1], [1, 'x'], {}, true, -1, 2.5])
    assert.equal(refused(parseDelay(bad, 1000)).refusal, 'invalid', JSON.stringify(bad));
  const over = refused(parseDelay('10-1001', 1000));
  assert.equal(over.refusal, 'over-limit');
  assert.match(over.reason, /1001 ms is over --max-delay \(1000 ms\)/);
});

test('parseUrlInjection: delay always allowed, faults only with the flag', () => {
  assert.equal(value(parseUrlInjection('/ws', OFF)).delay, undefined);
  assert.ok(empty(parseUrlInjection('/ws?token=x&foo=1', OFF)));
  assert.ok(!empty(parseUrlInjection('/ws?delay=0', OFF)));
  assert.deepEqual(value(parseUrlInjection('/ws?delay=100-300', OFF)), { delay: { min: 100, max: 300 } });
  for (const q of ['close=4000', 'close=4000&after=3', 'drop=0.5', 'stall=100', 'delay=5&drop=0']) {
    const r = refused(parseUrlInjection(`/ws?${q}`, OFF));
    assert.equal(r.refusal, 'fault-disabled', q);
    assert.match(r.reason, /--fault-injection/);
  }
  assert.deepEqual(value(parseUrlInjection('/ws?close=4001&after=3&drop=0.25&stall=500&delay=7', ON)), {
    delay: { min: 7, max: 7 },
    close: { code: 4001, after: 3 },
    drop: 0.25,
    stall: 500,
  });
  assert.deepEqual(value(parseUrlInjection('/?close=1000', ON)).close, { code: 1000, after: 0 });
  assert.equal(value(parseUrlInjection('/?drop=1', ON)).drop, 1);
});

test('parseUrlInjection: invalid and over-limit values are refused with a reason', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['delay=1&delay=2', 'invalid', /more than once/],
    ['delay=31000', 'over-limit', /over --max-delay/],
    ['stall=31000', 'over-limit', /over --max-delay/],
    ['stall=x', 'invalid', /stall/],
    ['after=3', 'invalid', /after needs close/],
    ['close=1005', 'invalid', /close code/],
    ['close=1006', 'invalid', /close code/],
    ['close=2000', 'invalid', /close code/],
    ['close=5000', 'invalid', /close code/],
    ['close=abc', 'invalid', /close code/],
    ['close=4000&after=-1', 'invalid', /after/],
    ['drop=1.5', 'invalid', /probability/],
    ['drop=x', 'invalid', /probability/],
  ];
  for (const [q, refusal, reason] of cases) {
    const r = refused(parseUrlInjection(`/ws?${q}`, ON));
    assert.equal(r.refusal, refusal, q);
    assert.match(r.reason, reason, q);
  }
});

test('parseHeaderInjection: delay, close, drop; faults need the flag', () => {
  assert.ok(empty(parseHeaderInjection({ id: 'a' }, OFF)));
  assert.ok(empty(parseHeaderInjection({ id: 'a', delay: null }, OFF)));
  assert.deepEqual(value(parseHeaderInjection({ delay: 50 }, OFF)), { delay: { min: 50, max: 50 } });
  assert.deepEqual(value(parseHeaderInjection({ delay: '10-20' }, OFF)), { delay: { min: 10, max: 20 } });
  assert.equal(refused(parseHeaderInjection({ close: 4000 }, OFF)).refusal, 'fault-disabled');
  assert.equal(refused(parseHeaderInjection({ drop: true }, OFF)).refusal, 'fault-disabled');
  assert.deepEqual(value(parseHeaderInjection({ close: 4000, drop: true }, ON)), { close: 4000, drop: 1 });
  assert.equal(refused(parseHeaderInjection({ delay: 40_000 }, ON)).refusal, 'over-limit');
  assert.equal(refused(parseHeaderInjection({ close: 1015 }, ON)).refusal, 'invalid');
  assert.equal(refused(parseHeaderInjection({ drop: 2 }, ON)).refusal, 'invalid');
});

test('refusals map to 403 (faults off) / 400 before the upgrade and to close 1008 on the wire', () => {
  const off = refused(parseUrlInjection('/?drop=1', OFF));
  assert.equal(injectionHttpError(off as { refusal: 'fault-disabled'; reason: string }).status, 403);
  const over = refused(parseUrlInjection('/?delay=99999', ON));
  assert.equal(injectionHttpError(over as { refusal: 'over-limit'; reason: string }).status, 400);
  const e = injectionProtocolError(over as { refusal: 'over-limit'; reason: string });
  assert.equal(e.closeCode, 1008);
  assert.ok(Buffer.byteLength(e.message) <= 123, 'fits in a close frame');
  assert.ok(Buffer.byteLength(injectionProtocolError(off as { refusal: 'fault-disabled'; reason: string }).message) <= 123);
});

test('sendableCloseCode follows RFC 6455 7.4', () => {
  for (const c of [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999]) assert.ok(sendableCloseCode(c), String(c));
  for (const c of [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5]) assert.ok(!sendableCloseCode(c), String(c));
});

test('pickDelay draws in [min, max] with the injected random', () => {
  assert.equal(
    pickDelay({ min: 5, max: 5 }, () => 0.99),
    5,
  );
  assert.equal(
    pickDelay({ min: 100, max: 300 }, () => 0),
    100,
  );
  assert.equal(
    pickDelay({ min: 100, max: 300 }, () => 0.999999),
    300,
  );
  assert.equal(
    pickDelay({ min: 100, max: 300 }, () => 0.5),
    200,
  );
});

test('DelayLine keeps order per connection: a shorter delay never overtakes a longer one', () => {
  let now = 1000;
  const line = new DelayLine(() => now);
  assert.deepEqual(line.schedule(300), { dueAt: 1300, appliedMs: 300 });
  now = 1010;
  // Drawn 50 ms (jitter), but the echo before it is due at 1300: it waits for it.
  assert.deepEqual(line.schedule(50), { dueAt: 1300, appliedMs: 290 });
  now = 1400;
  assert.deepEqual(line.schedule(0), { dueAt: 1400, appliedMs: 0 });
  assert.deepEqual(line.schedule(10), { dueAt: 1410, appliedMs: 10 });
});

test('FaultPlan: close after N echoes, per-message close, drop by probability', () => {
  const seq = [0.1, 0.9, 0.49, 0.5];
  let i = 0;
  const random = (): number => seq[i++ % seq.length] as number;
  const plan = new FaultPlan({ close: { code: 4002, after: 3 }, drop: 0.5 }, random);
  assert.equal(plan.closeAtOpen(), undefined);
  assert.deepEqual([plan.drop(undefined), plan.drop(undefined), plan.drop(undefined), plan.drop(undefined)], [true, false, true, false]);
  assert.equal(plan.drop({ drop: 0 }), false, 'the message overrides the URL');
  assert.equal(plan.drop({ drop: 1 }), true);
  assert.equal(plan.afterEcho(undefined), undefined);
  assert.equal(plan.afterEcho(undefined), undefined);
  assert.equal(plan.afterEcho(undefined), 4002);
  assert.equal(new FaultPlan({}, random).afterEcho({ close: 4100 }), 4100);
  assert.equal(new FaultPlan({ close: { code: 1001, after: 0 } }, random).closeAtOpen(), 1001);
  assert.equal(new FaultPlan({}, () => 0).drop(undefined), false, 'no drop asked: never dropped');
});

test('DelayQueue: sends in order at their due times, one timer at a time', () => {
  const f = new ManualClock(0);
  const sent: string[] = [];
  const q = new DelayQueue({ pauseReading() {}, resumeReading() {} }, 1 << 20, f);
  assert.equal(
    q.push(100, 10, () => sent.push('a')),
    100,
  );
  assert.equal(
    q.push(20, 10, () => sent.push('b')),
    100,
    'b waits for a',
  );
  f.advance(50);
  assert.equal(
    q.push(100, 10, () => sent.push('c')),
    100,
  );
  assert.equal(f.pending, 1);
  f.advance(49);
  assert.deepEqual(sent, []);
  f.advance(1);
  assert.deepEqual(sent, ['a', 'b']);
  assert.equal(q.bytes, 10);
  f.advance(50);
  assert.deepEqual(sent, ['a', 'b', 'c']);
  assert.equal(q.size, 0);
  assert.equal(f.pending, 0);
});

test('DelayQueue: delayed bytes count against the send queue (pause above high water, resume when sent)', () => {
  const f = new ManualClock(0);
  const calls: string[] = [];
  const q = new DelayQueue({ pauseReading: () => calls.push('pause'), resumeReading: () => calls.push('resume') }, 1000, f);
  q.push(100, 400, () => undefined);
  q.push(100, 400, () => undefined);
  assert.deepEqual(calls, []);
  q.push(200, 400, () => undefined); // 1200 > 1000
  assert.deepEqual(calls, ['pause']);
  q.push(200, 400, () => undefined);
  assert.deepEqual(calls, ['pause'], 'paused once');
  f.advance(100); // 800 left
  assert.deepEqual(calls, ['pause', 'resume']);
  // What the socket already holds counts too.
  q.push(300, 100, () => undefined, 500);
  assert.deepEqual(calls, ['pause', 'resume', 'pause']);
});

test('DelayQueue: flush sends everything now, in order; clear forgets', () => {
  const f = new ManualClock(0);
  const sent: number[] = [];
  const q = new DelayQueue({ pauseReading() {}, resumeReading() {} }, 1 << 20, f);
  for (let i = 0; i < 5; i++) q.push(1000 - i * 100, 1, () => sent.push(i));
  q.flush();
  assert.deepEqual(sent, [0, 1, 2, 3, 4]);
  assert.equal(f.pending, 0);
  q.push(10, 1, () => sent.push(99));
  q.clear();
  f.advance(100);
  assert.deepEqual(sent, [0, 1, 2, 3, 4]);
  assert.equal(q.bytes, 0);
});
