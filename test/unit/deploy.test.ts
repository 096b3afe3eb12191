// The deployment files stay true to the code and to Kubernetes:
// - the Helm chart lints (--strict), renders, and its values.schema.json refuses bad values;
// - the plain manifests in deploy/k8s are the chart's output (scripts/k8s-manifests.js --check)
//   and build with kustomize;
// - every rendered object and manifest validates against the Kubernetes schemas, with no
//   unknown field (test-helpers/k8s.ts);
// - every echoserver container's args and ECHO_* env parse with our settings loader (the one
//   schema, src/config/schema.ts), its ports match the settings, its probes hit routes we serve
//   on the right port and scheme, and the grace period outlasts the drain deadline.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadSettings, SETTINGS } from '../../src/config/index.js';
import { helmTemplate, k8sProblems, k8sTool, parseDocs, ROOT, type K8sObject } from '../../test-helpers/k8s.js';

interface Probe {
  httpGet?: { path: string; port: string | number; scheme?: string };
  exec?: { command: string[] };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  volumes?: { name: string }[];
  securityContext?: Record<string, unknown>;
  terminationGracePeriodSeconds?: number;
}

const ROUTES = new Set(['/healthz', '/readyz', '/info', '/metrics']);
const ENV_NAMES = new Set([...SETTINGS.map((d) => d.env), 'ECHO_CONFIG']);

/** The chart rendered with the value sets users will pick, each labelled. */
/** An egress rule for an OTLP collector in another namespace (networkPolicy.egress). */
const OTLP_EGRESS = {
  to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } }],
  ports: [{ port: 4318, protocol: 'TCP' }],
};

const RENDERS: [string, string[]][] = [
  ['defaults', []],
  ['plaintext, no TCP, no HPA', ['--set', 'tls.enabled=false', '--set', 'ports.tcp=null', '--set', 'autoscaling.enabled=false']],
  [
    'cert-manager, mTLS, token auth, ServiceMonitor, connections HPA',
    [
      ...['--set', 'tls.certManager.enabled=true', '--set', 'tls.certManager.issuerRef.name=ca', '--set', 'tls.clientAuth=require'],
      ...['--set', 'auth.mode=token', '--set', 'auth.tokensSecret.name=echo-tokens', '--set', 'serviceMonitor.enabled=true'],
      ...['--set', 'autoscaling.connectionsPerPod.enabled=true', '--set', 'limits.rateMessages=1000', '--set', 'limits.idleTimeout=5m'],
    ],
  ],
  [
    'JWT with JWKS, workers auto',
    [
      ...['--set', 'auth.mode=jwt', '--set', 'auth.jwt.jwksUrl=https://issuer.example/jwks.json', '--set', 'auth.jwt.secretRef.name=jwt'],
      ...['--set-json', 'auth.jwt.audience=["echo"]', '--set', 'workers=auto', '--set', 'logLevel=debug'],
      ...['--set-json', `networkPolicy.egress=${JSON.stringify([OTLP_EGRESS])}`],
    ],
  ],
  ['sidecar', ['--set', 'mode=sidecar']],
];

function readManifest(path: string): K8sObject[] {
  return parseDocs(readFileSync(join(ROOT, path), 'utf8'));
}

function podSpecOf(o: K8sObject): PodSpec | undefined {
  const spec = o['spec'] as Record<string, unknown> | undefined;
  if (o.kind === 'Pod') return spec as unknown as PodSpec;
  if (o.kind === 'Deployment') return (spec?.['template'] as { spec: PodSpec }).spec;
  return undefined;
}

/** The sidecar ConfigMap's container snippet, as a pod would hold it. */
function sidecarPod(objects: K8sObject[]): PodSpec | undefined {
  const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata?.name?.endsWith('-sidecar'));
  if (cm === undefined) return undefined;
  const data = cm['data'] as Record<string, string>;
  const one = (key: string): unknown => parseDocs(data[key] ?? '')[0];
  return {
    containers: [one('container.yaml') as Container],
    volumes: one('volumes.yaml') as { name: string }[],
    securityContext: one('pod-security-context.yaml') as Record<string, unknown>,
  };
}

