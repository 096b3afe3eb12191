/**
 * `echoserver probe URL`: one round trip against a running server, for health checks (a
 * Kubernetes exec probe, a CI smoke test): connect, send a random message, check the echo is
 * byte-identical, print one JSON line with the round-trip time, exit 0; any failure exits 1.
 */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import WebSocket from 'ws';
import { V1Client } from '../client/stream-client.js';

export interface ProbeResult {
  ok: boolean;
  url: string;
  rttMs?: number;
  instance?: string;
  error?: string;
}

/** Probes `url`; `verifyTls: false` accepts any certificate. Never throws. */
export async function probe(url: string, options: { timeoutMs: number; verifyTls: boolean }): Promise<ProbeResult> {
  const payload = randomBytes(32);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no echo within ${options.timeoutMs} ms`)), options.timeoutMs);
  });
  const cleanup: (() => void)[] = [];
  try {
    const result = await Promise.race([roundTrip(url, payload, options.verifyTls, cleanup), timeout]);
    return { ok: true, url, ...result };
  } catch (err) {
    return { ok: false, url, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
    for (const c of cleanup) c();
  }
}

async function roundTrip(
  url: string,
  payload: Buffer,
  verifyTls: boolean,
  cleanup: (() => void)[],
): Promise<{ rttMs: number; instance?: string }> {
  // http(s)://…/readyz: what `probe self` checks when authentication is on (the probe has no
  // credential to echo with). Any status but 200 is a failure.
  if (url.startsWith('http://') || url.startsWith('https://')) {
    const t0 = performance.now();
    const req = (url.startsWith('https:') ? https : http).get(url, { rejectUnauthorized: verifyTls, agent: false });
    cleanup.push(() => req.destroy());
    const [res] = (await Promise.race([once(req, 'response'), once(req, 'error').then(([e]) => Promise.reject(e as Error))])) as [
      http.IncomingMessage,
    ];
    res.resume();
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}`);
    return { rttMs: round(performance.now() - t0) };
  }
  if (url.startsWith('ws://') || url.startsWith('wss://')) {
    const ws = new WebSocket(url, { rejectUnauthorized: verifyTls, handshakeTimeout: 5000 });
    cleanup.push(() => ws.terminate());
    ws.on('error', () => {}); // surfaced through 'open'/'message' below
    await Promise.race([once(ws, 'open'), once(ws, 'error').then(([e]) => Promise.reject(e as Error))]);
    const t0 = performance.now();
    ws.send(payload);
    // A close before the echo (e.g. a fault asked for with ?close=) is an answer, not a timeout.
    const [data] = (await Promise.race([
      once(ws, 'message'),
      once(ws, 'close').then(([code, reason]) =>
        Promise.reject(new Error(`closed ${String(code)}${String(reason) === '' ? '' : ` ${String(reason)}`}`)),
      ),
    ])) as [Buffer];
    const rttMs = performance.now() - t0;
    if (!Buffer.from(data).equals(payload)) throw new Error('echo differs from what was sent');
    return { rttMs: round(rttMs) };
  }
  let socket: net.Socket;
  const u = url.startsWith('unix:') ? undefined : new URL(url);
  if (url.startsWith('unix:')) socket = net.connect(url.slice('unix:'.length).replace(/^\/\//, ''));
  else if (u?.protocol === 'tcp:') socket = net.connect(Number(u.port), u.hostname.replace(/^\[|\]$/g, ''));
  else if (u?.protocol === 'tls:')
    socket = tls.connect({
      port: Number(u.port),
      host: u.hostname.replace(/^\[|\]$/g, ''),
      rejectUnauthorized: verifyTls,
      servername: net.isIP(u.hostname) ? undefined : u.hostname,
    });
  else throw new Error(`unsupported URL ${url} (ws://, wss://, tcp://, tls://, unix:PATH, http(s):// for a readiness URL)`);
  cleanup.push(() => socket.destroy());
  await Promise.race([
    once(socket, socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect'),
    once(socket, 'error').then(([e]) => Promise.reject(e as Error)),
  ]);
  const client = new V1Client(socket);
  client.on('error', () => {});
  const t0 = performance.now();
  client.send(payload, { id: 'probe' });
  const [msg] = await Promise.race([
    once(client, 'message'),
    once(client, 'close').then(([c]) => Promise.reject(new Error(`closed ${(c as { code: number }).code}`))),
  ]);
  const rttMs = performance.now() - t0;
  const m = msg as { data: Buffer; header?: Record<string, unknown> };
  if (!m.data.equals(payload)) throw new Error('echo differs from what was sent');
  const srv = m.header?.['srv'] as { instance?: string } | undefined;
  return { rttMs: round(rttMs), instance: srv?.instance };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
