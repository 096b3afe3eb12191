/**
 * The console in a real browser (Debian's chromium through playwright-core, one launch for the
 * file): it loads the client's browser build, connects, echoes a typed message with its RTT
 * and `srv` stamp, draws the chart, runs a burst with percentiles; the same over wss with the
 * server's self-signed certificate, trusted by its key.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { accentPixels, launchChromium } from '../../test-helpers/browser.js';
import { startServer, type StartedServer } from '../../test-helpers/server.js';
import { startTlsServer, type TlsServer } from '../../test-helpers/tls.js';

/** Connects the console, sends one typed message, checks the echo row and the chart. */
async function echoOnce(page: Page, origin: string): Promise<void> {
  const failures: string[] = [];
  page.on('pageerror', (e) => failures.push(e.message));
  page.on('console', (m) => m.type() === 'error' && failures.push(m.text()));
  await page.goto(`${origin}/console`);
  await page.waitForSelector('#state[data-state="closed"]');
  assert.equal(await accentPixels(page), 0, 'the chart starts empty');
  await page.click('#connect');
  await page.waitForSelector('#state[data-state="open"]');
  assert.match((await page.textContent('#conn-info')) ?? '', /instance test/);
  await page.fill('#msg', 'typed <b>not html</b>');
  await page.fill('#h-id', 'm-1');
  await page.fill('#h-extra', 'route=eu');
  await page.click('#send');
  const echo = page.locator('#log tbody tr.in').first();
  await echo.waitFor();
  assert.equal(await echo.locator('td.msg').textContent(), 'typed <b>not html</b>');
  assert.equal(await page.locator('#log b').count(), 0, 'data is shown as text, never as HTML');
  assert.match((await echo.locator('td.rtt').textContent()) ?? '', /^\d+\.\d\d$/);
  assert.equal(await echo.locator('td.instance').textContent(), 'test');
  // The srv stamp: this connection (as the hello named it) and a sequence number.
  const conn = /conn (\S+)/.exec((await page.textContent('#conn-info')) ?? '')?.[1];
  assert.match((await echo.locator('td.conn').textContent()) ?? '', new RegExp(`^${conn ?? 'missing'} · \\d+$`));
  await page.waitForSelector('#rtt-last:not(:empty)');
  await page.evaluate('new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))');
  const drawn = await accentPixels(page);
  assert.ok(drawn > 10, `the chart shows the echo (${drawn} pixels)`);
  assert.deepEqual(failures, []);
}

describe('console in chromium', () => {
  let browser: Browser;
  let plain: StartedServer;
  let secure: TlsServer;
  before(async () => {
    plain = await startServer();
    secure = await startTlsServer();
    browser = await launchChromium([secure.ca as string]);
  });
  after(async () => {
    await browser?.close();
    await plain?.close();
    await secure?.close();
  });

  test('http: loads, connects (echo.v1), echoes a typed message with RTT and srv, draws the chart; a burst shows percentiles', async () => {
    const context = await browser.newContext({ colorScheme: 'light' });
    const page = await context.newPage();
    await echoOnce(page, `http://127.0.0.1:${plain.wsPort}`);
    await page.fill('#burst-n', '300');
    await page.click('#burst');
    await page.waitForSelector('#burst-result:has-text("p99")');
    assert.match(
      (await page.textContent('#burst-result')) ?? '',
      /^300 msgs in [\d.]+ s \(\d+\/s\) · p50 [\d.]+ · p90 [\d.]+ · p99 [\d.]+ · max [\d.]+ ms$/,
    );
    // The server panel shows /info and metrics.
    await page.waitForSelector('#metrics dt');
    assert.match((await page.textContent('#metrics')) ?? '', /messages in\d+/);
    // Who am I: the server's view of the page's own request.
    await page.click('#whoami-box summary');
    await page.click('#whoami-btn');
    await page.waitForSelector('#whoami:has-text("remote")');
    const who = JSON.parse((await page.textContent('#whoami')) ?? '{}') as { remote?: { address?: string }; instance?: string };
    assert.equal(who.remote?.address, '127.0.0.1');
    await context.close();
  });

  test('wss with the self-signed certificate (trusted by its key), dark mode', async () => {
    const context = await browser.newContext({ colorScheme: 'dark' });
    const page = await context.newPage();
    await echoOnce(page, `https://127.0.0.1:${secure.wsPort}`);
    assert.equal(await page.evaluate('getComputedStyle(document.body).backgroundColor'), 'rgb(15, 19, 24)');
    await context.close();
  });
});
