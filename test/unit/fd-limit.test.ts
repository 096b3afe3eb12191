import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FD_RESERVE, fdLimitWarning, parseProcLimits, readOpenFileLimit } from '../../src/server/fd-limit.js';

const PROC = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                1048576              files
Max locked memory         8388608              8388608              bytes
`;

test('parseProcLimits reads the Max open files row; unlimited is Infinity', () => {
  assert.deepEqual(parseProcLimits(PROC), { soft: 20_000, hard: 1_048_576 });
  assert.deepEqual(parseProcLimits('Max open files            unlimited            unlimited            files\n'), {
    soft: Infinity,
    hard: Infinity,
  });
  assert.equal(parseProcLimits('Max cpu time  unlimited unlimited seconds\n'), undefined);
  assert.equal(parseProcLimits('Max open files  lots  more  files\n'), undefined);
  assert.equal(readOpenFileLimit('/nonexistent/limits'), undefined);
});

test('fdLimitWarning: silent when maxConnections fits, names the limit and the way to raise it when not', () => {
  const limit = { soft: 20_000, hard: 1_048_576 };
  assert.equal(fdLimitWarning(20_000 - FD_RESERVE, limit), undefined);
  assert.equal(fdLimitWarning(100_000, { soft: Infinity, hard: Infinity }), undefined);
  assert.equal(fdLimitWarning(100_000, undefined), undefined);
  const soft = fdLimitWarning(100_000, limit) ?? '';
  assert.match(soft, /maxConnections 100000 cannot be reached/);
  assert.match(soft, /20000 open files/);
  assert.match(soft, /ulimit -n 100064/);
  assert.match(soft, /--max-connections to 19936/);
  const hard = fdLimitWarning(100_000, { soft: 20_000, hard: 20_000 }) ?? '';
  assert.match(hard, /hard limit 20000/);
  assert.match(hard, /LimitNOFILE=100064/);
});
