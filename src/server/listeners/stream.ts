/**
 * Stream listeners: TCP (framing v1 or `len`), the raw echo and the Unix socket. Each accepted
 * socket goes through the core's one admission step; refused sockets get their close frame
 * (v1) and are destroyed once it is out, with a deadline.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { TransportName } from '../../core/types.js';
import { clientKeyOf, destroySoon, type EchoCore } from '../../core/core.js';
import { peerIdentity } from '../../security/tls.js';
import { makeStreamProtocol, refusalBytes, type StreamFraming } from '../../transports/stream.js';
import { peerOf } from '../../transports/ws.js';
import { boundAddress, listenOne, streamServer, type ListenerContext } from './context.js';

/** The connection handler of a stream listener. */
export function streamHandler(core: EchoCore, transport: TransportName, framing: StreamFraming): (socket: net.Socket) => void {
  return function onStreamConnection(socket: net.Socket): void {
    const peer = transport === 'unix' ? 'unix' : peerOf(socket);
    const identity = socket instanceof tls.TLSSocket ? peerIdentity(socket) : undefined;
    const admitted = core.admit(transport, peer, clientKeyOf(transport, identity, socket.remoteAddress));
    if ('reason' in admitted) return destroySoon(socket, refusalBytes(framing, admitted.code, admitted.message));
    if (transport !== 'unix') socket.setNoDelay(true);
    // With authentication on, framing v1 starts with a hello carrying the credential.
    core.accept(socket, transport, peer, makeStreamProtocol(framing, core.auth !== undefined), admitted, identity);
  };
}

/** A TCP-family listener (plaintext or TLS by the `insecure` setting). */
export async function startStreamListener(
  ctx: ListenerContext,
  name: 'tcp' | 'raw',
  framing: StreamFraming,
  port: number,
): Promise<{ host: string; port: number }> {
  const server = streamServer(ctx, streamHandler(ctx.core, name, framing));
  await listenOne(ctx, name, server, { port, host: ctx.settings.host });
  return boundAddress(server);
}
