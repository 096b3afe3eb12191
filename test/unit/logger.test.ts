import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { channels } from '../../src/core/events.js';
import type { ConnectionCloseEvent, ConnectionOpenEvent, ErrorEvent, MessageEvent, RejectEvent } from '../../src/core/events.js';
import type { ConnectionInfo } from '../../src/core/types.js';
import { faultChannel, type FaultEvent } from '../../src/core/injection.js';
import { attachLogging, createLogger, REDACTED, type LogLevel } from '../../src/observability/logger.js';

/** A destination that keeps every line pino writes (pino writes synchronously to it). */
class Capture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') this.lines.push(line);
    cb();
  }
  json(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

const conn: ConnectionInfo = {
  id: 'c1a2b3-17',
  transport: 'ws',
  peer: '127.0.0.1:50123',
  identity: 'svc-billing',
  connectedAt: 1_700_000_000_000,
  messagesIn: 12,
  messagesOut: 11,
  bytesIn: 3456,
  bytesOut: 3400,
  queuedBytes: 0,
};

function setup(level: LogLevel = 'info'): { out: Capture; detach: () => void; logger: ReturnType<typeof createLogger> } {
  const out = new Capture();
  const logger = createLogger({ level, format: 'json', destination: out });
  return { out, logger, detach: attachLogging(logger) };
}

describe('createLogger + attachLogging', () => {
  it('logs connection open and close at info with their fields', () => {
    const { out, detach } = setup();
    try {
      channels.open.publish({ connection: conn, instance: 'i-1' } satisfies ConnectionOpenEvent);
      channels.close.publish({
        connection: conn,
        instance: 'i-1',
        code: 1000,
        reason: 'normal',
        detail: 'bye',
        durationMs: 4321,
      } satisfies ConnectionCloseEvent);
      const [open, close] = out.json();
      assert.ok(open !== undefined && close !== undefined);
      assert.equal(open['level'], 30);
      assert.equal(open['event'], 'connection.open');
      assert.equal(open['conn'], 'c1a2b3-17');
      assert.equal(open['transport'], 'ws');
      assert.equal(open['peer'], '127.0.0.1:50123');
      assert.equal(open['identity'], 'svc-billing');
      assert.equal(open['instance'], undefined, 'instance comes from the base fields, not per event (no duplicate keys)');
      assert.equal(close['level'], 30);
      assert.equal(close['event'], 'connection.close');
      assert.equal(close['durationMs'], 4321);
      assert.equal(close['messagesIn'], 12);
      assert.equal(close['messagesOut'], 11);
      assert.equal(close['bytesIn'], 3456);
      assert.equal(close['bytesOut'], 3400);
      assert.equal(close['code'], 1000);
      assert.equal(close['reason'], 'normal');
      assert.equal(close['detail'], 'bye');
    } finally {
      detach();
    }
  });

  it('logs every injected fault (fault channel), and stops after detach', () => {
    const { out, detach } = setup();
    try {
      faultChannel.publish({ connection: conn, fault: 'close', code: 4001, source: 'url' } satisfies FaultEvent);
      faultChannel.publish({ connection: conn, fault: 'stall', ms: 250, source: 'url' } satisfies FaultEvent);
      const [close, stall] = out.json();
      assert.equal(close?.['event'], 'fault');
      assert.equal(close?.['fault'], 'close');
      assert.equal(close?.['code'], 4001);
      assert.equal(close?.['conn'], 'c1a2b3-17');
      assert.equal(close?.['level'], 30);
      assert.equal(stall?.['ms'], 250);
    } finally {
      detach();
    }
    faultChannel.publish({ connection: conn, fault: 'drop', source: 'header' } satisfies FaultEvent);
    assert.equal(faultChannel.hasSubscribers, false);
  });

  it('warns on rejects and logs errors with their cause', () => {
    const { out, detach } = setup();
    try {
      channels.reject.publish({
        transport: 'tcp',
        reason: 'auth',
        peer: '10.0.0.9:4000',
        detail: 'bad token',
      } satisfies RejectEvent);
      const cause = new Error('ECONNRESET from peer');
      channels.error.publish({ connection: conn, error: new Error('write failed', { cause }) } satisfies ErrorEvent);
      const [reject, error] = out.json();
      assert.ok(reject !== undefined && error !== undefined);
      assert.equal(reject['level'], 40);
      assert.equal(reject['event'], 'connection.reject');
      assert.equal(reject['reason'], 'auth');
      assert.equal(reject['transport'], 'tcp');
      assert.equal(error['level'], 50);
      assert.equal(error['msg'], 'write failed');
      assert.equal(error['conn'], 'c1a2b3-17');
      const err = error['err'] as { message: string; stack: string; cause: { message: string } };
      assert.equal(err.message, 'write failed');
      assert.equal(err.cause.message, 'ECONNRESET from peer');
    } finally {
      detach();
    }
  });

  it('subscribes to messages only at debug, following level changes', () => {
    const { out, logger, detach } = setup('info');
    const msg: MessageEvent = {
      connection: conn,
      id: 'm-42',
      kind: 'binary',
      size: 128,
      header: { traceparent: '00-aa-bb-01', token: 'top-secret-token' },
      sampleRatio: 1,
      receivedAt: 1,
    };
    try {
      assert.equal(channels.message.hasSubscribers, false, 'no per-message subscription at info');
      logger.level = 'debug';
      assert.equal(channels.message.hasSubscribers, true);
      channels.message.publish(msg);
      const [line] = out.json();
      assert.ok(line !== undefined);
      assert.equal(line['level'], 20);
      assert.equal(line['msgId'], 'm-42');
      assert.equal(line['kind'], 'binary');
      assert.equal(line['size'], 128);
      assert.equal(line['conn'], 'c1a2b3-17');
      assert.ok(!out.lines.join('\n').includes('top-secret-token'), 'the header is not logged');
      logger.level = 'warn';
      assert.equal(channels.message.hasSubscribers, false);
    } finally {
      detach();
    }
  });

  it('never writes a secret: redaction by pino', () => {
    const { out, logger, detach } = setup();
    detach();
    logger.info(
      {
        token: 'tok-1-SECRET',
        password: 'pw-SECRET',
        auth: { token: 'tok-2-SECRET', authorization: 'Bearer abc-SECRET' },
        headers: { authorization: 'Bearer def-SECRET', 'user-agent': 'x' },
        req: { headers: { authorization: 'Basic ghi-SECRET', cookie: 'sid=SECRET' } },
        client: { tls: { key: 'pem-SECRET' } },
        config: { secret: 'hmac-SECRET' },
      },
      'request',
    );
    const text = out.lines.join('\n');
    assert.ok(!text.includes('SECRET'), text);
    const [line] = out.json();
    assert.ok(line !== undefined);
    assert.equal(line['token'], REDACTED);
    assert.deepEqual(line['headers'], { authorization: REDACTED, 'user-agent': 'x' });
    assert.deepEqual(line['auth'], { token: REDACTED, authorization: REDACTED });
  });

  it('redacts in pretty format too', () => {
    const out = new Capture();
    const logger = createLogger({ level: 'info', format: 'pretty', destination: out });
    logger.info({ auth: { token: 'pretty-SECRET' } }, 'hello pretty');
    const text = out.lines.join('\n');
    assert.match(text, /hello pretty/);
    assert.ok(!text.includes('pretty-SECRET'), text);
    assert.throws(() => JSON.parse(out.lines[0] ?? ''), 'pretty output is not JSON');
  });

  it('unsubscribes cleanly and idempotently; validates options', () => {
    const { out, logger, detach } = setup('debug');
    assert.equal(channels.message.hasSubscribers, true);
    detach();
    detach();
    assert.equal(channels.open.hasSubscribers, false);
    assert.equal(channels.close.hasSubscribers, false);
    assert.equal(channels.reject.hasSubscribers, false);
    assert.equal(channels.error.hasSubscribers, false);
    assert.equal(channels.message.hasSubscribers, false);
    logger.level = 'trace'; // no resubscription after detach
    assert.equal(channels.message.hasSubscribers, false);
    channels.open.publish({ connection: conn, instance: 'i-1' } satisfies ConnectionOpenEvent);
    assert.equal(out.lines.length, 0);
    assert.throws(() => createLogger({ level: 'loud' as LogLevel }), /log level/);
    assert.throws(() => createLogger({ format: 'xml' as 'json' }), /log format/);
  });
});
