#!/usr/bin/env node
// The plain manifests in deploy/k8s/ are the Helm chart rendered with deploy/k8s/chart-values.yaml
// (minus Helm's bookkeeping labels), so the two cannot drift: test/unit/deploy.test.ts runs this
// with --check. After changing the chart: node scripts/k8s-manifests.js (rewrites the files).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse, stringify } from 'yaml';
import { k8sTool } from './k8s-tools.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHART = join(ROOT, 'deploy', 'helm', 'echoserver');
const VALUES = join(ROOT, 'deploy', 'k8s', 'chart-values.yaml');
const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];

function helmTemplate(extra) {
  const r = spawnSync(k8sTool('helm'), ['template', 'echoserver', CHART, '-f', VALUES, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS())
    .filter((d) => d !== null);
}

function stripHelm(doc) {
  const labels = doc.metadata?.labels;
  if (labels !== undefined) for (const l of HELM_LABELS) delete labels[l];
  return doc;
}

const header = (what) =>
  `# ${what}\n# Generated from deploy/helm/echoserver with deploy/k8s/chart-values.yaml by\n# scripts/k8s-manifests.js: do not edit; change the chart and re-run it (a test checks).\n`;

/** path (relative to the repository) -> expected text. */
export function renderManifests() {
  const centralized = helmTemplate([]).map(stripHelm);
  const sidecarMap = helmTemplate(['--set', 'mode=sidecar']).find((d) => d.kind === 'ConfigMap');
  const data = sidecarMap.data;
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'app-with-echo' },
    spec: {
      securityContext: parse(data['pod-security-context.yaml']),
      containers: [
        { name: 'app', image: 'my-app:latest', volumeMounts: parse(data['app-volume-mount.yaml']) },
        parse(data['container.yaml']),
      ],
      volumes: parse(data['volumes.yaml']),
    },
  };
  return {
    'deploy/k8s/centralized.yaml':
      header('Centralized mode: stateless replicas behind a Service, scaled on CPU; TLS from the Secret echoserver-tls.') +
      centralized.map((d) => stringify(d, { lineWidth: 0 })).join('---\n'),
    'deploy/k8s/sidecar/pod.yaml':
      header('Sidecar mode: an application pod with the echo server next to it (loopback WebSocket, Unix socket on a shared volume).') +
      stringify(pod, { lineWidth: 0 }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  const stale = [];
  for (const [path, text] of Object.entries(renderManifests())) {
    let current = '';
    try {
      current = readFileSync(join(ROOT, path), 'utf8');
    } catch {
      // missing: stale
    }
    if (current === text) continue;
    stale.push(path);
    if (!check) writeFileSync(join(ROOT, path), text);
  }
  if (check && stale.length > 0) {
    console.error(`out of date with the chart: ${stale.join(', ')}; run node scripts/k8s-manifests.js`);
    process.exit(1);
  }
  if (!check) console.log(stale.length > 0 ? `wrote ${stale.join(', ')}` : 'up to date');
}
