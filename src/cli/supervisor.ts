/**
 * `--workers N` (or `auto`, one per CPU): the primary process forks N workers that share the
 * listeners (node:cluster) and supervises them.
 *
 * - Each worker has a slot id, 1..N, passed as `ECHO_WORKER_ID`; it shows in `srv`, hello,
 *   `/info`, logs and metrics labels. A replacement keeps the id of the worker it replaces.
 * - A worker that exits unexpectedly after it was listening is replaced at once; the exit is
 *   logged (`worker.crash`) and counted (`echo_worker_crashes_total` in `/metrics`). Bounded:
 *   more than MAX_CRASHES crashes of one slot within CRASH_WINDOW_MS stop the whole server
 *   (exit 1), since a worker that dies on every start would otherwise spin forever. A worker
 *   that exits before it ever listened (bad certificate, port taken) stops the server too.
 * - Readiness: the primary knows which workers are listening and tells every worker whether
 *   all of them are; a worker's `/readyz` is 200 only then (`readyGate` of createEchoServer).
 *   A scrape of `/readyz` lands on any worker, so each must answer for the whole server.
 * - The first SIGTERM/SIGINT asks every worker to drain (over IPC, see main.ts); a second one
 *   is forwarded as a signal, which a draining worker takes as "exit now".
 */
import cluster, { type Worker } from 'node:cluster';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Settings } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import { serveClusterMetrics } from './cluster-metrics.js';

/** primary → worker: drain (the signal the primary got). */
export const DRAIN = 'echoserver:drain';
/** worker → primary: my listeners are up. */
const LISTENING = 'echoserver:worker-listening';
/** primary → worker: whether every worker is listening. */
const CLUSTER_READY = 'echoserver:cluster-ready';

/** Crashes of one slot tolerated within CRASH_WINDOW_MS before the server gives up. */
export const MAX_CRASHES = 5;
export const CRASH_WINDOW_MS = 60_000;

interface Slot {
  readonly id: string;
  worker: Worker | undefined;
  listening: boolean;
  /** Times of recent crashes (at most MAX_CRASHES + 1 kept). */
  crashes: number[];
}

/** A send to a worker that has just exited fails; its 'exit' event handles it. */
const ignoreSendError = (): void => {};

const isType = (m: unknown, type: string): boolean => typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type;

/** Runs the primary until every worker has exited; resolves with the exit code. */
export function runPrimary(settings: Readonly<Settings>, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let failed = false;
    let stopping = false;
    let allReady = false;
    const registry = new Registry();
    const crashes = new Counter({
      name: 'echo_worker_crashes_total',
      help: 'Worker processes that exited unexpectedly (--workers); each was replaced.',
      registers: [registry],
    });
    const readyGauge = new Gauge({
      name: 'echo_workers_listening',
      help: 'Worker processes currently listening, out of the --workers count (echo_workers_configured).',
      registers: [registry],
    });
    new Gauge({ name: 'echo_workers_configured', help: 'Worker processes configured (--workers).', registers: [registry] }).set(
      settings.workers,
    );
    const stopMetrics = serveClusterMetrics(undefined, () => registry.getMetricsAsJSON());
    const slots: Slot[] = Array.from({ length: settings.workers }, (_, i) => ({
      id: String(i + 1),
      worker: undefined,
      listening: false,
      crashes: [],
    }));
    const slotOf = new Map<number, Slot>();

    const fork = (slot: Slot): void => {
      const worker = cluster.fork({ ECHO_WORKER_ID: slot.id });
      // A message to a worker that is exiting fails with EPIPE on its IPC channel; its 'exit'
      // is what counts, so the error is only noted.
      worker.on('error', (err: Error) => logger.debug({ err, worker: slot.id }, 'worker IPC error'));
      slot.worker = worker;
      slot.listening = false;
      slotOf.set(worker.id, slot);
    };

    /** Tells every worker whether all are listening; logs when that changes. */
    const publishReadiness = (): void => {
      const listening = slots.filter((s) => s.listening).length;
      readyGauge.set(listening);
      const ready = !stopping && listening === slots.length;
      for (const s of slots) if (s.worker?.isConnected() === true) s.worker.send({ type: CLUSTER_READY, ready }, ignoreSendError);
      if (ready !== allReady) {
        allReady = ready;
        logger.info(
          { event: 'workers.ready', ready, listening, workers: slots.length },
          ready ? 'every worker is listening' : 'not every worker is listening',
        );
      }
    };

    const stop = (signal: NodeJS.Signals): void => {
      const again = stopping;
      stopping = true;
      publishReadiness();
      for (const s of slots) {
        const w = s.worker;
        if (w === undefined || w.isDead()) continue;
        if (again) w.process.kill(signal);
        else if (w.isConnected()) w.send({ type: DRAIN, signal }, ignoreSendError); // else: drained, exiting
      }
    };

    cluster.on('message', (worker, m: unknown) => {
      if (!isType(m, LISTENING)) return;
      const slot = slotOf.get(worker.id);
      if (slot === undefined || slot.worker !== worker) return;
      slot.listening = true;
      publishReadiness();
      // A worker that starts after a drain began (a replacement) drains at once.
      if (stopping && worker.isConnected()) worker.send({ type: DRAIN, signal: 'SIGTERM' }, ignoreSendError);
    });

    cluster.on('exit', (worker, code, signal) => {
      const slot = slotOf.get(worker.id);
      slotOf.delete(worker.id);
      if (slot !== undefined && slot.worker === worker) {
        const wasListening = slot.listening;
        slot.worker = undefined;
        slot.listening = false;
        if (stopping) {
          if (code !== 0) failed = true;
        } else if (!wasListening) {
          failed = true;
          logger.error(
            { event: 'worker.failed', worker: slot.id, pid: worker.process.pid, code, signal },
            'worker exited before listening; stopping',
          );
          stop('SIGTERM');
        } else {
          crashes.inc();
          const now = Date.now();
          slot.crashes = [...slot.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
          const replace = slot.crashes.length <= MAX_CRASHES;
          logger.error(
            { event: 'worker.crash', worker: slot.id, pid: worker.process.pid, code, signal, replaced: replace },
            replace
              ? 'worker exited unexpectedly; starting a replacement'
              : `worker crashed more than ${MAX_CRASHES} times in ${CRASH_WINDOW_MS / 1000} s; stopping`,
          );
          if (replace) fork(slot);
          else {
            failed = true;
            stop('SIGTERM');
          }
        }
        publishReadiness();
      }
      if (slots.every((s) => s.worker === undefined)) {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        stopMetrics();
        resolve(failed ? 1 : 0);
      }
    });

    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    for (const slot of slots) fork(slot);
  });
}

/**
 * In a worker: the readiness gate (true once the primary says every worker listens) and the
 * call that tells the primary this worker is listening.
 */
export function workerReadiness(): { gate: () => boolean; listening: () => void } {
  let ready = false;
  process.on('message', (m: unknown) => {
    if (isType(m, CLUSTER_READY)) ready = (m as { ready?: unknown }).ready === true;
  });
  return {
    gate: () => ready,
    listening: () => process.send?.({ type: LISTENING }),
  };
}
