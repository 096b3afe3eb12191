import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type ConnectionOptions, type Server, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { ConfigError } from '../../src/errors.js';
import {
  generateSelfSigned,
  loadTlsMaterial,
  onSighupReload,
  peerIdentity,
  watchTlsFiles,
  type TlsMaterial,
} from '../../src/security/tls.js';

// These tests use real sockets on 127.0.0.1 (the TLS handshake is the unit under test).

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'echo-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface EchoServer {
  server: Server;
  port: number;
  identities: (string | undefined)[];
  clientErrors: Error[];
}

async function startEcho(t: { after(fn: () => Promise<void>): void }, material: TlsMaterial): Promise<EchoServer> {
  const identities: (string | undefined)[] = [];
  const clientErrors: Error[] = [];
  const sockets = new Set<TLSSocket>();
  const server = createServer(material.serverOptions, function onSecure(socket) {
    identities.push(peerIdentity(socket));
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  server.on('tlsClientError', (err: Error) => clientErrors.push(err));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { server, port: (server.address() as AddressInfo).port, identities, clientErrors };
}

/** Connects and echoes one line; resolves with the socket (left open) or rejects with the TLS error. */
async function echoOnce(port: number, options: ConnectionOptions): Promise<TLSSocket> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  try {
    await once(socket, 'secureConnect');
    socket.write('ping\n');
    // With TLS 1.3 the client's handshake completes before the server has checked the client
    // certificate; a refusal then arrives as an alert (an 'error') or as a bare close.
    const ac = new AbortController();
    const data = await Promise.race([
      once(socket, 'data', { signal: ac.signal }).then(([d]) => d as Buffer),
      once(socket, 'close', { signal: ac.signal }).then(() => {
        throw new Error('closed before the echo');
      }),
    ]).finally(() => ac.abort());
    assert.equal(data.toString(), 'ping\n');
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

async function makeCa(cn: string): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

async function makeClientCert(cn: string, ca: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: cn }], { keyType: 'ec', algorithm: 'sha256', ca });
  return { cert: pems.cert, key: pems.private };
}

