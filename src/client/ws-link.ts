/**
 * A WebSocket link through the W3C WebSocket API, which both the browser's global WebSocket and
 * the `ws` package implement, so one file serves both (no Node built-ins here).
 */
import { ConnectionClosedError, EchoError, ErrorCode } from '../errors.js';
import type { Link, LinkHandlers } from './client.js';

/** The part of the W3C WebSocket interface the client uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** The WebSocket subprotocol that carries framing v1 bodies. */
export const V1_SUBPROTOCOL = 'echo.v1';

/** Extras a runtime can add (Node's `ws` has ping/pong; browsers do not). */
export interface WsExtras {
  ping?(ws: WebSocketLike, payload: Uint8Array): void;
  onPong?(ws: WebSocketLike, listener: (payload: Uint8Array) => void): void;
}

/**
 * Opens `create()`'s socket and resolves with a link once it is open; rejects with a clear
 * error (HTTP status when the runtime tells it: `ws` does, browsers do not).
 */
export function openWebSocket(
  create: () => WebSocketLike,
  mode: 'v1' | 'plain',
  h: LinkHandlers,
  signal: AbortSignal,
  extras: WsExtras = {},
): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new EchoError(ErrorCode.ABORTED, 'connect aborted'));
    let ws: WebSocketLike;
    try {
      ws = create();
    } catch (err) {
      return reject(new EchoError(ErrorCode.CONNECT, `cannot open WebSocket: ${(err as Error).message}`, { cause: err }));
    }
    ws.binaryType = 'arraybuffer';
    let opened = false;
    let errorText = '';
    const onAbort = (): void => {
      ws.onclose = null;
      try {
        ws.close(1000);
      } catch {
        // not open yet: closing a connecting socket may throw in some runtimes
      }
      reject(signal.reason instanceof Error ? signal.reason : new EchoError(ErrorCode.ABORTED, 'connect aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const link: Link = {
      send: (data) => ws.send(data),
      close: (code, reason) => {
        try {
          ws.close(code, reason);
        } catch {
          h.onClose(code, reason);
        }
      },
    };
    if (extras.ping !== undefined) {
      const ping = extras.ping;
      link.ping = (payload) => ping(ws, payload);
    }
    extras.onPong?.(ws, (payload) => h.onPong(payload));
    ws.onopen = () => {
      signal.removeEventListener('abort', onAbort);
      if (mode === 'v1' && ws.protocol !== V1_SUBPROTOCOL) {
        ws.onclose = null;
        ws.close(1002, 'echo.v1 not accepted');
        return reject(
          new ConnectionClosedError(
            ErrorCode.CONNECT,
            1002,
            '',
            'the server did not accept the echo.v1 subprotocol (use protocol: "plain")',
          ),
        );
      }
      opened = true;
      resolve(link);
    };
    ws.onmessage = (ev) => {
      const d = ev.data;
      if (typeof d === 'string') {
        if (mode === 'v1') return link.close(1003, 'echo.v1 messages must be binary');
        return h.onData(d);
      }
      const bytes = d instanceof ArrayBuffer ? new Uint8Array(d) : d instanceof Uint8Array ? d : new Uint8Array(0);
      if (mode === 'v1') h.onBody(bytes);
      else h.onData(bytes);
    };
    ws.onerror = (ev) => {
      const m = (ev as { message?: unknown } | null)?.message;
      if (typeof m === 'string') errorText = m;
    };
    ws.onclose = (ev) => {
      signal.removeEventListener('abort', onAbort);
      if (opened) return h.onClose(ev.code, ev.reason);
      // `ws` reports a refused upgrade as "Unexpected server response: 401".
      const status = /server response: (\d{3})/.exec(errorText)?.[1];
      if (status === '401' || status === '403') {
        return reject(
          new ConnectionClosedError(ErrorCode.AUTH, 1008, `HTTP ${status}`, `authentication refused (HTTP ${status}): check the token`),
        );
      }
      const detail = errorText !== '' ? errorText : 'no detail from the browser: check the URL, the certificate and the token';
      reject(new ConnectionClosedError(ErrorCode.CONNECT, ev.code, ev.reason, `could not connect (${detail})`));
    };
  });
}
