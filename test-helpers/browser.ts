/**
 * Debian's chromium driven by playwright-core (never a downloaded browser; `npm test` installs
 * the package through scripts/system-deps.js). One launch per test file.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Launches headless chromium. `trustPem`: certificates whose public keys the browser trusts
 * (Chromium's --ignore-certificate-errors-spki-list: trust in exactly that key, nothing else).
 */
export async function launchChromium(trustPem: string[] = []): Promise<Browser> {
  const spki = trustPem.map((pem) =>
    createHash('sha256')
      .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64'),
  );
  const launch = (): Promise<Browser> =>
    chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', ...(spki.length > 0 ? [`--ignore-certificate-errors-spki-list=${spki.join(',')}`] : [])],
    });
  try {
    return await launch();
  } catch (first) {
    // Seen once in a full run on a loaded 2-core machine: chromium died at start-up (SIGTRAP)
    // before any page existed. One more try; a second failure is reported with the first.
    process.stderr.write(`chromium launch failed, retrying once: ${String((first as Error).message).split('\n')[0]}\n`);
    return launch();
  }
}

/** Pixels of the console's RTT chart drawn in the accent colour (the data line and points). */
export async function accentPixels(page: Page): Promise<number> {
  // A string: the test code is compiled without the DOM library.
  return page.evaluate<number>(`(() => {
    const canvas = document.getElementById('chart');
    const g = canvas.getContext('2d');
    const accent = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim();
    const want = [1, 3, 5].map((i) => parseInt(accent.slice(i, i + 2), 16));
    const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 200 && want.every((v, k) => Math.abs(px[i + k] - v) < 24)) n++;
    }
    return n;
  })()`);
}
