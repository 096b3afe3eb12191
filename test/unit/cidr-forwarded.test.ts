import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCidrList, firstInvalidCidr, inRange, parseCidr, parseIp } from '../../src/security/cidr.js';
import { parseForwardedHeader, parseXForwardedFor, resolveForwarded, splitNode } from '../../src/server/forwarded.js';

const hex = (b: Uint8Array | undefined): string => (b === undefined ? 'undefined' : Buffer.from(b).toString('hex'));

test('parseIp: IPv4, IPv6 forms, brackets, zones; junk is undefined', () => {
  assert.equal(hex(parseIp('10.1.2.3')), '0a010203');
  assert.equal(hex(parseIp('::1')), '00000000000000000000000000000001');
  assert.equal(hex(parseIp('::')), '0'.repeat(32));
  assert.equal(hex(parseIp('2001:db8::8:800:200c:417a')), '20010db80000000000080800200c417a');
  assert.equal(hex(parseIp('fe80::1%eth0')), 'fe800000000000000000000000000001');
  assert.equal(hex(parseIp('[2001:db8::1]')), '20010db8000000000000000000000001');
  assert.equal(hex(parseIp('::ffff:192.0.2.1')), '00000000000000000000ffffc0000201');
  assert.equal(hex(parseIp('1:2:3:4:5:6:7:8')), '00010002000300040005000600070008');
  for (const bad of ['', '1.2.3', '256.1.1.1', 'example.com', '1::2::3', 'unknown', '_hidden', '1.2.3.4:80'])
    assert.equal(parseIp(bad), undefined, bad);
});

test('parseCidr and inRange: v4 and v6 prefixes, bare addresses, odd prefix lengths', () => {
  const r8 = parseCidr('10.0.0.0/8');
  assert.ok(r8);
  assert.equal(r8.prefix, 8);
  assert.ok(inRange(parseIp('10.255.1.2') as Uint8Array, r8));
  assert.ok(!inRange(parseIp('11.0.0.1') as Uint8Array, r8));
  const r12 = parseCidr('172.16.0.0/12') as NonNullable<ReturnType<typeof parseCidr>>;
  assert.ok(inRange(parseIp('172.31.255.255') as Uint8Array, r12));
  assert.ok(!inRange(parseIp('172.32.0.0') as Uint8Array, r12));
  const one = parseCidr('192.0.2.7') as NonNullable<ReturnType<typeof parseCidr>>;
  assert.equal(one.prefix, 32);
  assert.ok(inRange(parseIp('192.0.2.7') as Uint8Array, one));
  assert.ok(!inRange(parseIp('192.0.2.8') as Uint8Array, one));
  const all4 = parseCidr('0.0.0.0/0') as NonNullable<ReturnType<typeof parseCidr>>;
  assert.ok(inRange(parseIp('8.8.8.8') as Uint8Array, all4));
  assert.ok(!inRange(parseIp('::1') as Uint8Array, all4), 'an IPv6 address is never in an IPv4 range');
  const ula = parseCidr('fd00::/7') as NonNullable<ReturnType<typeof parseCidr>>;
  assert.ok(inRange(parseIp('fdab::1') as Uint8Array, ula));
  assert.ok(inRange(parseIp('fc00::1') as Uint8Array, ula));
  assert.ok(!inRange(parseIp('fe00::1') as Uint8Array, ula));
  const v6 = parseCidr('2001:db8:abcd:12::/63') as NonNullable<ReturnType<typeof parseCidr>>;
  assert.ok(inRange(parseIp('2001:db8:abcd:13::9') as Uint8Array, v6));
  assert.ok(!inRange(parseIp('2001:db8:abcd:14::9') as Uint8Array, v6));
  assert.ok(!inRange(parseIp('10.0.0.1') as Uint8Array, v6));
  for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/x', 'host/8', '10.0.0.0/-1', ''])
    assert.equal(parseCidr(bad), undefined, bad);
  assert.equal(firstInvalidCidr(['10.0.0.0/8', '::1', 'nope', 'x']), 'nope');
  assert.equal(firstInvalidCidr(['10.0.0.0/8', '::1']), undefined);
});