/** Checks one echoserver container (and its pod) against the settings schema. */
function checkEchoContainer(where: string, pod: PodSpec, c: Container, objects: K8sObject[]): void {
  // Env: only real settings, and they parse (valueFrom stands in for what the kubelet injects).
  const env: NodeJS.ProcessEnv = {};
  for (const e of c.env ?? []) {
    if (!e.name.startsWith('ECHO_')) continue;
    assert.ok(ENV_NAMES.has(e.name), `${where}: ${e.name} is not a setting (src/config/schema.ts)`);
    env[e.name] = e.value ?? (e.name === 'ECHO_JWT_SECRET' ? 'x'.repeat(32) : 'from-the-api');
  }
  const { command, settings } = loadSettings(c.args ?? [], env);
  assert.equal(command, 'serve', `${where}: args run serve`);
  // Ports: the declared container ports are the ones the server binds.
  const ports = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  const expected: [string, number | null][] = [
    ['ws', settings.wsPort],
    ['tcp', settings.tcpPort],
    ['admin', settings.adminPort],
  ];
  if (ports.size > 0) for (const [name, port] of expected) assert.equal(ports.get(name) ?? null, port, `${where}: port ${name}`);
  // Probes: readiness on /readyz, liveness and startup on /healthz, on the admin port when there
  // is one, HTTPS exactly when TLS is on; exec probes run our probe against our own listener.
  const checkProbe = (kind: string, p: Probe | undefined, path: string): void => {
    assert.ok(p !== undefined, `${where}: ${kind} probe`);
    if (p.httpGet !== undefined) {
      assert.equal(p.httpGet.path, path, `${where}: ${kind} path`);
      assert.ok(ROUTES.has(p.httpGet.path));
      assert.ok(ports.has(String(p.httpGet.port)), `${where}: ${kind} probe port ${p.httpGet.port} is declared`);
      assert.equal(p.httpGet.port, settings.adminPort !== null ? 'admin' : 'ws');
      assert.equal(p.httpGet.scheme, settings.insecure ? 'HTTP' : 'HTTPS', `${where}: ${kind} scheme`);
    } else {
      const cmd = p.exec?.command ?? [];
      assert.deepEqual(cmd.slice(0, 3), ['node', 'dist/cli.js', 'probe'], `${where}: ${kind} runs echoserver probe`);
      const url = cmd[3] ?? '';
      assert.ok(
        url === `unix:${settings.unixPath}` || url === `ws://127.0.0.1:${settings.wsPort}/`,
        `${where}: ${kind} probe URL ${url} is our own listener`,
      );
    }
  };
  checkProbe('startup', c.startupProbe, '/healthz');
  checkProbe('liveness', c.livenessProbe, '/healthz');
  checkProbe('readiness', c.readinessProbe, '/readyz');
  if (pod.terminationGracePeriodSeconds !== undefined) {
    // The kubelet's SIGKILL comes terminationGracePeriodSeconds after the preStop hook starts.
    const pause = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
    assert.ok(pause > 0, `${where}: a preStop pause`);
    assert.ok(
      (pod.terminationGracePeriodSeconds - pause) * 1000 > settings.drainTimeoutMs,
      `${where}: grace ${pod.terminationGracePeriodSeconds}s - preStop ${pause}s must exceed the drain deadline ${settings.drainTimeoutMs}ms`,
    );
  }
  // Security: non-root by number, read-only root, nothing escalates.
  const sc = c.securityContext ?? {};
  assert.equal(sc['readOnlyRootFilesystem'], true, `${where}: read-only root`);
  assert.equal(sc['allowPrivilegeEscalation'], false);
  assert.deepEqual(sc['capabilities'], { drop: ['ALL'] });
  assert.deepEqual(sc['seccompProfile'], { type: 'RuntimeDefault' });
  const user = sc['runAsUser'] ?? pod.securityContext?.['runAsUser'];
  assert.ok(typeof user === 'number' && user > 0, `${where}: numeric non-root runAsUser`);
  assert.equal(pod.securityContext?.['runAsNonRoot'], true);
  assert.equal(typeof pod.securityContext?.['fsGroup'], 'number');
  // Files the settings name live on mounted volumes (the root filesystem is read-only).
  const mounts = c.volumeMounts ?? [];
  const volumes = new Set((pod.volumes ?? []).map((v) => v.name));
  for (const m of mounts) assert.ok(volumes.has(m.name), `${where}: volume ${m.name} exists`);
  for (const path of [settings.tlsCert, settings.tlsKey, settings.tlsCa, settings.authTokensFile, settings.unixPath]) {
    if (path !== null)
      assert.ok(
        mounts.some((m) => path.startsWith(m.mountPath + '/')),
        `${where}: ${path} is on a mounted volume`,
      );
  }
  // Objects around the pod refer to names that exist.
  const portNames = new Set(ports.keys());
  for (const o of objects) {
    const spec = o['spec'] as Record<string, unknown> | undefined;
    if (o.kind === 'Service') {
      for (const p of spec?.['ports'] as { targetPort: string }[])
        assert.ok(portNames.has(p.targetPort), `${where}: Service targetPort ${p.targetPort}`);
    }
    if (o.kind === 'NetworkPolicy') {
      for (const rule of spec?.['ingress'] as { ports: { port: string }[] }[])
        for (const p of rule.ports) assert.ok(portNames.has(p.port), `${where}: NetworkPolicy port ${p.port}`);
    }
    if (o.kind === 'ServiceMonitor') {
      const ep = (spec?.['endpoints'] as { port: string; path: string; scheme?: string }[])[0];
      assert.equal(ep?.port, 'admin');
      assert.equal(ep?.path, '/metrics');
      assert.equal(ep?.scheme ?? 'http', settings.insecure ? 'http' : 'https');
    }
    if (o.kind === 'HorizontalPodAutoscaler') {
      const target = spec?.['scaleTargetRef'] as { kind: string; name: string };
      assert.ok(
        objects.some((x) => x.kind === target.kind && x.metadata?.name === target.name),
        `${where}: HPA target exists`,
      );
    }
  }
}

