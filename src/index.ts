/**
 * EchoServer's public API (named exports only). See README.md and docs/API.md.
 */
export { createEchoServer, VERSION } from './server/echo-server.js';
export type { EchoServer, EchoServerOptions, ServerAddresses } from './server/echo-server.js';
export type { MetricsSource } from './server/http-routes.js';
export type { AuthView, PlacementView, RequestEchoView, TlsView, WhoamiView } from './server/whoami.js';
export type { ForwardedHop, ForwardedView } from './server/forwarded.js';
export type { Metrics, MetricsJson } from './observability/metrics.js';
export { attach } from './server/attach.js';
export type { AttachOptions, AttachedEcho } from './server/attach.js';
export type { EchoConnection, EchoMessage, EchoReply, MessageHandler } from './core/core.js';
export type { CloseReason, ConnectionInfo, MessageKind, TransportName, TransportStats } from './core/types.js';
export { channels } from './core/events.js';
export type { ConnectionCloseEvent, ConnectionOpenEvent, FlushEvent, MessageEvent, RejectEvent, ErrorEvent } from './core/events.js';
export { V1Client, connectV1 } from './client/stream-client.js';
export type { ClientMessage, V1ClientOptions } from './client/stream-client.js';
export { DEFAULTS, SETTINGS, resolveSettings } from './config/index.js';
export type { Settings } from './config/index.js';
export { CloseCode, ConfigError, ConnectionClosedError, EchoError, ErrorCode, HttpError, ProtocolError } from './errors.js';
