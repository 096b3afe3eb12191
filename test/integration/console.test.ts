// The debug console page: served at /console and to browsers at /, self-contained (CSP allows
// only its own origin), and it connects to a WebSocket path the server actually serves.
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { it } from 'node:test';
import { startServer } from '../../test-helpers/server.js';

async function get(port: number, path: string, accept: string): Promise<{ status: number; type: string; csp: string; body: string }> {
  const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { accept } });
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  let body = '';
  for await (const c of res) body += String(c);
  return {
    status: res.statusCode ?? 0,
    type: String(res.headers['content-type']),
    csp: String(res.headers['content-security-policy']),
    body,
  };
}

it('serves the console at /console and to browsers at /; other clients get the JSON hint', async (t) => {
  const s = await startServer();
  t.after(() => s.close());
  const page = await get(s.wsPort, '/console', '*/*');
  assert.equal(page.status, 200);
  assert.match(page.type, /^text\/html/);
  assert.match(page.csp, /default-src 'none'/);
  assert.match(page.csp, /connect-src 'self'/);
  assert.match(page.body, /new WebSocket\(/);
  assert.match(page.body, /fetch\('\/info'\)/);
  // The page's default path is one the server serves.
  const path = /id="path" value="([^"]+)"/.exec(page.body)?.[1];
  assert.ok(path !== undefined && s.server.settings.wsPaths.includes(path), `default path ${path}`);
  const browser = await get(s.wsPort, '/', 'text/html,application/xhtml+xml');
  assert.equal(browser.body, page.body);
  const tool = await get(s.wsPort, '/', 'application/json');
  assert.equal(tool.status, 426);
  assert.match(tool.body, /WebSocket echo endpoint/);
});
