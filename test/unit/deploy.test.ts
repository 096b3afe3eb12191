// The deployment files stay true to the code: every container's args and ECHO_* env parse
// with our settings loader, declared ports match the settings, and probe paths are routes we serve.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { loadSettings } from '../../src/config/index.js';

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
}

const ROUTES = new Set(['/healthz', '/readyz', '/info', '/metrics']);

function echoContainers(file: string): Container[] {
  const docs = parseAllDocuments(readFileSync(new URL(`../../../deploy/k8s/${file}`, import.meta.url), 'utf8')).map(
    (d) => d.toJS() as Record<string, unknown>,
  );
  const out: Container[] = [];
  for (const d of docs) {
    const spec = (
      d['kind'] === 'Pod'
        ? d['spec']
        : ((d['spec'] as Record<string, unknown> | undefined)?.['template'] as Record<string, unknown> | undefined)?.['spec']
    ) as { containers: Container[] } | undefined;
    for (const c of spec?.containers ?? []) if (c.image.startsWith('echoserver')) out.push(c);
  }
  return out;
}

describe('deploy/k8s manifests', () => {
  for (const file of ['centralized.yaml', 'sidecar.yaml']) {
    it(`${file}: args and env are valid settings, ports and probes match`, () => {
      const containers = echoContainers(file);
      assert.ok(containers.length > 0, 'an echoserver container');
      for (const c of containers) {
        const env: NodeJS.ProcessEnv = {};
        for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
        const { command, settings } = loadSettings(c.args ?? [], env);
        assert.equal(command, 'serve');
        const ports = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
        if (ports.has('ws')) assert.equal(ports.get('ws'), settings.wsPort);
        if (ports.has('tcp')) assert.equal(ports.get('tcp'), settings.tcpPort);
        if (ports.has('admin')) assert.equal(ports.get('admin'), settings.adminPort);
        for (const probe of [c.readinessProbe?.httpGet, c.livenessProbe?.httpGet]) if (probe) assert.ok(ROUTES.has(probe.path), probe.path);
      }
    });
  }
});
