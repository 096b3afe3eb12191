/**
 * The Unix socket listener (framing v1). The socket is bound inside a fresh private directory
 * (mode 0700), given mode 0660 there, and only then renamed into place: there is no moment
 * at which it exists at its path with the default permissions.
 */
import { existsSync, lstatSync, mkdtempSync, renameSync, rmdirSync, chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { basename, dirname, join } from 'node:path';
import { EchoError, ErrorCode } from '../../errors.js';
import { listenOne, type ListenerContext } from './context.js';
import { streamHandler } from './stream.js';

/** Mode of the socket: same user and group only. */
export const UNIX_SOCKET_MODE = 0o660;

async function isLive(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export async function startUnixListener(ctx: ListenerContext, path: string): Promise<void> {
  if (existsSync(path)) {
    // Only ever replace a socket: a mistyped path must not delete a user's file.
    if (!lstatSync(path).isSocket()) throw new EchoError(ErrorCode.STATE, `unix listener on ${path}: the path exists and is not a socket`);
    // A socket file left by a process that died: replace it; a live one is an error.
    if (await isLive(path)) throw new EchoError(ErrorCode.STATE, `unix listener on ${path}: another server is listening there`);
    unlinkSync(path);
  }
  let dir: string;
  try {
    dir = mkdtempSync(join(dirname(path), `.${basename(path)}.`));
  } catch (err) {
    throw new EchoError(ErrorCode.STATE, `unix listener on ${path}: ${(err as Error).message}`, { cause: err });
  }
  const staging = join(dir, 's');
  const server = net.createServer(streamHandler(ctx.core, 'unix', 'v1'));
  try {
    await listenOne(ctx, 'unix', server, { path: staging });
    chmodSync(staging, UNIX_SOCKET_MODE);
    renameSync(staging, path);
  } catch (err) {
    server.close();
    throw err instanceof EchoError
      ? err
      : new EchoError(ErrorCode.STATE, `unix listener on ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    try {
      rmdirSync(dir);
    } catch {
      // a failed bind may leave the staging socket: remove both
      try {
        unlinkSync(staging);
        rmdirSync(dir);
      } catch {
        // nothing left to clean
      }
    }
  }
}