test('IPv4-mapped IPv6 addresses match IPv4 ranges (dual-stack listeners), mapped ranges too', () => {
  const list = compileCidrList(['127.0.0.0/8', '::ffff:10.0.0.0/104']);
  assert.ok(list.matches('::ffff:127.0.0.1'));
  assert.ok(list.matches('127.0.0.1'));
  assert.ok(list.matches('10.9.9.9'));
  assert.ok(list.matches('::ffff:10.9.9.9'));
  assert.ok(!list.matches('11.0.0.1'));
  assert.ok(!list.matches('::1'));
  assert.ok(!list.matches(undefined));
  assert.ok(!list.matches('unknown'));
  assert.ok(!compileCidrList([]).matches('127.0.0.1'));
  assert.throws(() => compileCidrList(['10.0.0.0/8', 'bad']), /bad/);
});

test('Forwarded (RFC 7239): elements, pairs, quoting, IPv6 nodes with ports, unknown and obfuscated', () => {
  const { hops, truncated } = parseForwardedHeader(
    'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", for=unknown, for=_hidden;host="a;b,c"',
  );
  assert.equal(truncated, false);
  assert.deepEqual(hops, [
    { for: '192.0.2.60', by: '203.0.113.43', proto: 'http' },
    { for: '2001:db8:cafe::17', port: '4711' },
    { for: 'unknown' },
    { for: '_hidden', host: 'a;b,c' },
  ]);
  assert.deepEqual(parseForwardedHeader('proto=https').hops, [{ for: 'unknown', proto: 'https' }]);
  assert.deepEqual(parseForwardedHeader('for="\\"q\\""').hops, [{ for: '"q"' }]);
  const long = parseForwardedHeader(Array.from({ length: 40 }, (_, i) => `for=10.0.0.${i}`).join(','));
  assert.equal(long.truncated, true);
  assert.equal(long.hops.length, 32);
  assert.equal(long.hops[31]?.for, '10.0.0.39', 'the hops nearest to us are kept');
});

test('X-Forwarded-For: addresses, ports, bare IPv6, blanks', () => {
  assert.deepEqual(parseXForwardedFor(' 203.0.113.7 , 10.0.0.2:5555,, 2001:db8::1, [2001:db8::2]:80 ').hops, [
    { for: '203.0.113.7' },
    { for: '10.0.0.2', port: '5555' },
    { for: '2001:db8::1' },
    { for: '2001:db8::2', port: '80' },
  ]);
  assert.deepEqual(splitNode('[::1]'), { address: '::1' });
});

test('resolveForwarded: untrusted peer = client-supplied chain, client is the peer', () => {
  const trusted = compileCidrList(['10.0.0.0/8']);
  const v = resolveForwarded({ 'x-forwarded-for': '1.2.3.4, 10.0.0.5' }, '192.0.2.9', trusted);
  assert.equal(v.header, 'x-forwarded-for');
  assert.equal(v.peerTrusted, false);
  assert.equal(v.clientSupplied, true);
  assert.equal(v.client, '192.0.2.9');
  assert.equal(v.clientSource, 'peer');
  assert.equal(v.hops.length, 2);
});

test('resolveForwarded: trusted peer yields the rightmost untrusted hop, skipping trusted proxies', () => {
  const trusted = compileCidrList(['10.0.0.0/8', 'fd00::/8']);
  // Client forged 6.6.6.6 in front; the real client 203.0.113.7 was appended by our proxy 10.0.0.5.
  const v = resolveForwarded({ 'x-forwarded-for': '6.6.6.6, 203.0.113.7, 10.0.0.5' }, '::ffff:10.0.0.9', trusted);
  assert.equal(v.peerTrusted, true);
  assert.equal(v.clientSupplied, false);
  assert.equal(v.client, '203.0.113.7');
  assert.equal(v.clientSource, 'x-forwarded-for');
  const f = resolveForwarded({ forwarded: 'for="[2001:db8::7]:1234", for="[fd00::3]"', 'x-forwarded-for': '9.9.9.9' }, 'fd00::1', trusted);
  assert.equal(f.header, 'forwarded', 'Forwarded wins over X-Forwarded-For');
  assert.equal(f.client, '2001:db8::7');
  // Every hop trusted: the leftmost is the best we know.
  assert.equal(resolveForwarded({ 'x-forwarded-for': '10.1.1.1, 10.2.2.2' }, '10.0.0.1', trusted).client, '10.1.1.1');
  // A trusted peer without a header: the peer is the client.
  const none = resolveForwarded({}, '10.0.0.1', trusted);
  assert.equal(none.header, null);
  assert.equal(none.client, '10.0.0.1');
  assert.equal(none.clientSource, 'peer');
  // An obfuscated hop stops the walk: the client is unknown to us, and we say so.
  assert.equal(resolveForwarded({ forwarded: 'for=1.1.1.1, for=_proxy7' }, '10.0.0.1', trusted).client, '_proxy7');
});
