/**
 * Spawning the built CLI (`dist/cli.js`) for integration tests: run to completion, or start a
 * server and wait for its "listening" JSON log line (the ports come from it).
 */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** dist/cli.js (this file compiles to build/test-helpers/cli.js). */
export const CLI_PATH = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `serve` in plaintext on loopback, ephemeral WS and TCP ports, JSON logs: the usual test server. */
export const PLAIN_SERVE_ARGS: readonly string[] = Object.freeze([
  'serve',
  '--insecure',
  '--host',
  '127.0.0.1',
  '--ws-port',
  '0',
  '--tcp-port',
  '0',
  '--log-format',
  'json',
]);

/** A clean environment: no ECHO_* from the caller's shell. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ECHO_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; killAfterMs?: number } = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: cleanEnv(options.env),
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A command expected to exit must not hang the test file if it keeps running instead.
  const guard = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 15_000);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(guard);
  return { code, signal, stdout, stderr };
}

export interface RunningCli {
  child: ChildProcess;
  /** The parsed "listening" log line. */
  listening: { listeners: { ws?: { port: number }; tcp?: { port: number }; unix?: { path: string }; raw?: { port: number } } } & Record<
    string,
    unknown
  >;
  /** Every JSON log line seen so far. */
  lines: Record<string, unknown>[];
  stderr(): string;
  /** Resolves with the exit code and signal once the process has exited and its output is read. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the process if still running (cleanup). */
  kill(): void;
}

/**
 * Starts `node dist/cli.js ...args` and resolves once it logged `"event":"listening"`;
 * rejects when it exits first (the error has `exitCode`, `signal` and `stderr`).
 */
export async function startCli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; nodeArgs?: string[] } = {},
): Promise<RunningCli> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI_PATH, ...args], {
    env: cleanEnv(options.env),
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const rl = createInterface({ input: child.stdout });
  const stdoutDone = once(rl, 'close');
  const exited = (async () => {
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    await stdoutDone;
    return { code, signal };
  })();
  const listening = await new Promise<RunningCli['listening']>((resolve, reject) => {
    rl.on('line', (line) => {
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // not a JSON line
      }
      lines.push(obj);
      if (obj['event'] === 'listening') resolve(obj as RunningCli['listening']);
    });
    exited.then(
      ({ code, signal }) =>
        reject(Object.assign(new Error(`CLI exited (${code ?? signal}) before listening: ${stderr}`), { exitCode: code, signal, stderr })),
      reject,
    );
  });
  return {
    child,
    listening,
    lines,
    stderr: () => stderr,
    exited,
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** A port that was free a moment ago (bind 127.0.0.1:0, read the port, close). */
export async function freePort(): Promise<number> {
  const net = await import('node:net');
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * Runs the CLI through `bash -c SCRIPT`, where SCRIPT ends in `exec "$0" "$@"` after what the
 * test needs around it (a `ulimit`, a redirection); killed when the test ends.
 */
export function spawnCliInShell(
  t: { after: (fn: () => void) => void },
  script: string,
  args: readonly string[],
): ChildProcessByStdio<null, Readable, Readable> {
  const child = spawn('bash', ['-c', script, process.execPath, CLI_PATH, ...args], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}
