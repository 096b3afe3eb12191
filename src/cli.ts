#!/usr/bin/env node
// The `echoserver` binary. Everything lives in cli/main.ts; this file only runs it.
import { main } from './cli/main.js';

main(process.argv.slice(2), process.env).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`echoserver: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
