/**
 * `echoserver bench URL [options]`: parse and validate the flags, run, print the table (or
 * JSON), write the HTML report. Returns the exit code: 0 every echo verified, 1 errors,
 * 2 usage errors.
 */
import { writeFileSync } from 'node:fs';
import { BENCH_HELP, BenchUsageError, parseBenchArgs, type BenchOptions } from './options.js';
import { renderHtml } from './report-html.js';
import { formatLive, formatTable } from './report-text.js';
import { runBench } from './run.js';

export async function benchCommand(argv: readonly string[]): Promise<number> {
  let options: BenchOptions | 'help';
  try {
    options = parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`echoserver bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (options === 'help') {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  // The live line only on a terminal: piped output (scripts, CI logs) gets the result alone.
  const tty = process.stderr.isTTY === true;
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  let result;
  try {
    result = await runBench(options, {
      signal: abort.signal,
      onLive: tty ? (s) => process.stderr.write(`\r\x1b[2K${formatLive(s)}`) : undefined,
    });
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (tty) process.stderr.write('\r\x1b[2K');
  }
  if (options.html !== undefined) {
    try {
      writeFileSync(options.html, renderHtml(result));
    } catch (err) {
      process.stderr.write(`echoserver bench: cannot write ${options.html}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  process.stdout.write(options.json ? JSON.stringify(result, null, 2) + '\n' : formatTable(result));
  if (options.html !== undefined && !options.json) process.stdout.write(`  report       ${options.html}\n`);
  return result.errors.total === 0 ? 0 : 1;
}
