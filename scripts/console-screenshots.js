#!/usr/bin/env node
// Takes the console screenshots in docs/ (light and dark) with Debian's chromium through
// playwright-core: starts a server from dist/ on a free port, connects the console, sends a
// few messages and a burst. Usage: npm run build && node scripts/console-screenshots.js
import { chromium } from 'playwright-core';
import { createEchoServer } from '../dist/index.js';

const server = createEchoServer({ host: '127.0.0.1', wsPort: 0, tcpPort: null, insecure: true, instance: 'echo-1', logLevel: 'silent' });
const addr = await server.listen();
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  for (const scheme of ['light', 'dark']) {
    const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${addr.ws.port}/console`);
    await page.click('#connect');
    await page.waitForSelector('#state[data-state="open"]');
    await page.fill('#h-extra', 'route=eu, shard=3');
    for (const text of ['hello', 'order #42 shipped', 'ping from the console']) {
      await page.fill('#msg', text);
      await page.click('#send');
    }
    await page.selectOption('#kind', 'json');
    await page.fill('#msg', '{"user":"ada","items":[1,2,3]}');
    await page.click('#send');
    await page.waitForSelector('#log tbody tr.in >> nth=3');
    await page.fill('#burst-n', '500');
    await page.click('#burst');
    await page.waitForSelector('#burst-result:has-text("p99")');
    await page.waitForSelector('#metrics dt');
    await page.waitForTimeout(3200); // one refresh of the server panel, so the rate shows
    await page.screenshot({ path: `docs/console-${scheme}.png` });
    await context.close();
    console.log(`docs/console-${scheme}.png`);
  }
} finally {
  await browser.close();
  await server.close({ drainMs: 100 });
}
