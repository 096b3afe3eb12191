/**
 * `--workers auto` counts the CPUs the process may use: the machine's, capped by a cgroup CPU
 * quota (v2 `cpu.max` of the process's own group or the namespace root; v1 CFS quota/period).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cgroupCpuQuota, usableCpus, type ReadText } from '../../src/config/cpus.js';

/** A file system of these files only (others throw ENOENT, as missing files do). */
function files(map: Record<string, string>): ReadText {
  return (path) => {
    const text = map[path];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return text;
  };
}

describe('cgroup CPU quota', () => {
  test('cgroup v2 inside a container (namespace root): a 1.5-CPU limit is 2 workers on 64 cores', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '150000 100000\n' });
    assert.equal(cgroupCpuQuota(read), 1.5);
    assert.equal(usableCpus(read, 64), 2);
  });

  test("cgroup v2 without a namespace: the process's own group decides", () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods.slice/pod1/ctr\n',
      '/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max': '50000 100000',
      '/sys/fs/cgroup/cpu.max': 'max 100000',
    });
    assert.equal(cgroupCpuQuota(read), 0.5);
    assert.equal(usableCpus(read, 8), 1, 'never below one');
  });

  test('cgroup v2 with no limit (`max`), and no cgroup files at all: the machine count', () => {
    assert.equal(usableCpus(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' }), 12), 12);
    assert.equal(usableCpus(files({}), 12), 12);
  });

  test('cgroup v1: CFS quota and period of the cpu controller (-1: none)', () => {
    const cg = '12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n0::/\n';
    const limited = files({
      '/proc/self/cgroup': cg,
      '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us': '300000\n',
      '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupCpuQuota(limited), 3);
    assert.equal(usableCpus(limited, 16), 3);
    const unlimited = files({
      '/proc/self/cgroup': '1:cpu:/\n0::/\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupCpuQuota(unlimited), undefined);
    assert.equal(usableCpus(unlimited, 16), 16);
  });

  test('a quota above the machine count does not add CPUs', () => {
    assert.equal(usableCpus(files({ '/sys/fs/cgroup/cpu.max': '800000 100000' }), 4), 4);
  });
});
