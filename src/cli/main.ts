/**
 * The CLI: the only place that owns the process (signals, exit codes, the log destination).
 * Exit codes: 0 ok (drained in time), 1 runtime error or drain deadline passed, 2 invalid settings.
 */
import cluster from 'node:cluster';
import { ConfigError } from '../errors.js';
import { helpText, loadSettings, SETTINGS, type Settings } from '../config/index.js';
import { createEchoServer, VERSION, type EchoServer } from '../server/echo-server.js';
import { attachLogging, createLogger } from '../observability/logger.js';
import { attachTracing, createTracing } from '../observability/tracing.js';
import { clusterMetricsView } from './cluster-metrics.js';
import { DRAIN, runPrimary, workerReadiness } from './supervisor.js';

/** Runs the CLI; resolves with the exit code (undefined: keep running, the server owns the loop). */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number | undefined> {
  // `bench` has its own flags (load, TLS client options), not the server's settings.
  if (argv[0] === 'bench') {
    const { benchCommand } = await import('./bench/command.js');
    return benchCommand(argv.slice(1));
  }
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
    case 'probe': {
      const url = parsed.rest[0];
      if (url === undefined) {
        process.stderr.write('echoserver: probe needs a URL, e.g. echoserver probe wss://127.0.0.1:8080/\n');
        return 2;
      }
      const target = url === 'self' ? selfUrl(parsed.settings) : url;
      if (target === undefined) {
        process.stderr.write('echoserver: probe self: no listener is configured (ws, tcp and unix are all off)\n');
        return 2;
      }
      // The probe (and the ws client it uses) is loaded only for this command, not by serve.
      const { probe } = await import('./probe.js');
      const result = await probe(target, {
        timeoutMs: Math.min(parsed.settings.handshakeTimeoutMs, 10_000),
        verifyTls: !parsed.settings.insecure && url !== 'self',
      });
      process.stdout.write(JSON.stringify(result) + '\n');
      return result.ok ? 0 : 1;
    }
    default:
      process.stderr.write(`echoserver: unknown command '${parsed.command}' (try --help)\n`);
      return 2;
  }
}

