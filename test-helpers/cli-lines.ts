/**
 * Spawning the built CLI (`dist/cli.js`) and waiting on its JSON log lines: `waitFor(pred)`
 * resolves on the first line (seen or to come) matching `pred`, and rejects if the process
 * exits first. Raw stdout and stderr are kept whole, so tests can search them for secrets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { CLI_PATH, cleanEnv } from './cli.js';

export type LogLine = Record<string, unknown>;

export interface CliProcess {
  child: ChildProcess;
  /** Every JSON line of stdout so far. */
  readonly lines: LogLine[];
  /** Raw stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** First line matching `pred` (already seen or future); rejects when the process exits first. */
  waitFor(pred: (l: LogLine) => boolean, what?: string): Promise<LogLine>;
  /** The `"event":"listening"` line's listeners. */
  listening(): Promise<{ ws?: { port: number }; tcp?: { port: number }; admin?: { port: number } }>;
  /** Exit code and signal, once exited and stdout is fully read. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running (cleanup). */
  kill(): void;
}

export function spawnCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: LogLine[] = [];
  let out = '';
  let err = '';
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const rl = createInterface({ input: child.stdout });
  const rlClosed = once(rl, 'close');
  rl.on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w !== undefined && w.pred(line)) {
        waiters.splice(i, 1);
        w.resolve(line);
      }
    }
  });
  const exited = (async () => {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    await rlClosed;
    return { code, signal };
  })();
  const proc: CliProcess = {
    child,
    lines,
    stdout: () => out,
    stderr: () => err,
    waitFor(pred, what = 'a log line') {
      const seen = lines.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ pred, resolve });
        exited.then(
          ({ code, signal }) => reject(new Error(`CLI exited (${code ?? signal}) before ${what}\nstdout:\n${out}\nstderr:\n${err}`)),
          reject,
        );
      });
    },
    async listening() {
      const l = await proc.waitFor((x) => x['event'] === 'listening', 'listening');
      return l['listeners'] as Awaited<ReturnType<CliProcess['listening']>>;
    },
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  return proc;
}
