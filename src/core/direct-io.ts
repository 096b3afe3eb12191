/**
 * Direct socket I/O for plaintext TCP, Unix and WebSocket sockets: the message path without
 * Node's stream layer, which costs more CPU per small message than our whole per-read path
 * (bench/RESULTS.md).
 *
 * - **Reads** land in one process-wide read buffer (the `onread` mode that `net.Socket` offers
 *   its client sockets, here switched on for accepted ones): no chunk allocation and no
 *   `Readable` push per read. The bytes are valid only during the read callback, so whatever
 *   must outlive it (a partial frame, an echo the kernel did not take) is copied.
 * - **Writes** go straight to the descriptor (`write(2)`) while nothing is queued in the
 *   socket's stream; what the kernel does not take (a full send buffer) is copied and queued
 *   through the stream as before, and every later write follows it there until it drains, so
 *   bytes leave in order and the queue limit, `drain` and `end()` keep their meaning.
 *
 * Used only where the socket has a libuv handle with a descriptor (POSIX TCP and Unix sockets,
 * upgraded WebSocket sockets with nothing read ahead) and the protocol copies what it keeps
 * (`ProtocolAdapter.copiesChunks`); TLS and in-process streams take the stream path.
 * `--socket-io stream` turns it off.
 */
import { writeSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/** Where reads land (64 KiB, what libuv asks for per read). Reused for every read of every socket. */
export const READ_BUFFER: Buffer = Buffer.allocUnsafeSlow(64 * 1024);
const READ_AB = READ_BUFFER.buffer;

/** The parts of a libuv stream handle this module uses (not in Node's public types). */
interface StreamHandle {
  readonly fd?: number;
  useUserBuffer?: (buf: Uint8Array) => void;
}

/** `net.Socket`'s own slots for its `onread` option (symbols of the socket, found by name). */
interface OnreadSlots {
  readonly buffer: symbol;
  readonly callback: symbol;
}
let slots: OnreadSlots | null | undefined = undefined;

function onreadSlots(socket: net.Socket): OnreadSlots | null {
  if (slots !== undefined) return slots;
  const own = Object.getOwnPropertySymbols(socket);
  const buffer = own.find((s) => s.description === 'kBuffer');
  const callback = own.find((s) => s.description === 'kBufferCb');
  slots = buffer !== undefined && callback !== undefined ? { buffer, callback } : null;
  return slots;
}

/** True when `buf` lies in the shared read buffer (so it must be copied to outlive the read). */
export function inReadBuffer(buf: Buffer): boolean {
  return buf.buffer === READ_AB;
}

/**
 * Switches `socket` to direct reads: each read calls `onRead` with a view of the shared read
 * buffer, valid until it returns. Returns the socket's descriptor for direct writes, or -1 when
 * this socket cannot take the direct path (it then stays on the stream path, untouched).
 * Call before any data was delivered (in the connection handler).
 */
export function directIo(socket: net.Socket, onRead: (chunk: Buffer) => void): number {
  if (socket instanceof tls.TLSSocket || socket.readableLength !== 0) return -1;
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle == null || typeof handle.useUserBuffer !== 'function') return -1;
  const fd = handle.fd;
  if (typeof fd !== 'number' || fd < 0) return -1;
  const s = onreadSlots(socket);
  if (s === null) return -1;
  const target = socket as unknown as Record<symbol, unknown>;
  // The slots must already exist (Node sets them to null in the constructor): otherwise this
  // Node has a different onread machinery and the stream path is the safe one.
  if (!(s.buffer in target) || !(s.callback in target)) return -1;
  target[s.buffer] = READ_BUFFER;
  target[s.callback] = (n: number, buf: Buffer): void => onRead(buf.subarray(0, n));
  handle.useUserBuffer(READ_BUFFER);
  return fd;
}

/** Error codes of a write the kernel could not take now (the send buffer is full). */
const AGAIN = new Set(['EAGAIN', 'EWOULDBLOCK']);

/**
 * Writes `buf` to the descriptor without blocking; returns the bytes the kernel took (0 when
 * its buffer is full). Other errors (the peer reset) are thrown for the caller to fail the socket.
 */
export function writeNow(fd: number, buf: Buffer): number {
  try {
    return writeSync(fd, buf, 0, buf.length);
  } catch (err) {
    if (AGAIN.has((err as NodeJS.ErrnoException).code ?? '')) return 0;
    throw err;
  }
}
