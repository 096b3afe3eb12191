/**
 * Worker thread that generates the self-signed certificate (see `generateSelfSigned` in
 * tls.ts). The certificate library (selfsigned with @peculiar/x509 and pkijs, about 3 MB of
 * heap once loaded) lives and dies with this worker, so the server's own heap never holds it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { generate } from 'selfsigned';

/** What tls.ts sends: the names, split by kind, and the validity window (epoch ms). */
export interface SelfSignedRequest {
  readonly dns: readonly string[];
  readonly ips: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
}

const req = workerData as SelfSignedRequest;
const pems = await generate([{ name: 'commonName', value: req.dns[0] ?? 'localhost' }], {
  keyType: 'ec',
  curve: 'P-256',
  algorithm: 'sha256',
  notBeforeDate: new Date(req.notBefore),
  notAfterDate: new Date(req.notAfter),
  extensions: [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [...req.dns.map((value) => ({ type: 2 as const, value })), ...req.ips.map((ip) => ({ type: 7 as const, ip }))],
    },
  ],
});
parentPort?.postMessage({ cert: pems.cert, key: pems.private });
