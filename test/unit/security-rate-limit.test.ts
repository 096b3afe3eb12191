import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../../src/errors.js';
import {
  ClientLimits,
  RateLimiter,
  TokenBucket,
  clientKey,
  rateCeilingError,
  takeAll,
  type ClientLease,
  type ClientRefusal,
} from '../../src/security/rate-limit.js';

function lease(r: ClientLease | { refused: ClientRefusal }): ClientLease {
  assert.ok(!('refused' in r), `refused: ${'refused' in r ? r.refused : ''}`);
  return r;
}

test('TokenBucket: starts full, refuses past the burst, says how long to wait', () => {
  const b = new TokenBucket({ ratePerSec: 10, burst: 5 }, 0);
  for (let i = 0; i < 5; i++) assert.equal(b.take(1, 0), 0);
  assert.equal(b.take(1, 0), 100); // one token at 10/s
  assert.equal(b.take(3, 0), 300);
  assert.equal(b.take(1, 99), 1);
  assert.equal(b.take(1, 100), 0); // exactly when promised
  assert.equal(b.take(1, 100), 100);
});

test('TokenBucket: refill is capped at the burst', () => {
  const b = new TokenBucket({ ratePerSec: 1000, burst: 3 }, 0);
  assert.equal(b.available(1_000_000), 3);
  for (let i = 0; i < 3; i++) assert.equal(b.take(1, 1_000_000), 0);
  assert.ok(b.take(1, 1_000_000) > 0);
});

test('TokenBucket: a request larger than the burst passes when full and leaves debt', () => {
  const b = new TokenBucket({ ratePerSec: 10, burst: 10 }, 0);
  assert.equal(b.take(25, 0), 0); // admitted: bucket was full
  assert.equal(b.available(0), -15);
  assert.equal(b.take(1, 0), 1600); // pay 15 of debt + 1 token at 10/s
  assert.equal(b.take(1, 1600), 0);
  // Not full: the big request waits until the bucket is full, then passes.
  const c = new TokenBucket({ ratePerSec: 10, burst: 10 }, 0);
  c.take(5, 0);
  assert.equal(c.take(100, 0), 500);
  assert.equal(c.take(100, 500), 0);
});

test('TokenBucket: never a negative wait; a clock stepping back refills nothing', () => {
  const b = new TokenBucket({ ratePerSec: 10, burst: 1 }, 1000);
  assert.equal(b.take(1, 1000), 0);
  const w = b.take(1, 500);
  assert.ok(w >= 1);
  assert.equal(b.take(0, 500), 0);
  assert.equal(b.take(-3, 500), 0);
});

test('TokenBucket: options are validated', () => {
  assert.throws(() => new TokenBucket({ ratePerSec: 0 }, 0), ConfigError);
  assert.throws(() => new TokenBucket({ ratePerSec: Number.NaN }, 0), ConfigError);
  assert.throws(() => new TokenBucket({ ratePerSec: 1, burst: -1 }, 0), ConfigError);
  assert.throws(() => new TokenBucket({ ratePerSec: Infinity }, 0), ConfigError);
});

test('TokenBucket property: granted tokens never exceed burst + rate x elapsed; retry at the promised time succeeds', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000_000 }), // up to 1 GB/s
      fc.integer({ min: 1, max: 10_000_000 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 10_000_000 })), { maxLength: 200 }),
      (rate, burst, steps) => {
        const b = new TokenBucket({ ratePerSec: rate, burst }, 0);
        let now = 0;
        let granted = 0;
        for (const [dt, want] of steps) {
          now += dt;
          const n = Math.min(want, burst);
          const w = b.take(n, now);
          assert.ok(w >= 0 && Number.isInteger(w));
          if (w === 0) granted += n;
          else {
            assert.equal(b.take(n, now + w), 0);
            granted += n;
            now += w;
          }
          const bound = burst + (rate * now) / 1000;
          assert.ok(granted <= bound * (1 + 1e-9), `granted ${granted} > ${bound} at ${now}`);
        }
      },
    ),
  );
});

test('RateLimiter: messages/s limit', () => {
  const l = new RateLimiter({ messagesPerSec: 100 }, 0); // burst 1 s = 100 messages
  for (let i = 0; i < 100; i++) assert.equal(l.take(10, 0), 0);
  assert.equal(l.take(10, 0), 10);
});

