/**
 * The client (Node): `connect(url | Duplex | server, options)` over ws://, wss://, tcp://,
 * tls://, unix: and in-process. The browser build is `echoserver/client/browser` (WebSocket only).
 */
export { connect } from './connect.js';
export type { ClientOptions, ConnectTarget, StreamSource } from './connect.js';
export type { ClientTlsOptions } from './stream-link.js';
export { Client } from './client.js';
export type {
  BaseClientOptions,
  ClientEvents,
  MetadataHeader,
  QueueOptions,
  ReceivedMessage,
  ReconnectOptions,
  RequestOptions,
  RequestResult,
  ServerStamp,
} from './client.js';
export { ConnectionClosedError, EchoError, ErrorCode } from '../errors.js';
// The low-level framing-v1 client over one Duplex (no reconnect), kept for existing code.
export { V1Client, connectV1 } from './stream-client.js';
export type { ClientMessage, V1ClientOptions, V1ClientEvents } from './stream-client.js';
