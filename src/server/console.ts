/**
 * The debug console's files: `console/` of the package (plain HTML, CSS and an ES module: no
 * build step for users) plus the client's browser build, served from the package's `dist/`
 * under `/console/lib/`. Only the files in the browser build's import graph are served, read
 * once, with an ETag; the page's CSP allows scripts from this origin and sockets to this host.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ConsoleAsset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** The package root: the nearest folder above this file with echoserver's package.json. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'echoserver') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

const asset = (body: Buffer, file: string): ConsoleAsset => ({
  body,
  type: TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream',
  etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
});

/**
 * Imports of a compiled ES module: `import … from '…'` and `export … from '…'` statements
 * (tsc writes them at the start of a line, so doc comments that mention one do not count) and
 * dynamic `import('…')` outside comment lines.
 */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^\s*(?:(?:import|export)\b[^;'"]*?\bfrom\s*|import\s*)['"]([^'"]+)['"]/gm)) out.push(m[1] as string);
  for (const line of source.split('\n')) {
    if (/^\s*(\*|\/\/|\/\*)/.test(line)) continue;
    for (const m of line.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]/g)) out.push(m[1] as string);
  }
  return out;
}

/**
 * Every module reachable from `entry` (a path under `root`), keyed by its path relative to
 * `root` with `/`. Throws if a module imports anything but a relative file inside `root`:
 * the browser cannot load `node:` modules or bare package names.
 */
export function moduleGraph(root: string, entry: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const todo = [normalize(join(root, entry))];
  while (todo.length > 0) {
    const file = todo.pop() as string;
    const key = relative(root, file).split(sep).join('/');
    if (files.has(key)) continue;
    if (key.startsWith('..')) throw new Error(`${file} is outside ${root}`);
    const body = readFileSync(file);
    files.set(key, body);
    for (const spec of importsOf(body.toString('utf8'))) {
      if (!spec.startsWith('./') && !spec.startsWith('../')) throw new Error(`${key} imports ${spec}: not loadable in a browser`);
      todo.push(normalize(join(dirname(file), spec)));
    }
  }
  return files;
}

let cache: Map<string, ConsoleAsset> | Error | undefined;

/**
 * The console's files by URL path (`/console`, `/console/console.js`, `/console/lib/…`), read
 * on first use. An Error when the package is incomplete (no `console/` or no `dist/`).
 */
export function consoleAssets(): Map<string, ConsoleAsset> | Error {
  if (cache !== undefined) return cache;
  try {
    const root = packageRoot();
    if (root === undefined) throw new Error('package root not found');
    const map = new Map<string, ConsoleAsset>();
    const dir = join(root, 'console');
    map.set('/console', asset(readFileSync(join(dir, 'index.html')), 'index.html'));
    for (const f of ['console.css', 'console.js']) map.set(`/console/${f}`, asset(readFileSync(join(dir, f)), f));
    const dist = join(root, 'dist');
    if (!existsSync(join(dist, 'client', 'browser.js'))) throw new Error('dist/client/browser.js is missing: run npm run build');
    for (const [key, body] of moduleGraph(dist, 'client/browser.js')) map.set(`/console/lib/${key}`, asset(body, key));
    cache = map;
  } catch (err) {
    cache = new Error(`console files unavailable: ${(err as Error).message}`);
  }
  return cache;
}