test('RateLimiter: bytes/s limit, with burstSec', () => {
  const l = new RateLimiter({ bytesPerSec: 1000, burstSec: 2 }, 0); // 2000 bytes burst
  assert.equal(l.take(1500, 0), 0);
  assert.equal(l.take(500, 0), 0);
  assert.equal(l.take(100, 0), 100);
});

test('RateLimiter: all or nothing across its buckets', () => {
  const l = new RateLimiter({ messagesPerSec: 10, bytesPerSec: 100 }, 0);
  assert.equal(l.take(100, 0), 0); // bytes bucket now empty, 9 messages left
  for (let i = 0; i < 5; i++) assert.ok(l.take(50, 0) > 0); // refused by bytes: messages untouched
  // After 1 s both refilled; if the refusals had charged messages, fewer than 10 would pass.
  let passed = 0;
  while (l.take(1, 1000) === 0) passed++;
  assert.equal(passed, 10);
});

test('RateLimiter: unlimited when no rate is set', () => {
  const l = new RateLimiter({}, 0);
  for (let i = 0; i < 10_000; i++) assert.equal(l.take(1_000_000, 0), 0);
  assert.equal(l.noteArrival(1e9, 0), false);
  assert.throws(() => new RateLimiter({ messagesPerSec: -1 }, 0), ConfigError);
  assert.throws(() => new RateLimiter({ messagesPerSec: 1, ceilingFactor: 0.5 }, 0), ConfigError);
  assert.throws(() => new RateLimiter({ messagesPerSec: 1, burstSec: 0 }, 0), ConfigError);
});

test('takeAll: admits only when every limiter does, charging none otherwise', () => {
  const conn = new RateLimiter({ messagesPerSec: 5 }, 0);
  const client = new RateLimiter({ messagesPerSec: 3 }, 0);
  for (let i = 0; i < 3; i++) assert.equal(takeAll([conn, client, undefined], 1, 0), 0);
  assert.ok(takeAll([conn, client], 1, 0) > 0);
  // conn was not charged by the refusal: it still has 2.
  assert.equal(conn.take(1, 0), 0);
  assert.equal(conn.take(1, 0), 0);
  assert.ok(conn.take(1, 0) > 0);
});

test('ceiling: exceeded past N x burst beyond N x rate, and stays exceeded', () => {
  const l = new RateLimiter({ messagesPerSec: 10, ceilingFactor: 3 }, 0); // ceiling burst 30, 30/s
  for (let i = 0; i < 30; i++) assert.equal(l.noteArrival(1, 0), false);
  assert.equal(l.noteArrival(1, 0), true);
  assert.equal(l.ceilingExceeded, true);
  assert.equal(l.noteArrival(1, 1_000_000), true);
  assert.equal(rateCeilingError().closeCode, 1008);
});

test('ceiling: sustained exactly N x rate is tolerated; above it is cut', () => {
  const at = new RateLimiter({ messagesPerSec: 10, ceilingFactor: 3 }, 0);
  for (let t = 0; t < 60_000; t += 1000 / 30) assert.equal(at.noteArrival(1, t), false);
  const over = new RateLimiter({ messagesPerSec: 10, ceilingFactor: 3 }, 0);
  let cutAt = -1;
  for (let t = 0; t < 60_000 && cutAt < 0; t += 1000 / 40) if (over.noteArrival(1, t)) cutAt = t;
  // 40/s against 30/s with 30 of burst: the burst is gone after ~3 s.
  assert.ok(cutAt > 2500 && cutAt < 3500, `cut at ${cutAt}`);
});

test('ceiling on bytes', () => {
  const l = new RateLimiter({ bytesPerSec: 1000, ceilingFactor: 2 }, 0); // 2000 bytes
  assert.equal(l.noteArrival(2000, 0), false);
  assert.equal(l.noteArrival(1, 0), true);
});

test('clientKey: identity first, then IP; IPv4-mapped as IPv4; IPv6 by /64', () => {
  assert.equal(clientKey('alice', '10.0.0.1'), 'id:alice');
  assert.equal(clientKey(undefined, '10.0.0.1'), 'ip:10.0.0.1');
  assert.equal(clientKey('', '::ffff:10.0.0.1'), 'ip:10.0.0.1');
  assert.equal(clientKey(undefined, '2001:db8:1:2:3:4:5:6'), 'ip:2001:db8:1:2::/64');
  assert.equal(clientKey(undefined, '2001:DB8:1:2::99'), 'ip:2001:db8:1:2::/64');
  assert.equal(clientKey(undefined, '2001:0db8:0001:0002:ffff::1'), 'ip:2001:db8:1:2::/64');
  assert.equal(clientKey(undefined, '2001:db8::1'), 'ip:2001:db8:0:0::/64');
  assert.equal(clientKey(undefined, '::1'), 'ip:0:0:0:0::/64');
  assert.equal(clientKey(undefined, 'fe80::1%eth0'), 'ip:fe80:0:0:0::/64');
  assert.equal(clientKey(undefined, undefined), 'ip:unknown');
});

