/**
 * A load thread of `echoserver bench` (worker_threads): opens its share of the connections,
 * reports connect times, then on 'start' drives the load and posts a tick about once a second
 * (counts, errors and an encoded latency histogram of that second) until the run and the drain
 * are over. Running the load off the main thread keeps the live line and the aggregation from
 * disturbing it, and --threads N spreads it over cores.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LinkError, openSocket } from './connect.js';
import { encode, newHistogram, recordMs } from './histogram.js';
import type { Link } from './link.js';
import { LoadConnection, type LoadShared } from './load-connection.js';
import { countError, emptyErrors, ErrorKind, type ReadyMessage, type TickMessage, type ToWorker, type WorkerConfig } from './messages.js';
import { StreamLink } from './stream-link.js';
import { WsLink } from './ws-link.js';
import { WsOwnLink } from './ws-own-link.js';

/** Connections opened at once (a burst of thousands of SYNs would measure the accept queue). */
const CONNECT_CONCURRENCY = 64;
/** Rate mode: how often due messages are sent, ms (Node timers do not go finer). */
const TICK_MS = 1;

const port = parentPort;
if (port === null) throw new Error('bench/worker.js runs as a worker thread');
const config = workerData as WorkerConfig;
const toLocal = (abs: number): number => abs - performance.timeOrigin;

const shared: LoadShared = {
  measureAt: Infinity,
  endAt: Infinity,
  stopping: false,
  echoedAll: 0,
  sent: 0,
  echoed: 0,
  histogram: newHistogram(),
  errors: emptyErrors(),
  onIdle,
};
const conns: LoadConnection[] = [];
let idle = 0;
let finished = false;
let drainTimer: NodeJS.Timeout | undefined;
let tickTimer: NodeJS.Timeout | undefined;
let rateTimer: NodeJS.Timeout | undefined;

async function openOne(conn: LoadConnection, connectHistogram: ReturnType<typeof newHistogram>): Promise<void> {
  const t0 = performance.now();
  try {
    const socket = await openSocket(config.target, config.tls, config.connectTimeoutMs);
    let link: Link;
    if (config.target.framing === 'ws' && config.wsClient === 'own') {
      link = await WsOwnLink.open(config.target, socket, config.size, config.token, config.connectTimeoutMs, conn);
    } else if (config.target.framing === 'ws') {
      link = await WsLink.open(config.target, socket, config.size, config.token, config.connectTimeoutMs, conn);
    } else {
      const s = new StreamLink(socket, config.target.framing, config.size, conn);
      if (config.token !== undefined) await s.authenticate(config.token, config.connectTimeoutMs);
      link = s;
    }
    conn.link = link;
    recordMs(connectHistogram, performance.now() - t0);
  } catch (err) {
    const kind = err instanceof LinkError ? err.kind : ErrorKind.CONNECT;
    countError(shared.errors, kind, `connection ${conn.id}: ${(err as Error).message}`);
    conn.done = true;
  }
}

async function connectAll(): Promise<void> {
  for (let i = 0; i < config.connections; i++) {
    const rate = config.rate === undefined ? 0 : config.rate / config.connections;
    conns.push(new LoadConnection(config.firstConnection + i, config.size, config.window, rate, shared));
  }
  const connectHistogram = newHistogram();
  let nextIndex = 0;
  const lane = async (): Promise<void> => {
    while (nextIndex < conns.length) await openOne(conns[nextIndex++] as LoadConnection, connectHistogram);
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, conns.length) }, lane));
  const connected = conns.filter((c) => !c.done).length;
  idle = conns.length - connected;
  const ready: ReadyMessage = { type: 'ready', connected, connectHistogram: encode(connectHistogram), errors: shared.errors };
  shared.errors = emptyErrors();
  port?.postMessage(ready);
}

function tick(final: boolean): void {
  const h = shared.histogram;
  const msg: TickMessage = {
    type: 'tick',
    at: performance.timeOrigin + performance.now(),
    echoedAll: shared.echoedAll,
    sent: shared.sent,
    echoed: shared.echoed,
    histogram: h.totalCount > 0 ? encode(h) : '',
    errors: shared.errors,
    final,
  };
  h.reset();
  shared.echoedAll = shared.sent = shared.echoed = 0;
  shared.errors = emptyErrors();
  port?.postMessage(msg);
}

/** Ticks at measureAt + k seconds (and during the warm-up before it), so threads' seconds line up. */
function scheduleTick(): void {
  const now = performance.now();
  const k = Math.floor((now - shared.measureAt) / 1000) + 1;
  const at = Math.min(shared.measureAt + k * 1000, shared.endAt);
  tickTimer = setTimeout(
    () => {
      if (finished) return;
      if (!shared.stopping) tick(false);
      scheduleTick();
    },
    Math.max(0, at - now),
  );
}

function start(startAt: number, measureAt: number, endAt: number): void {
  shared.measureAt = toLocal(measureAt);
  shared.endAt = toLocal(endAt);
  const begin = toLocal(startAt);
  const live = conns.filter((c) => !c.done);
  live.forEach((c, i) => c.startSchedule(begin + (i / live.length) * (config.rate === undefined ? 0 : (1000 * live.length) / config.rate)));
  const go = (): void => {
    const now = performance.now();
    for (const c of live) c.pump(now);
    if (config.rate !== undefined)
      rateTimer = setInterval(() => {
        const t = performance.now();
        for (const c of live) c.pump(t);
      }, TICK_MS);
    scheduleTick();
    setTimeout(stop, Math.max(0, shared.endAt - performance.now()));
  };
  setTimeout(go, Math.max(0, begin - performance.now()));
}

function stop(): void {
  if (shared.stopping) return;
  shared.stopping = true;
  clearInterval(rateTimer);
  for (const c of conns) if (!c.done && c.inFlight === 0) c.finish();
  if (idle >= conns.length) {
    end();
    return;
  }
  drainTimer = setTimeout(() => {
    for (const c of conns) {
      if (c.done) continue;
      c.countLost();
      c.finish();
    }
  }, config.drainMs);
}

/** A connection finished or ended early (the others go on); after the run, the last one ends the thread's work. */
function onIdle(): void {
  idle++;
  if (shared.stopping && idle >= conns.length) end();
}

function end(): void {
  if (finished) return;
  finished = true;
  clearTimeout(drainTimer);
  clearTimeout(tickTimer);
  clearInterval(rateTimer);
  tick(true);
  // Let the thread exit once its sockets have closed (they close themselves, with deadlines).
  port?.unref();
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'start') start(m.startAt, m.measureAt, m.endAt);
  else if (m.type === 'stop') {
    shared.endAt = Math.min(shared.endAt, toLocal(m.at));
    stop();
  }
});

await connectAll();
