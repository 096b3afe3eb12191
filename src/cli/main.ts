/**
 * The CLI: the only place that owns the process (signals, exit codes, the log destination).
 * Exit codes: 0 ok (drained in time), 1 runtime error or drain deadline passed, 2 invalid settings.
 */
import cluster from 'node:cluster';
import { ConfigError } from '../errors.js';
import { helpText, loadSettings, type Settings } from '../config/index.js';
import { createEchoServer, VERSION, type EchoServer } from '../server/echo-server.js';
import { attachLogging, createLogger, type Logger } from '../observability/logger.js';
import { attachTracing, createTracing } from '../observability/tracing.js';

/** Runs the CLI; resolves with the exit code (undefined: keep running, the server owns the loop). */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number | undefined> {
  let parsed;
  try {
    parsed = loadSettings(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`echoserver: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  switch (parsed.command) {
    case 'help':
      process.stdout.write(helpText());
      return 0;
    case 'version':
      process.stdout.write(`echoserver ${VERSION}\n`);
      return 0;
    case 'serve':
      return serve(parsed.settings);
    default:
      process.stderr.write(`echoserver: unknown command '${parsed.command}' (try --help)\n`);
      return 2;
  }
}

async function serve(settings: Readonly<Settings>): Promise<number | undefined> {
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, base: { instance: settings.instance } });
  if (settings.workers > 1 && cluster.isPrimary) return runPrimary(settings, logger);
  const detachLogging = attachLogging(logger);
  // Tracing subscribes only when an OTLP endpoint is configured (OTEL_* variables).
  const tracing = createTracing({ sampleRatio: settings.traceSampleRatio, serviceName: process.env['OTEL_SERVICE_NAME'] ?? 'echoserver', instance: settings.instance });
  const detachTracing = attachTracing(tracing);
  let server: EchoServer;
  try {
    server = createEchoServer(settings);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`echoserver: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  try {
    const addresses = await server.listen();
    logger.info({ event: 'listening', listeners: addresses, version: VERSION, worker: cluster.isWorker ? cluster.worker?.id : undefined }, 'echoserver listening');
    if (settings.insecure && settings.host !== '127.0.0.1' && settings.host !== '::1' && settings.host !== 'localhost') {
      logger.warn({ event: 'insecure', host: settings.host }, 'plaintext listeners on a non-loopback address (--insecure)');
    }
  } catch (err) {
    logger.error({ err }, 'failed to start');
    process.stderr.write(`echoserver: ${(err as Error).message}\n`);
    detachLogging();
    return 1;
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ event: 'draining', signal, drainMs: settings.drainTimeoutMs }, 'draining');
    server.close({ drainMs: settings.drainTimeoutMs }).then(
      ({ clean }) => {
        const totals = Object.entries(server.stats())
          .filter(([, s]) => s.connectionsOpened > 0)
          .map(([transport, s]) => ({ transport, connections: s.connectionsOpened, messagesIn: s.messagesIn, messagesOut: s.messagesOut }));
        logger.info({ event: 'stopped', clean, totals }, clean ? 'stopped' : 'stopped: drain deadline passed, connections dropped');
        detachTracing();
        detachLogging();
        void tracing.shutdown();
        logger.flush();
        process.exitCode = clean ? 0 : 1;
        // A cluster worker's IPC channel would keep it alive: let go of it.
        if (cluster.isWorker) cluster.worker?.disconnect();
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return undefined;
}

/** `--workers N`: N processes share the listeners (cluster); signals are forwarded. */
function runPrimary(settings: Readonly<Settings>, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let failed = false;
    let stopping = false;
    for (let i = 0; i < settings.workers; i++) cluster.fork();
    cluster.on('exit', (worker, code, signal) => {
      if (code !== 0) failed = true;
      if (!stopping) logger.error({ worker: worker.id, code, signal }, 'worker exited');
      if (Object.keys(cluster.workers ?? {}).length === 0) resolve(failed ? 1 : 0);
    });
    const stop = (signal: NodeJS.Signals): void => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
