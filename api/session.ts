/**
 * Admin sessions of the web UI and the cross-site request checks (README "Admin login", and
 * docs/operations.md "Sessions"). A session is a cookie holding a signed, expiring token: no
 * server-side store, so every API replica that shares RUNBOAT_SESSION_SECRET accepts it. State
 * changing requests that a browser may send on its own (a session cookie, or Basic credentials it
 * cached) must come from a page of this site: their Origin (or Referer) is checked, and a request
 * riding on the session cookie must also carry the page's CSRF token. Bearer tokens are never
 * sent by a browser on its own, so scripts using one are not checked.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type Koa from 'koa';
import { ClientError } from '../lib/errors.js';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'runboat_session';

/** Header in which app.js sends the page's CSRF token. */
export const CSRF_HEADER = 'x-csrf-token';

/** Options of {@link createSessions}. */
export interface SessionOptions {
  /** Key of the HMAC signatures; random per process when not given (sessions end on restart). */
  secret?: string | undefined;
  /** How long a session lasts. */
  ttlMs: number;
  /** Public URL of the UI: its origin is this site, and an https one makes the cookie Secure. */
  baseUrl: string;
  /** The time, for tests. */
  now?: () => number;
}

/** Signs and checks session tokens and their CSRF tokens. */
export interface Sessions {
  /** A new session token. */
  issue(): string;
  /** Whether a session token is one of ours and has not expired. */
  valid(token: string | undefined): token is string;
  /** The CSRF token of a session, embedded in the pages it is shown. */
  csrfToken(session: string): string;
  /** The `set-cookie` value that opens a session. */
  cookie(token: string): string;
  /** The `set-cookie` value that ends it in the browser. */
  clearCookie(): string;
  /** The origin of RUNBOAT_BASE_URL. */
  readonly origin: string;
}

function mac(secret: Buffer, value: string): string {
  return createHmac('sha256', secret).update(value).digest('base64url');
}

/** Equal strings, compared in constant time for equal lengths. */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Creates the session signer. */
export function createSessions(options: SessionOptions): Sessions {
  const secret = options.secret ? Buffer.from(options.secret) : randomBytes(32);
  const now = options.now ?? Date.now;
  const base = new URL(options.baseUrl);
  const secure = base.protocol === 'https:';
  const maxAge = Math.max(1, Math.floor(options.ttlMs / 1000));
  const attributes = `Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
  return {
    origin: base.origin,
    issue() {
      const body = `v1.${(now() + options.ttlMs).toString(36)}.${randomBytes(12).toString('base64url')}`;
      return `${body}.${mac(secret, `session:${body}`)}`;
    },
    valid(token): token is string {
      if (!token) return false;
      const parts = token.split('.');
      if (parts.length !== 4 || parts[0] !== 'v1') return false;
      const body = parts.slice(0, 3).join('.');
      if (!same(parts[3] ?? '', mac(secret, `session:${body}`))) return false;
      const expires = parseInt(parts[1] ?? '', 36);
      return Number.isFinite(expires) && expires > now();
    },
    csrfToken: (session) => mac(secret, `csrf:${session}`),
    cookie: (token) => `${SESSION_COOKIE}=${token}; Max-Age=${maxAge}; ${attributes}`,
    clearCookie: () => `${SESSION_COOKIE}=; Max-Age=0; ${attributes}`,
  };
}

/** The value of a cookie of a `cookie` header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The origin of a URL, or undefined when it is none (`null`, garbage). */
function originOf(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why a state-changing browser request does not come from this site, or undefined when it does
 * (or says nothing of where it comes from, as scripts do). This site: the origin of
 * RUNBOAT_BASE_URL, or the request's own scheme and Host.
 */
export function foreignOrigin(
  headers: { origin?: string | undefined; referer?: string | undefined },
  allowed: readonly string[],
): string | undefined {
  const from = headers.origin ?? headers.referer;
  if (from === undefined || from === '') return undefined;
  const origin = originOf(from);
  if (origin !== undefined && allowed.includes(origin)) return undefined;
  const what = headers.origin === undefined ? 'Referer' : 'Origin';
  return `cross-site request refused: ${what} ${JSON.stringify(from)} is not this site (${allowed.join(' or ')})`;
}

/** What the admin check found on a request, kept in `ctx.state.auth`. */
export interface RequestAuth {
  /** Whether the request carries the admin credential (checked against cross-site use). */
  admin: boolean;
  /** The session's CSRF token, when the request carries a valid session cookie. */
  csrf?: string;
}

/** Options of {@link adminAuth}. */
export interface AdminAuthOptions {
  sessions: Sessions;
  /** Whether an `authorization` header carries the admin credential (Basic or bearer). */
  isAdmin: (header: string | undefined) => boolean;
  /** Paths left to their own authentication (the GitHub webhook: signed deliveries). */
  exempt?: (path: string) => boolean;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Middleware that finds who a request is (`ctx.state.auth`) and refuses, 403 with the reason,
 * state-changing requests a page of another site made a browser send.
 */
export function adminAuth(options: AdminAuthOptions): Koa.Middleware {
  const { sessions } = options;
  return async (ctx, next) => {
    if (options.exempt?.(ctx.path)) return next();
    const header = ctx.get('authorization') || undefined;
    const session = cookieValue(ctx.get('cookie'), SESSION_COOKIE);
    const csrf = sessions.valid(session) ? sessions.csrfToken(session) : undefined;
    const bearer = header?.toLowerCase().startsWith('bearer ') ?? false;
    const auth: RequestAuth = { admin: false, ...(csrf ? { csrf } : {}) };
    ctx.state.auth = auth;
    if (!SAFE_METHODS.has(ctx.method) && !bearer) {
      const foreign = foreignOrigin(
        { origin: ctx.get('origin') || undefined, referer: ctx.get('referer') || undefined },
        [sessions.origin, `${ctx.protocol}://${ctx.host}`],
      );
      if (foreign) throw new ClientError(foreign, 403);
    }
    if (header) {
      auth.admin = options.isAdmin(header);
    } else if (csrf) {
      if (!SAFE_METHODS.has(ctx.method)) {
        // The login and logout forms need no token: a forged one could only open or end a
        // session, and their Origin is checked above.
        const form = ctx.path === '/login' || ctx.path === '/logout';
        if (!form && !same(ctx.get(CSRF_HEADER), csrf)) {
          throw new ClientError(
            'CSRF token missing or wrong: send the requests of a session from its pages (reload the page)',
            403,
          );
        }
      }
      auth.admin = true;
    }
    return next();
  };
}
