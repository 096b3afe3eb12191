/**
 * The process's open-file limit (`ulimit -n`), read at start: every connection holds one file
 * descriptor, so a `maxConnections` above the limit cannot be reached — past it, accepts fail
 * with EMFILE (the listener logs them and keeps going) instead of the clean 503 / 1013 the
 * connection limit gives. Linux only (`/proc/self/limits`); elsewhere nothing is read.
 *
 * Node raises its soft limit to the hard limit at start-up, so the soft limit read here is
 * usually the hard one: the limit to raise is then the hard one (`LimitNOFILE=` in a systemd
 * unit, `--ulimit nofile=` for Docker, `ulimit -Hn` as root).
 */
import { readFileSync } from 'node:fs';

/** Open-file limits; `Infinity` for `unlimited`. */
export interface OpenFileLimit {
  readonly soft: number;
  readonly hard: number;
}

/** Descriptors kept for what is not a connection: listeners, stdio, log and certificate files, DNS, JWKS fetches. */
export const FD_RESERVE = 64;

/** The `Max open files` row of a `/proc/<pid>/limits` text; undefined when absent or unreadable. */
export function parseProcLimits(text: string): OpenFileLimit | undefined {
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  if (line === undefined) return undefined;
  const [soft, hard] = line.slice('Max open files'.length).trim().split(/\s+/);
  const value = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
  const limit = { soft: value(soft), hard: value(hard) };
  return Number.isNaN(limit.soft) || Number.isNaN(limit.hard) ? undefined : limit;
}

/** This process's limit, or undefined where it cannot be read (not Linux, no /proc). */
export function readOpenFileLimit(path = '/proc/self/limits'): OpenFileLimit | undefined {
  try {
    return parseProcLimits(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * A warning when `maxConnections` (plus {@link FD_RESERVE}) does not fit in the soft limit,
 * naming the limit and how to raise it; undefined when it fits or the limit is unknown.
 */
export function fdLimitWarning(maxConnections: number, limit: OpenFileLimit | undefined): string | undefined {
  if (limit === undefined) return undefined;
  const needed = maxConnections + FD_RESERVE;
  if (needed <= limit.soft) return undefined;
  const hardText = limit.hard === Infinity ? 'unlimited' : String(limit.hard);
  const raise =
    needed <= limit.hard
      ? `raise the soft limit to at least ${needed} (ulimit -n ${needed} before starting)`
      : `raise the hard limit to at least ${needed} (LimitNOFILE=${needed} in the systemd unit, docker --ulimit nofile=${needed}, or ulimit -Hn as root)`;
  return (
    `maxConnections ${maxConnections} cannot be reached: the process may have ${limit.soft} open files ` +
    `(soft limit; hard limit ${hardText}), one per connection plus ${FD_RESERVE} kept for listeners and files; ` +
    `past it new connections fail with EMFILE. Lower --max-connections to ${Math.max(1, limit.soft - FD_RESERVE)} or ${raise}`
  );
}
