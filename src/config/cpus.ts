/**
 * How many CPUs this process may use: the machine's (`os.availableParallelism()`, which follows
 * the affinity mask) capped by a cgroup CPU quota, as a container with a CPU limit has
 * (Kubernetes `resources.limits.cpu`, `docker --cpus`). `--workers auto` uses it, so that a pod
 * limited to 2 CPUs on a 64-core node runs 2 workers, not 64 throttled ones.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Reads a file as text; throws when it is missing (injected in tests). */
export type ReadText = (path: string) => string;

const readText: ReadText = (path) => readFileSync(path, 'utf8');

/**
 * The cgroup CPU quota in CPUs (e.g. 1.5), or undefined when there is none. cgroup v2: the
 * process's own group from `/proc/self/cgroup` (`0::/path`), then the namespace root;
 * `cpu.max` is `max PERIOD` (no quota) or `QUOTA PERIOD`. cgroup v1: `cpu.cfs_quota_us` /
 * `cpu.cfs_period_us` (quota -1: none).
 */
export function cgroupCpuQuota(read: ReadText = readText): number | undefined {
  // The process's groups: `0::/path` (v2) and `N:cpu,cpuacct:/path` (v1).
  let v2Path = '';
  let v1Path = '';
  try {
    for (const line of read('/proc/self/cgroup').split('\n')) {
      const m = /^(\d+):([^:]*):(.*)$/.exec(line);
      if (m === null) continue;
      const controllers = m[2] as string;
      const path = (m[3] as string).trim();
      if (m[1] === '0' && controllers === '') v2Path = path;
      else if (controllers.split(',').includes('cpu')) v1Path = path;
    }
  } catch {
    // no /proc (not Linux): only the well-known files below
  }
  const v2 = within('/sys/fs/cgroup', v2Path, 'cpu.max');
  for (const file of v2) {
    let text: string;
    try {
      text = read(file);
    } catch {
      continue;
    }
    const [quota, period] = text.trim().split(/\s+/);
    if (quota === 'max') return undefined;
    return ratio(quota, period);
  }
  for (const dir of within('/sys/fs/cgroup/cpu', v1Path, '')) {
    try {
      return ratio(read(`${dir}cpu.cfs_quota_us`), read(`${dir}cpu.cfs_period_us`));
    } catch {
      continue;
    }
  }
  return undefined;
}

/** `root/path/file`, then `root/file` (inside a cgroup namespace the group is the root). */
function within(root: string, path: string, file: string): string[] {
  const own = path !== '' && path !== '/' ? [`${root}${path}/${file}`] : [];
  return [...own, `${root}/${file}`];
}

/** quota / period in CPUs, or undefined for no quota (-1, `max`, or anything unreadable). */
function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota?.trim());
  const p = Number(period?.trim());
  return q > 0 && p > 0 ? q / p : undefined;
}

/** CPUs this process may use: the machine's, capped by the cgroup quota (rounded up, at least 1). */
export function usableCpus(read: ReadText = readText, machine: number = availableParallelism()): number {
  const quota = cgroupCpuQuota(read);
  return quota === undefined ? machine : Math.max(1, Math.min(machine, Math.ceil(quota)));
}
