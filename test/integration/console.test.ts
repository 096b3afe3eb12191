/**
 * The debug console over HTTP: the page at /console and to browsers at /, its files with the
 * right content type, ETag revalidation and a CSP that allows only this origin's scripts and
 * sockets to this host; only the browser build's import graph is served from dist/; the
 * browser build imports nothing from Node; `--no-console` turns it all off.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { loadSettings } from '../../src/config/load.js';
import { startServer } from '../../test-helpers/server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { accept: '*/*', ...headers } });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  let body = '';
  for await (const c of res) body += String(c);
  return { status: res.statusCode ?? 0, headers: res.headers, body };
}

/**
 * The browser build's modules, found independently of the server's walk: every `from '…'` and
 * `import '…'` of dist/client/browser.js and what it reaches. Fails on anything that is not a
 * relative file (node:*, a bare package) or that uses Buffer, process or require.
 */
function browserGraph(): string[] {
  const dist = join(ROOT, 'dist');
  const seen = new Set<string>();
  const todo = [join(dist, 'client', 'browser.js')];
  while (todo.length > 0) {
    const file = normalize(todo.pop() as string);
    const rel = relative(dist, file);
    if (seen.has(rel)) continue;
    seen.add(rel);
    const code = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l))
      .join('\n');
    for (const m of code.matchAll(/\b(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1] as string;
      assert.ok(
        spec.startsWith('./') || spec.startsWith('../'),
        `${rel} imports ${spec}: not a relative module (the browser build must not use Node)`,
      );
      todo.push(join(dirname(file), spec));
    }
    assert.doesNotMatch(code, /\bBuffer\b|\bprocess\.|\brequire\(|\bnode:/, `${rel} uses a Node built-in`);
  }
  return [...seen].map((f) => f.split('\\').join('/')).sort();
}

it('the browser build imports nothing from Node, and the console serves exactly its modules', async (t) => {
  const graph = browserGraph();
  assert.ok(
    graph.includes('client/browser.js') && graph.includes('client/v1-body.js') && graph.includes('client/client.js'),
    graph.join(' '),
  );
  assert.ok(!graph.some((f) => /connect|stream-link|stream-client/.test(f)), graph.join(' '));
  const s = await startServer();
  t.after(() => s.close());
  for (const f of graph) {
    const r = await get(s.wsPort, `/console/lib/${f}`);
    assert.equal(r.status, 200, f);
    assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(r.body, readFileSync(join(ROOT, 'dist', f), 'utf8'));
  }
  // The page's module imports that build.
  assert.match((await get(s.wsPort, '/console/console.js')).body, /from '\.\/lib\/client\/browser\.js'/);
  // Nothing else from dist/ (or beyond) is served.
  for (const p of [
    '/console/lib/client/connect.js',
    '/console/lib/server/echo-server.js',
    '/console/lib/../package.json',
    '/console/lib/%2e%2e/package.json',
    '/console/nope.js',
  ]) {
    assert.equal((await get(s.wsPort, p)).status, 404, p);
  }
});

it('serves the page at /console and to browsers at /, with CSP, types and ETag revalidation', async (t) => {
  const s = await startServer();
  t.after(() => s.close());
  const page = await get(s.wsPort, '/console');
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${s.wsPort} wss://127\\.0\\.0\\.1:${s.wsPort};`));
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.match(page.body, /<script type="module" src="\/console\/console\.js"><\/script>/);
  assert.doesNotMatch(page.body, /<script>|\son\w+=/, 'no inline script or handler');
  // A hostile Host header does not get into the CSP.
  const odd = await get(s.wsPort, '/console', { host: "evil' 'unsafe-inline" });
  assert.match(String(odd.headers['content-security-policy']), /connect-src 'self';/);
  assert.equal((await get(s.wsPort, '/console/console.css')).headers['content-type'], 'text/css; charset=utf-8');
  // Revalidation: same ETag, 304 without a body.
  const etag = String(page.headers.etag);
  assert.equal(page.headers['cache-control'], 'no-cache');
  const again = await get(s.wsPort, '/console', { 'if-none-match': etag });
  assert.equal(again.status, 304);
  assert.equal(again.body, '');
  const browser = await get(s.wsPort, '/', { accept: 'text/html,application/xhtml+xml' });
  assert.equal(browser.body, page.body);
  const tool = await get(s.wsPort, '/', { accept: 'application/json' });
  assert.equal(tool.status, 426);
  assert.match(tool.body, /WebSocket echo endpoint/);
});

it('--no-console (console: false) turns the console off', async (t) => {
  assert.equal(loadSettings(['--no-console'], {}).settings.console, false);
  assert.equal(loadSettings([], { ECHO_CONSOLE: 'false' }).settings.console, false);
  assert.equal(loadSettings([], {}).settings.console, true);
  const s = await startServer({ console: false });
  t.after(() => s.close());
  assert.equal((await get(s.wsPort, '/console')).status, 404);
  assert.equal((await get(s.wsPort, '/console/lib/client/browser.js')).status, 404);
  assert.equal((await get(s.wsPort, '/', { accept: 'text/html' })).status, 426);
});