test('ClientLimits: connections of one client share a limiter; per-client connection limit', () => {
  const limits = new ClientLimits({ rate: { messagesPerSec: 10 }, maxConnectionsPerClient: 2 });
  const a = lease(limits.open('ip:1.1.1.1', 0));
  const b = lease(limits.open('ip:1.1.1.1', 0));
  assert.equal(a.limiter, b.limiter);
  assert.deepEqual(limits.open('ip:1.1.1.1', 0), { refused: 'per-client-limit' });
  assert.equal(limits.connections('ip:1.1.1.1'), 2);
  b.release(0);
  b.release(0); // idempotent
  assert.equal(limits.connections('ip:1.1.1.1'), 1);
  lease(limits.open('ip:1.1.1.1', 0));
  assert.ok(!('refused' in limits.open('ip:2.2.2.2', 0)));
});

test('ClientLimits: an idle client is forgotten at release; one in debt is kept', () => {
  const limits = new ClientLimits({ rate: { messagesPerSec: 10 } });
  lease(limits.open('idle', 0)).release(0);
  assert.equal(limits.size, 0);
  const busy = lease(limits.open('busy', 0));
  for (let i = 0; i < 10; i++) busy.limiter?.take(1, 0);
  busy.release(0);
  assert.equal(limits.size, 1);
  // Reconnecting does not reset its bucket.
  const again = lease(limits.open('busy', 0));
  assert.ok((again.limiter?.take(1, 0) ?? 0) > 0);
  again.release(0);
  assert.equal(limits.sweep(500), 0);
  assert.equal(limits.sweep(1000), 1);
  assert.equal(limits.size, 0);
});

test('ClientLimits: the entry cap holds under a flood of distinct clients', () => {
  const limits = new ClientLimits({ rate: { messagesPerSec: 1 }, maxEntries: 100 });
  for (let i = 0; i < 10_000; i++) {
    const l = lease(limits.open(`ip:10.0.${i >> 8}.${i & 255}`, i));
    l.limiter?.take(1, i); // leave it in debt so it is not dropped at release
    l.release(i);
    assert.ok(limits.size <= 100, `size ${limits.size}`);
  }
  assert.equal(limits.size, 100);
});

test('ClientLimits: entries with open connections are never evicted; a full pinned table refuses', () => {
  const limits = new ClientLimits({ rate: { messagesPerSec: 1 }, maxEntries: 3 });
  const held = [0, 1, 2].map((i) => lease(limits.open(`c${i}`, 0)));
  assert.deepEqual(limits.open('c3', 0), { refused: 'table-full' });
  assert.equal(limits.size, 3);
  held[0]?.limiter?.take(1, 0);
  held[0]?.release(0); // in debt: kept, but now evictable
  const c3 = lease(limits.open('c3', 0));
  assert.equal(limits.size, 3);
  assert.equal(limits.connections('c0'), 0);
  assert.equal(limits.connections('c1'), 1);
  c3.release(0);
  assert.throws(() => new ClientLimits({ rate: {}, maxEntries: 0 }), ConfigError);
  assert.throws(() => new ClientLimits({ rate: {}, maxConnectionsPerClient: -1 }), ConfigError);
});

test('ClientLimits: eviction prefers idle entries over ones in debt', () => {
  const limits = new ClientLimits({ rate: { messagesPerSec: 1, burstSec: 10 }, maxEntries: 2 });
  const debtor = lease(limits.open('debtor', 0));
  debtor.limiter?.take(1, 0);
  debtor.release(0); // LRU, in debt until t = 1000
  const other = lease(limits.open('other', 500));
  other.limiter?.take(1, 500);
  other.release(500); // in debt until t = 1500
  // At t = 1200 'debtor' is idle again, 'other' is not: 'debtor' goes even though both are unpinned.
  lease(limits.open('new', 1200));
  assert.equal(limits.size, 2);
  const o = lease(limits.open('other', 1200));
  assert.equal(o.limiter?.isIdle(1200), false, 'other kept its state');
});
