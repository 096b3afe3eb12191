/**
 * Unit-testing your message hook with the in-process client: a server with no network
 * listener, and `server.connect()` giving a framing-v1 client over an in-memory pair. No port,
 * no socket, the same core path as TCP. Run: `node --test build/examples/in-process.test.js`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { createEchoServer, type ClientMessage, type EchoServer, type MessageHandler } from '../src/index.js';

// The application's hook under test: upper-cases "shout:" messages, echoes everything else.
const onMessage: MessageHandler = (message) => {
  const text = message.data.toString('utf8');
  return text.startsWith('shout:') ? { data: text.slice(6).toUpperCase() } : undefined;
};

describe('my message hook', () => {
  let server: EchoServer;
  before(async () => {
    server = createEchoServer({ wsPort: null, tcpPort: null, onMessage });
    await server.listen();
  });
  after(async () => {
    await server.close();
  });

  it('answers shout: in capitals', async () => {
    const client = server.connect();
    const reply = once(client, 'message');
    client.send('shout:hello');
    const [msg] = (await reply) as [ClientMessage];
    assert.equal(msg.data.toString(), 'HELLO');
    await client.close();
  });

  it('echoes the rest, with the server stamp in the header', async () => {
    const client = server.connect();
    const reply = once(client, 'message');
    client.send('plain', { id: 'm-1' });
    const [msg] = (await reply) as [ClientMessage];
    assert.equal(msg.data.toString(), 'plain');
    assert.equal(msg.header?.['id'], 'm-1');
    assert.equal((msg.header?.['srv'] as { seq: number }).seq, 1);
    await client.close();
  });
});
