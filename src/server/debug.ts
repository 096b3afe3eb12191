/**
 * The debugging routes' context (`/whoami`, the request echo): the same credentials check as a
 * WebSocket upgrade, and the views of whoami.ts bound to this server's settings.
 */
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { Settings } from '../config/index.js';
import { authHttpError, extractBearer } from '../security/auth.js';
import { compileCidrList, type CidrList } from '../security/cidr.js';
import { peerIdentity } from '../security/tls.js';
import type { SecurityContext } from './security.js';
import type { WhoamiContext } from '../core/injection.js';
import type { ConnectionInfo } from '../core/types.js';
import {
  buildRequestEcho,
  buildWhoami,
  placement,
  type AuthView,
  type PeerSocket,
  type PlacementView,
  type RequestEchoView,
  type WhoamiView,
} from './whoami.js';

export interface DebugRoutes {
  /** Path of the HTTP request echo; null = off. */
  readonly echoPath: string | null;
  /** Largest request body echoed, bytes (the frame limit); more gets 413. */
  readonly maxBodyBytes: number;
  /** The credentials check of an upgrade: the auth view, or a rejection with HttpError 401. */
  authorize(req: IncomingMessage): Promise<AuthView>;
  whoami(req: IncomingMessage, auth: AuthView): WhoamiView;
  requestEcho(req: IncomingMessage, body: Buffer): RequestEchoView;
}

export interface DebugContext extends DebugRoutes {
  readonly placement: PlacementView;
  readonly trustedProxies: CidrList;
  /** The whoami view of an open connection (the `hello` reply's `whoami`). */
  describeConnection(conn: ConnectionInfo & { readonly socket: unknown }, context: WhoamiContext | undefined): WhoamiView;
}

export function createDebugContext(
  settings: Readonly<Settings>,
  security: () => SecurityContext | undefined,
  env: NodeJS.ProcessEnv = process.env,
): DebugContext {
  const where = placement(settings.instance, settings.workerId, env);
  const trustedProxies = compileCidrList(settings.trustedProxies);
  const tokenParam = settings.authQueryParam;
  return {
    placement: where,
    trustedProxies,
    echoPath: settings.httpEchoPath,
    maxBodyBytes: settings.maxFrameBytes,
    async authorize(req) {
      const certIdentity = req.socket instanceof TLSSocket ? peerIdentity(req.socket) : undefined;
      const auth = security()?.auth;
      if (auth === undefined) return { mode: settings.auth, identity: certIdentity ?? null, claims: null };
      const r = await auth.authenticate(extractBearer(req.headers.authorization, req.url, tokenParam));
      if (!r.ok) throw authHttpError();
      return { mode: settings.auth, identity: r.anonymous ? (certIdentity ?? null) : r.identity, claims: r.claims ?? null };
    },
    whoami(req, auth) {
      return buildWhoami({ placement: where, socket: req.socket, request: req, trustedProxies, tokenParam, auth });
    },
    describeConnection(conn, context) {
      return buildWhoami({
        placement: where,
        socket: conn.socket as PeerSocket,
        request: context?.request,
        trustedProxies,
        tokenParam,
        auth: { mode: settings.auth, identity: conn.identity ?? null, claims: context?.claims ?? null },
      });
    },
    requestEcho(req, body) {
      return buildRequestEcho(req, body, tokenParam, settings.instance);
    },
  };
}
