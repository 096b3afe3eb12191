/**
 * Descriptor exhaustion, made visible. When the process runs out of open files, libuv answers
 * EMFILE on accept by itself (it closes a reserved descriptor, accepts and drops the
 * connection): Node reports nothing, so the server would refuse connections silently. This
 * watch looks once a second, but only while the connections come within reach of the limit
 * (far from it, it costs one comparison), and reports each episode: an error event when no
 * descriptor is left (logged; counted in `echo_descriptor_exhaustions_total`) and one when
 * descriptors are free again.
 */
import { closeSync, openSync, readdirSync } from 'node:fs';
import { EchoError, ErrorCode } from '../errors.js';
import { channels } from '../core/events.js';
import { FD_RESERVE, type OpenFileLimit } from './fd-limit.js';

/** Free descriptors needed before an episode counts as over (no flapping at the edge). */
const RECOVERED_FREE = 16;

export interface DescriptorWatch {
  /** Episodes of exhaustion since start. */
  readonly exhaustions: number;
  stop(): void;
}

/** True when the process cannot open one more descriptor now. */
function exhaustedNow(): boolean {
  try {
    closeSync(openSync('/dev/null', 'r'));
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE';
  }
}

function openDescriptors(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

export function watchDescriptors(limit: OpenFileLimit | undefined, connections: () => number, periodMs = 1000): DescriptorWatch {
  let exhaustions = 0;
  let since = 0;
  if (limit === undefined || !Number.isFinite(limit.soft)) return { exhaustions: 0, stop() {} };
  const soft = limit.soft;
  function check(): void {
    if (since === 0) {
      if (connections() < soft - 2 * FD_RESERVE || !exhaustedNow()) return;
      since = Date.now();
      exhaustions++;
      publish(
        `open files at the limit (${soft}): the OS refuses new connections (EMFILE) until descriptors free up; raise ulimit -n / LimitNOFILE or lower --max-connections`,
      );
      return;
    }
    const open = openDescriptors();
    if (open === undefined || open > soft - RECOVERED_FREE) return;
    publish(`open files below the limit again (${open} of ${soft}) after ${Date.now() - since} ms: accepting connections`);
    since = 0;
  }
  const timer = setInterval(check, periodMs);
  timer.unref();
  return {
    get exhaustions() {
      return exhaustions;
    },
    stop() {
      clearInterval(timer);
    },
  };
}

function publish(message: string): void {
  if (channels.error.hasSubscribers) channels.error.publish({ connection: undefined, error: new EchoError(ErrorCode.LIMIT, message) });
}