test('generated self-signed certificate: SANs, SHA-256 fingerprint, TLS 1.2 minimum', async () => {
  const m = await loadTlsMaterial({ hostnames: ['echo.test', '10.1.2.3', '0.0.0.0'] });
  assert.equal(m.selfSigned, true);
  assert.ok(m.generatedCertPem);
  const x = new X509Certificate(m.generatedCertPem);
  assert.equal(m.fingerprint256, x.fingerprint256);
  assert.match(m.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  const san = x.subjectAltName ?? '';
  for (const name of ['DNS:echo.test', 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:10.1.2.3'])
    assert.ok(san.includes(name), `${name} in ${san}`);
  assert.match(san, /IP Address:(0:0:0:0:0:0:0:1|::1)/);
  assert.ok(!san.includes('0.0.0.0'));
  assert.equal(x.publicKey.asymmetricKeyType, 'ec');
  assert.equal(m.secureContextOptions.minVersion, 'TLSv1.2');
  assert.equal(m.serverOptions.requestCert, false);
  assert.ok(m.notAfter.getTime() > Date.now() + 300 * 86_400_000);
  assert.deepEqual(m.warnings, []);
});

test('a client trusting the generated certificate connects; one that does not fails', async (t) => {
  const m = await loadTlsMaterial({ hostnames: ['[::1]'], alpnProtocols: ['http/1.1'] });
  const { port } = await startEcho(t, m);
  const ok = await echoOnce(port, { ca: m.generatedCertPem, ALPNProtocols: ['http/1.1'] });
  assert.equal(ok.authorized, true);
  assert.equal(ok.alpnProtocol, 'http/1.1');
  assert.equal(ok.getPeerX509Certificate()?.fingerprint256, m.fingerprint256);
  ok.destroy();
  await assert.rejects(echoOnce(port, {}), (e: NodeJS.ErrnoException) => e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT');
  // Wrong host name: the certificate does not cover it.
  await assert.rejects(
    echoOnce(port, { ca: m.generatedCertPem, servername: 'other.test' }),
    (e: NodeJS.ErrnoException) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID',
  );
  // Below the minimum version.
  await assert.rejects(echoOnce(port, { ca: m.generatedCertPem, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
});

test('mTLS require: valid client certificate gives its CN; missing and wrong-CA certificates are refused', async (t) => {
  const dir = await tempDir(t);
  const ca = await makeCa('Echo Test CA');
  const otherCa = await makeCa('Other CA');
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  const m = await loadTlsMaterial({ hostnames: [], caFile: join(dir, 'ca.pem'), clientAuth: 'require' });
  assert.equal(m.serverOptions.requestCert, true);
  assert.equal(m.serverOptions.rejectUnauthorized, true);
  const srv = await startEcho(t, m);
  const alice = await makeClientCert('alice', ca);
  const s = await echoOnce(srv.port, { ca: m.generatedCertPem, cert: alice.cert, key: alice.key });
  s.destroy();
  assert.deepEqual(srv.identities, ['alice']);

  await assert.rejects(echoOnce(srv.port, { ca: m.generatedCertPem }));
  const mallory = await makeClientCert('mallory', otherCa);
  await assert.rejects(echoOnce(srv.port, { ca: m.generatedCertPem, cert: mallory.cert, key: mallory.key }));
  assert.deepEqual(srv.identities, ['alice'], 'no connection was accepted for the refused clients');
  assert.equal(srv.clientErrors.length, 2);
});

test('mTLS optional: no certificate or an unverified one connects without identity', async (t) => {
  const dir = await tempDir(t);
  const ca = await makeCa('Echo Test CA');
  const otherCa = await makeCa('Other CA');
  await writeFile(join(dir, 'ca.pem'), ca.cert);
  const m = await loadTlsMaterial({ hostnames: [], caFile: join(dir, 'ca.pem'), clientAuth: 'optional' });
  const srv = await startEcho(t, m);
  (await echoOnce(srv.port, { ca: m.generatedCertPem })).destroy();
  const mallory = await makeClientCert('mallory', otherCa);
  (await echoOnce(srv.port, { ca: m.generatedCertPem, cert: mallory.cert, key: mallory.key })).destroy();
  const bob = await makeClientCert('bob', ca);
  (await echoOnce(srv.port, { ca: m.generatedCertPem, cert: bob.cert, key: bob.key })).destroy();
  assert.deepEqual(srv.identities, [undefined, undefined, 'bob']);
});

test('setSecureContext swaps the certificate for new connections; an open one stays up', async (t) => {
  // Distinct subjects: OpenSSL looks trust anchors up by subject name.
  const a = await loadTlsMaterial({ hostnames: ['a.test'] });
  const b = await loadTlsMaterial({ hostnames: ['b.test'] });
  assert.notEqual(a.fingerprint256, b.fingerprint256);
  const srv = await startEcho(t, a);
  const trustBoth = { ca: [a.generatedCertPem ?? '', b.generatedCertPem ?? ''] };
  const first = await echoOnce(srv.port, trustBoth);
  assert.equal(first.getPeerX509Certificate()?.fingerprint256, a.fingerprint256);

  srv.server.setSecureContext(b.secureContextOptions);
  const second = await echoOnce(srv.port, trustBoth);
  assert.equal(second.getPeerX509Certificate()?.fingerprint256, b.fingerprint256);
  // A client pinned to the old certificate cannot connect any more.
  await assert.rejects(echoOnce(srv.port, { ca: a.generatedCertPem }));

  first.write('still here\n');
  const [data] = (await once(first, 'data')) as [Buffer];
  assert.equal(data.toString(), 'still here\n');
  first.destroy();
  second.destroy();
});

test('certificate files: loaded, fingerprint reported; bad combinations are ConfigErrors naming the setting', async (t) => {
  const dir = await tempDir(t);
  const one = await loadTlsMaterial({ hostnames: [] });
  const two = await loadTlsMaterial({ hostnames: [] });
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  await writeFile(cert, one.generatedCertPem ?? '');
  await writeFile(key, String(one.secureContextOptions.key));
  const m = await loadTlsMaterial({ certFile: cert, keyFile: key });
  assert.equal(m.selfSigned, false);
  assert.equal(m.generatedCertPem, undefined);
  assert.equal(m.fingerprint256, one.fingerprint256);

  const setting = (name: string) => (e: unknown) => e instanceof ConfigError && e.setting === name;
  await assert.rejects(loadTlsMaterial({ certFile: cert }), setting('tlsKey'));
  await assert.rejects(loadTlsMaterial({ keyFile: key }), setting('tlsCert'));
  await assert.rejects(loadTlsMaterial({ clientAuth: 'require' }), setting('tlsCa'));
  await assert.rejects(loadTlsMaterial({ certFile: join(dir, 'missing'), keyFile: key }), setting('tlsCert'));
  const otherKey = join(dir, 'other.key');
  await writeFile(otherKey, String(two.secureContextOptions.key));
  await assert.rejects(loadTlsMaterial({ certFile: cert, keyFile: otherKey }), setting('tlsKey'));
  await writeFile(join(dir, 'junk'), 'not a pem');
  await assert.rejects(loadTlsMaterial({ certFile: join(dir, 'junk'), keyFile: key }), setting('tlsCert'));
  await assert.rejects(loadTlsMaterial({ certFile: cert, keyFile: join(dir, 'junk') }), setting('tlsKey'));
});

test('a certificate close to expiry produces a warning', async () => {
  const dayMs = 86_400_000;
  const m = await loadTlsMaterial({ hostnames: [], selfSignedDays: 3 });
  assert.equal(m.warnings.length, 1);
  assert.match(m.warnings[0] ?? '', /expires/);
  assert.ok(m.notAfter.getTime() < Date.now() + 4 * dayMs);
});

test('watchTlsFiles: a rotation (write + rename) calls onChange; close() stops everything', async (t) => {
  const dir = await tempDir(t);
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  await writeFile(cert, 'cert-1');
  await writeFile(key, 'key-1');
  let calls = 0;
  let notify: () => void = () => undefined;
  const watcher = watchTlsFiles(
    [cert, key],
    () => {
      calls++;
      notify();
    },
    { debounceMs: 20 },
  );
  t.after(() => watcher.close());
  const changed = (): Promise<void> => new Promise((r) => (notify = r));

  let next = changed();
  await writeFile(join(dir, 'tls.crt.tmp'), 'cert-2');
  await rename(join(dir, 'tls.crt.tmp'), cert);
  await writeFile(key, 'key-2');
  await next;
  assert.equal(calls, 1, 'one rotation, one reload');

  // SIGHUP: reload without any file change.
  const signals = new EventEmitter();
  const detach = onSighupReload(watcher, signals);
  next = changed();
  signals.emit('SIGHUP');
  await next;
  assert.equal(calls, 2);
  detach();
  assert.equal(signals.listenerCount('SIGHUP'), 0);

  watcher.close();
  watcher.close(); // idempotent
  watcher.reload(); // no effect once closed
  await writeFile(cert, 'cert-3');
  assert.equal(calls, 2);
  // A leaked fs watcher or timer would keep this test file's process alive and fail the run.
});

test('watchTlsFiles: a touched file with unchanged content does not reload', async (t) => {
  const dir = await tempDir(t);
  const cert = join(dir, 'tls.crt');
  await writeFile(cert, 'same');
  let calls = 0;
  let notify: () => void = () => undefined;
  const errors: Error[] = [];
  const watcher = watchTlsFiles(
    [cert],
    () => {
      calls++;
      notify();
    },
    { debounceMs: 20, onError: (e) => errors.push(e) },
  );
  t.after(() => watcher.close());
  await writeFile(cert, 'same'); // event, same digest: no reload
  const next = new Promise<void>((r) => (notify = r));
  await writeFile(cert, 'different');
  await next;
  assert.equal(calls, 1);
  assert.deepEqual(errors, []);
});

test('self-signed generation runs in a worker, and a deadline bounds it (start-up never hangs on it)', async () => {
  const { cert, key } = await generateSelfSigned(['example.test']);
  const x = new X509Certificate(cert);
  assert.match(x.subjectAltName ?? '', /DNS:example\.test/);
  assert.match(key, /PRIVATE KEY/);
  // A worker cannot even start within 1 ms: the deadline rejects and stops it.
  await assert.rejects(generateSelfSigned(['example.test'], { timeoutMs: 1 }), /longer than 1 ms/);
});
