/**
 * What every transport shares about one received message: its `echoserver:message` event and
 * the `srv` stamp of an echoed header. `seq` is the message's per-connection sequence number;
 * `receivedAt` the `performance.now()` of its read.
 */
import type { Connection } from './connection.js';
import { channels, messageSampleRatio } from './events.js';
import type { MessageKind } from './types.js';
import type { MetadataHeader, ServerStamp } from '../protocol/header.js';

/** Publishes one message (call only when `channels.message.hasSubscribers` and it was sampled). */
export function publishMessage(
  conn: Connection,
  seq: number,
  receivedAt: number,
  kind: MessageKind,
  size: number,
  header: MetadataHeader | undefined,
): void {
  const id = typeof header?.['id'] === 'string' ? header['id'] : `${conn.id}-${seq}`;
  channels.message.publish({
    connection: conn,
    id,
    kind,
    size,
    header,
    receivedAt,
    sampleRatio: header === undefined ? messageSampleRatio() : 1,
  });
}

const epochMs = (t: number): number => Math.round((performance.timeOrigin + t) * 1000) / 1000;

/** The server's part of an echoed header: instance, connection, sequence, receive and send times. */
export function serverStamp(conn: Connection, seq: number, receivedAt: number): ServerStamp {
  const { instance, workerId } = conn.host.settings;
  return { instance, worker: workerId ?? undefined, conn: conn.id, seq, rx: epochMs(receivedAt), tx: epochMs(performance.now()) };
}