function checkObjects(where: string, objects: K8sObject[]): number {
  let found = 0;
  for (const o of objects) {
    const pod = o.kind === 'ConfigMap' ? sidecarPod([o]) : podSpecOf(o);
    for (const c of pod?.containers ?? []) {
      if (!c.image.startsWith('echoserver')) continue;
      found++;
      checkEchoContainer(`${where} ${o.kind}/${o.metadata?.name}`, pod as PodSpec, c, objects);
    }
  }
  return found;
}

describe('Helm chart deploy/helm/echoserver', () => {
  it('helm lint --strict passes, default and sidecar values', { timeout: 180_000 }, () => {
    for (const extra of [[], ['--set', 'mode=sidecar']]) {
      const r = k8sTool('helm', ['lint', '--strict', 'deploy/helm/echoserver', ...extra]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }
  });

  it('renders what the issue lists: probes, preStop, security, spread, PDB, HPA, NetworkPolicy, ServiceMonitor, Certificate', () => {
    const objects = helmTemplate(RENDERS[2]?.[1]);
    const kinds = new Set(objects.map((o) => o.kind));
    for (const k of [
      'Deployment',
      'Service',
      'ServiceAccount',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'NetworkPolicy',
      'ServiceMonitor',
      'Certificate',
    ])
      assert.ok(kinds.has(k), k);
    const deployment = objects.find((o) => o.kind === 'Deployment') as K8sObject;
    const pod = podSpecOf(deployment) as PodSpec & { topologySpreadConstraints?: unknown[] };
    assert.equal(pod.topologySpreadConstraints?.length, 2);
    const hpa = objects.find((o) => o.kind === 'HorizontalPodAutoscaler') as K8sObject;
    const metrics = (hpa['spec'] as { metrics: { type: string }[] }).metrics.map((m) => m.type);
    assert.deepEqual(metrics, ['Resource', 'Pods'], 'HPA on CPU and on connections per pod');
    const cert = objects.find((o) => o.kind === 'Certificate') as K8sObject;
    const volumes = pod.volumes as { name: string; secret?: { secretName: string } }[];
    assert.equal(
      volumes.find((v) => v.name === 'tls')?.secret?.secretName,
      (cert['spec'] as { secretName: string }).secretName,
      'pods mount the Certificate Secret',
    );
  });

  it('NetworkPolicy egress: none by default; the JWKS rule with auth.mode=jwt; networkPolicy.egress rules (OTLP) added as given', () => {
    const egressOf = (objects: K8sObject[]): unknown[] =>
      ((objects.find((o) => o.kind === 'NetworkPolicy') as K8sObject)['spec'] as { egress: unknown[] }).egress;
    assert.deepEqual(egressOf(helmTemplate()), []);
    const jwt = egressOf(helmTemplate(RENDERS[3]?.[1])) as { ports: { port: number }[] }[];
    assert.equal(jwt.length, 2);
    assert.deepEqual(
      jwt[0]?.ports.map((p) => p.port),
      [443, 53, 53],
    );
    assert.deepEqual(jwt[1], OTLP_EGRESS);
    assert.deepEqual(egressOf(helmTemplate(['--set-json', `networkPolicy.egress=${JSON.stringify([OTLP_EGRESS])}`])), [OTLP_EGRESS]);
  });

  it('values.schema.json and the template refuse bad values with a message', () => {
    const bad: [string[], RegExp][] = [
      [['--set', 'mode=cluster'], /mode/],
      [['--set', 'limits.maxConnections=0'], /maxConnections/],
      [['--set', 'logLevel=loud'], /logLevel/],
      [['--set', 'auth.mode=token'], /tokensSecret/],
      [['--set', 'unknownKey=1'], /unknownKey|additional/i],
      [
        ['--set', 'drainTimeoutSeconds=60', '--set', 'terminationGracePeriodSeconds=30'],
        /terminationGracePeriodSeconds \(30\) must be longer/,
      ],
    ];
    for (const [args, message] of bad) assert.throws(() => helmTemplate(args), message, args.join(' '));
  });

  for (const [label, args] of RENDERS) {
    it(`renders valid Kubernetes objects that match the settings schema: ${label}`, async () => {
      const objects = helmTemplate(args);
      assert.deepEqual(await k8sProblems(objects, label), []);
      assert.equal(checkObjects(label, objects), 1, 'one echoserver container');
    });
  }
});

describe('plain manifests deploy/k8s', () => {
  it('are the chart rendered with deploy/k8s/chart-values.yaml (no drift)', () => {
    const r = k8sTool('kubectl', ['version', '--client']); // fetches the tools first, outside the check's own error path
    assert.equal(r.status, 0, r.stderr);
    const check = spawnCheck();
    assert.equal(check.status, 0, check.stderr);
  });

  for (const dir of ['deploy/k8s', 'deploy/k8s/sidecar']) {
    it(`${dir}: kubectl kustomize builds it; valid objects matching the settings schema`, async () => {
      const r = k8sTool('kubectl', ['kustomize', dir]);
      assert.equal(r.status, 0, r.stderr);
      const objects = parseDocs(r.stdout);
      assert.deepEqual(await k8sProblems(objects, dir), []);
      assert.equal(checkObjects(dir, objects), 1, 'one echoserver container');
    });
  }

  it('the sidecar pod carries exactly the chart snippet', () => {
    const pod = podSpecOf(readManifest('deploy/k8s/sidecar/pod.yaml')[0] as K8sObject) as PodSpec;
    const snippet = sidecarPod(helmTemplate(['-f', 'deploy/k8s/chart-values.yaml', '--set', 'mode=sidecar'])) as PodSpec;
    assert.deepEqual(pod.containers[1], snippet.containers[0]);
    assert.deepEqual(pod.volumes, snippet.volumes);
  });

  it('the validator itself catches unknown fields and wrong types (it can fail)', async () => {
    const deployment = structuredClone(readManifest('deploy/k8s/centralized.yaml').find((o) => o.kind === 'Deployment') as K8sObject);
    const c = (podSpecOf(deployment) as PodSpec).containers[0] as Container & Record<string, unknown>;
    c['readinesProbe'] = c.readinessProbe; // a typo
    (deployment['spec'] as Record<string, unknown>)['replicas'] = 'two';
    const problems = await k8sProblems([deployment], 'mutated');
    assert.ok(
      problems.some((p) => p.includes('readinesProbe')),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => /replicas/.test(p)),
      problems.join('\n'),
    );
  });
});

/** scripts/k8s-manifests.js --check: the committed files against a fresh render of the chart. */
function spawnCheck(): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ['scripts/k8s-manifests.js', '--check'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stderr: r.stderr };
}
