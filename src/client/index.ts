/** Client side: framing v1 over TCP/Unix/in-process (Node). */
export { V1Client, connectV1 } from './stream-client.js';
export type { ClientMessage, V1ClientOptions, V1ClientEvents } from './stream-client.js';
