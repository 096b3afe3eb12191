/**
 * One HTTP(S) request on 127.0.0.1 with any method, headers and body; resolves with the status,
 * headers and body text. A fresh connection each time (no agent), so nothing lingers.
 */
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestSpec {
  method?: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  /** Write the body in these pieces (chunked transfer encoding, no content-length). */
  chunks?: Buffer[];
  /** HTTPS options (ca, cert, key, servername, ALPNProtocols); plain HTTP when absent. */
  tls?: https.RequestOptions & { ALPNProtocols?: string[] };
}

export async function request(port: number, spec: RequestSpec): Promise<HttpReply> {
  const base = { host: '127.0.0.1', port, path: spec.path, method: spec.method ?? 'GET', headers: spec.headers, agent: false };
  const req = spec.tls === undefined ? http.request(base) : https.request({ servername: 'localhost', ...base, ...spec.tls });
  // A server that answers before reading the whole body may reset the connection afterwards.
  req.on('error', () => undefined);
  const response = once(req, 'response') as Promise<[http.IncomingMessage]>;
  if (spec.chunks !== undefined) {
    for (const c of spec.chunks) req.write(c);
    req.end();
  } else req.end(spec.body);
  const [res] = await response;
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') };
}

/** `request` expecting a JSON body. */
export async function requestJson(
  port: number,
  spec: RequestSpec,
): Promise<{ status: number; json: Record<string, unknown>; body: string }> {
  const r = await request(port, spec);
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown>, body: r.body };
}
