/**
 * Preloaded into the CLI with `NODE_OPTIONS=--import <this file>` by the `--workers` tests: a
 * cluster worker (it has ECHO_WORKER_ID) whose start finds the file named by
 * TEST_WORKER_GATE waits until that file is removed. The test holds a replacement worker this
 * way, so "not every worker is listening" lasts exactly as long as the test needs, no timing.
 */
import { existsSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

const gate = process.env['TEST_WORKER_GATE'];
if (gate !== undefined && process.env['ECHO_WORKER_ID'] !== undefined && existsSync(gate)) {
  await new Promise<void>((resolve) => {
    const watcher = watch(dirname(gate), (_event, name) => {
      if (name === basename(gate) && !existsSync(gate)) {
        watcher.close();
        resolve();
      }
    });
    // Removed between the check above and the watch.
    if (!existsSync(gate)) {
      watcher.close();
      resolve();
    }
  });
}
