/**
 * Access to the HTTP faces of sc2c (issue 22: the console; issue 16's admin API): a bearer token
 * in `Authorization`, or a session cookie set by a login form, compared in constant time; and a
 * `Host` check, so a page on another site cannot reach a loopback console through DNS rebinding.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** The cookie value a login sets: derived from the token, so the token itself never sits in a cookie. */
export const sessionValue = (cookie: string, token: string): string =>
  createHash('sha256').update(`${cookie}:${token}`).digest('hex');

/** Hashing both sides gives equal lengths, so the comparison is constant-time whatever is sent. */
export const sameSecret = (given: string, expected: string): boolean =>
  timingSafeEqual(sha256(given), sha256(expected));

/** One cookie from a `Cookie` header, without a parser dependency; undefined when absent. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export interface TokenGateInit {
  /** No token: everything is open (loopback only; the commands refuse other addresses). */
  readonly token?: string;
  /** Session cookie name. */
  readonly cookie: string;
  /** Where a browser without a session is sent (a login form); API clients get 401. */
  readonly loginPath: string;
  /** Paths open without a token (health checks, the login form itself). */
  readonly open?: readonly string[];
}

/** Express middleware: bearer token or session cookie, else 401 (API) or a redirect (pages). */
export function tokenGate(init: TokenGateInit) {
  const open = new Set([init.loginPath, ...(init.open ?? [])]);
  return (req: Request, res: Response, next: NextFunction): void => {
    const token = init.token;
    if (!token || open.has(req.path)) {
      next();
      return;
    }
    const bearer = /^Bearer (.+)$/.exec(req.get('authorization') ?? '')?.[1];
    const session = readCookie(req.get('cookie'), init.cookie);
    if (
      (bearer !== undefined && sameSecret(bearer, token)) ||
      (session !== undefined && sameSecret(session, sessionValue(init.cookie, token)))
    ) {
      next();
      return;
    }
    if (req.method === 'GET' && (req.get('accept') ?? '').includes('text/html')) {
      res.redirect(303, init.loginPath);
      return;
    }
    res.status(401).set('WWW-Authenticate', 'Bearer realm="sc2c"').json({ error: 'token required' });
  };
}

/**
 * The login form's POST: a right token sets the session cookie (HttpOnly, SameSite=Strict) and
 * goes to `/`; a wrong one shows the form again with 401.
 */
export function loginRoutes(
  app: {
    get: (path: string, h: (req: Request, res: Response) => void) => void;
    post: (path: string, ...h: ((req: Request, res: Response, next: NextFunction) => void)[]) => void;
  },
  init: TokenGateInit & {
    readonly title: string;
    readonly urlencoded: (req: Request, res: Response, next: NextFunction) => void;
  },
): void {
  const form = (message = ''): string =>
    `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(init.title)}: sign in</title></head><body><h1>${escapeHtml(init.title)}</h1>${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}<form method="post" action="${init.loginPath}"><label>Token <input type="password" name="token" autocomplete="current-password" autofocus></label> <button>Sign in</button></form></body></html>\n`;
  app.get(init.loginPath, (_req, res) => {
    res.type('html').send(form());
  });
  app.post(init.loginPath, init.urlencoded, (req, res) => {
    const given = typeof req.body?.token === 'string' ? req.body.token : '';
    if (!init.token || !sameSecret(given, init.token)) {
      res.status(401).type('html').send(form('wrong token'));
      return;
    }
    res.set(
      'Set-Cookie',
      `${init.cookie}=${sessionValue(init.cookie, init.token)}; HttpOnly; SameSite=Strict; Path=/`,
    );
    res.redirect(303, '/');
  });
}

/**
 * Refuses requests whose `Host` is not one of ours (DNS rebinding: a hostile page's name resolving
 * to 127.0.0.1 would otherwise drive a loopback console) with 421 Misdirected Request.
 */
export function hostGuard(allowed: () => ReadonlySet<string>) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (allowed().has((req.get('host') ?? '').toLowerCase())) {
      next();
      return;
    }
    res.status(421).type('text').send('this server answers to its own address only\n');
  };
}

export const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] ?? ch,
  );
