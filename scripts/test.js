#!/usr/bin/env node
// The README's test command (`npm test`): compile sources and tests with tsc (Node 20 has no
// TypeScript stripping), build dist/ (the CLI the integration tests spawn), then run every
// compiled test file with Node's built-in runner. Node 20's `--test` takes no globs, so the
// files are listed here. Usage: npm test [-- layer|file-substring ...]
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSystemDeps } from './system-deps.js';

const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
ensureSystemDeps();
rmSync('build', { recursive: true, force: true });
run('npx', ['tsc', '-p', 'tsconfig.build.json']);
run('npx', ['tsc', '-p', 'tsconfig.json']);

const layers = ['unit', 'property', 'integration', 'conformance'];
const filters = process.argv.slice(2);
const files = [];
for (const layer of layers) {
  const dir = join('build', 'test', layer);
  let names = [];
  try {
    if (statSync(dir).isDirectory()) names = readdirSync(dir).sort();
  } catch {
    continue;
  }
  for (const n of names) {
    if (!n.endsWith('.test.js')) continue;
    const f = join(dir, n);
    if (filters.length === 0 || filters.some((x) => f.includes(x))) files.push(f);
  }
}
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
run(process.execPath, ['--test', '--test-timeout=120000', '--test-concurrency=2', ...files]);
