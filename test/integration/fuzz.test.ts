/**
 * A short run of the network fuzzer (bench/fuzz/fuzz.ts; `npm run fuzz -- --seconds N` for
 * longer ones): 10 s of hostile connections at every listener of two CLI servers while good
 * clients on every transport keep echoing. It fails on a missed or wrong echo, a server exit,
 * or descriptors and memory not back near baseline (the tolerances are in the fuzzer).
 * FUZZ_SEED picks another seed (the default keeps CI's bytes the same from run to run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../../bench/fuzz/fuzz.js';

test('network fuzz, 10 s: good clients keep every echo, the servers survive and return to baseline', { timeout: 90_000 }, async () => {
  const seed = Number(process.env['FUZZ_SEED'] ?? 20261201);
  const lines: string[] = [];
  const r = await runFuzz({ seconds: 10, seed, concurrency: 8, log: (l) => lines.push(l) });
  assert.deepEqual(r.failures, [], lines.join('\n'));
  // The run must have thrown something at every listener, and good traffic must have flowed.
  for (const t of ['http', 'ws', 'wss', 'v1', 'unix', 'len', 'raw', 'tls'])
    assert.ok((r.thrown.byTarget[t] ?? 0) > 10, `${t}: ${lines.join('\n')}`);
  for (const g of r.good) assert.ok(g.echoed > 100 && g.echoed === g.sent, `${g.transport}: ${g.echoed}/${g.sent}`);
});
