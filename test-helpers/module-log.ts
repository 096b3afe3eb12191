/**
 * Preloaded with `node --import` into a CLI under test: records every module the main thread
 * loads (ESM resolutions through a loader hook, CommonJS through the require cache) and prints
 * them as one `MODULES [...]` line on stderr when the process exits. Worker threads inherit the
 * preload but record nothing: what they load is not in the main thread's heap.
 */
import { createRequire, register } from 'node:module';
import { MessageChannel, isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const seen = new Set<string>();
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (url: string) => seen.add(url));
  port1.unref();
  register('./module-log-hooks.js', import.meta.url, { data: { port: port2 }, transferList: [port2] });
  const requireCache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    for (const file of Object.keys(requireCache)) seen.add(file);
    process.stderr.write(`MODULES ${JSON.stringify([...seen])}\n`);
  });
}
