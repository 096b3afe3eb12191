/** The URL `echoserver bench` loads: which transport, where, and which framing. */
import { BenchUsageError } from './options.js';

export type Framing = 'ws' | 'v1' | 'len';

export interface Target {
  /** The URL as given (reports show it). */
  readonly url: string;
  readonly scheme: 'ws:' | 'wss:' | 'tcp:' | 'tls:' | 'unix:';
  readonly framing: Framing;
  readonly tls: boolean;
  /** Host and port (ws, wss, tcp, tls); the socket path for unix:. */
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

/** `framing` applies to tcp://, tls:// and unix: (WebSocket frames itself). */
export function parseTarget(url: string, framingFlag: 'v1' | 'len' | undefined): Target {
  const framing = framingFlag ?? 'v1';
  if (url.startsWith('unix:')) {
    const path = url.slice('unix:'.length).replace(/^\/\//, '');
    if (path === '') throw new BenchUsageError(`URL '${url}' has no socket path (unix:/path/to/echo.sock)`);
    return { url, scheme: 'unix:', framing, tls: false, host: '', port: 0, path };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BenchUsageError(`URL '${url}' is not a URL (ws://, wss://, tcp://, tls://HOST:PORT or unix:PATH)`);
  }
  const scheme = u.protocol;
  if (scheme !== 'ws:' && scheme !== 'wss:' && scheme !== 'tcp:' && scheme !== 'tls:') {
    throw new BenchUsageError(`URL scheme '${scheme}' is not supported (ws://, wss://, tcp://, tls://, unix:PATH)`);
  }
  const ws = scheme === 'ws:' || scheme === 'wss:';
  const port = u.port === '' ? (ws ? (scheme === 'wss:' ? 443 : 80) : NaN) : Number(u.port);
  if (!Number.isInteger(port) || port < 1) throw new BenchUsageError(`URL '${url}' needs a port (e.g. ${scheme}//127.0.0.1:9000)`);
  if (ws && framingFlag !== undefined) throw new BenchUsageError('--framing applies to tcp://, tls:// and unix: only');
  return {
    url,
    scheme,
    framing: ws ? 'ws' : framing,
    tls: scheme === 'wss:' || scheme === 'tls:',
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    path: ws ? u.pathname + u.search : '',
  };
}