async function serve(settings: Readonly<Settings>): Promise<number | undefined> {
  const base = settings.workerId === null ? { instance: settings.instance } : { instance: settings.instance, worker: settings.workerId };
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, base });
  if (settings.workers > 1 && cluster.isPrimary) {
    // The primary numbers its workers itself; one id for all of them would defeat the purpose.
    if (settings.workerId !== null) {
      process.stderr.write('echoserver: --worker-id (ECHO_WORKER_ID) is set by the --workers primary for each worker; leave it out\n');
      return 2;
    }
    return runPrimary(settings, logger);
  }
  const detachLogging = attachLogging(logger);
  // Tracing subscribes only when an OTLP endpoint is configured (OTEL_* variables).
  const tracing = await createTracing({
    sampleRatio: settings.traceSampleRatio,
    serviceName: process.env['OTEL_SERVICE_NAME'] ?? 'echoserver',
    instance: settings.instance,
  });
  const detachTracing = attachTracing(tracing);
  let server: EchoServer;
  // A worker's /metrics answers for the whole cluster (cluster-metrics.ts), its /readyz for
  // every worker (supervisor.ts).
  const readiness = cluster.isWorker ? workerReadiness() : undefined;
  try {
    const labels: Record<string, string> = settings.workerId === null ? {} : { worker: settings.workerId };
    server = createEchoServer(
      readiness === undefined
        ? settings
        : { ...settings, metricsView: (own) => clusterMetricsView(own, undefined, labels), readyGate: readiness.gate },
    );
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`echoserver: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Signals are handled from before listen(): a supervisor may signal as soon as it sees us.
  let stopping = false;
  let drained = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      if (drained) return; // already done and on the way out: nothing to cut short
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ event: 'draining', signal, drainMs: settings.drainTimeoutMs }, 'draining');
    server.close({ drainMs: settings.drainTimeoutMs }).then(
      ({ clean }) => {
        drained = true;
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
  // --workers: the primary asks for the drain over IPC, not by signal, so that a worker that
  // also got the signal itself (a supervisor signalling the whole process group) does not take
  // the primary's request for a second signal and exit without draining.
  if (cluster.isWorker) {
    process.on('message', (m: unknown) => {
      const drain = m as { type?: unknown; signal?: NodeJS.Signals } | null;
      if (drain?.type === DRAIN && !stopping) stop(drain.signal ?? 'SIGTERM');
    });
  }
  try {
    const addresses = await server.listen();
    logger.info({ event: 'listening', listeners: addresses, version: VERSION }, 'echoserver listening');
    readiness?.listening();
    const tlsInfo = server.tls;
    if (tlsInfo?.selfSigned === true) {
      logger.info(
        {
          event: 'tls.self-signed',
          sha256: tlsInfo.fingerprint256,
          subject: tlsInfo.subject,
          notAfter: tlsInfo.notAfter,
          certificate: tlsInfo.certificatePem,
        },
        `TLS with a self-signed certificate generated at start, SHA-256 ${tlsInfo.fingerprint256}. Trust it by saving the "certificate" field as a PEM file for your client (curl --cacert, NODE_EXTRA_CA_CERTS) or pin the fingerprint; for production pass --tls-cert and --tls-key.`,
      );
    } else if (tlsInfo !== undefined) {
      logger.info(
        { event: 'tls', sha256: tlsInfo.fingerprint256, subject: tlsInfo.subject, notAfter: tlsInfo.notAfter },
        'TLS certificate loaded',
      );
    }
    for (const w of server.warnings) logger.warn({ event: 'config.warning' }, w);
    if (settings.insecure && settings.host !== '127.0.0.1' && settings.host !== '::1' && settings.host !== 'localhost') {
      logger.warn({ event: 'insecure', host: settings.host }, 'plaintext listeners on a non-loopback address (--insecure)');
    }
    // SIGHUP re-reads the certificate files (they are also watched); connections stay open.
    process.on('SIGHUP', () => {
      server.reloadTls().then(
        () => logger.info({ event: 'tls.reload', sha256: server.tls?.fingerprint256 }, 'TLS certificate reloaded'),
        (err: unknown) => logger.error({ err }, 'TLS reload failed; the previous certificate stays in use'),
      );
    });
  } catch (err) {
    detachLogging();
    detachTracing();
    // A worker that cannot start must exit (its IPC channel would keep it alive), so that the
    // primary sees it and stops the server rather than serving with a worker short.
    if (cluster.isWorker) cluster.worker?.disconnect();
    if (err instanceof ConfigError) {
      process.stderr.write(`echoserver: ${flagName(err)}\n`);
      return 2;
    }
    logger.error({ err }, 'failed to start');
    process.stderr.write(`echoserver: ${(err as Error).message}\n`);
    return 1;
  }

  return undefined;
}

/** A ConfigError from the library names the camelCase setting: show the CLI flag instead. */
function flagName(err: ConfigError): string {
  const def = SETTINGS.find((d) => d.name === err.setting);
  return def === undefined ? err.message : err.message.replace(err.setting, def.flag);
}

/**
 * `probe self`: the URL of this configuration's own first listener, on loopback when it binds
 * every address (a container health check reads the same ECHO_* settings as the server).
 */
function selfUrl(s: Readonly<Settings>): string | undefined {
  const wildcard = s.host === '0.0.0.0' || s.host === '::' || s.host === '';
  const host = wildcard ? '127.0.0.1' : s.host.includes(':') ? `[${s.host}]` : s.host;
  // With authentication on, the probe holds no credential: it checks readiness over HTTP instead.
  const httpPort = s.adminPort ?? s.wsPort;
  if (s.auth !== 'none' && httpPort !== null) return `${s.insecure ? 'http' : 'https'}://${host}:${httpPort}/readyz`;
  if (s.wsPort !== null) return `${s.insecure ? 'ws' : 'wss'}://${host}:${s.wsPort}${s.wsPaths[0] ?? '/'}`;
  if (s.tcpPort !== null && s.tcpFraming === 'v1') return `${s.insecure ? 'tcp' : 'tls'}://${host}:${s.tcpPort}`;
  if (s.unixPath !== null) return `unix:${s.unixPath}`;
  return undefined;
}
