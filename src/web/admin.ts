/**
 * The server's admin HTTP (issue 16's API, issue 22's page): `/healthz` open; `/registrations`,
 * `/calls`, `/allocations` (JSON) and `/metrics` (Prometheus) behind the bearer token when one is
 * set; and `/`, a read-only HTML view of the same three tables for a person, which a login form
 * (`/login`) opens with the same token through a session cookie. The page is rendered on the
 * server, every value escaped, and refreshes itself every 5 s: no script runs in it.
 */
import express from 'express';
import type { Registry } from 'prom-client';
import type { CallView, RegistrationView } from '../signaling/server.ts';
import { escapeHtml, loginRoutes, tokenGate } from './auth.ts';

export interface AdminViews {
  readonly health: () => Record<string, boolean | string>;
  readonly registrations: () => readonly RegistrationView[];
  readonly calls: () => readonly CallView[];
  readonly allocations: () => readonly {
    readonly user: string;
    readonly relayed: string;
    readonly client: string;
    readonly bytes: number;
    readonly expiresInS: number;
  }[];
}

const COOKIE = 'sc2c_admin';

export function adminApp(token: string | undefined, registry: Registry, views: AdminViews): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    const parts = views.health();
    const ok = Object.values(parts).every((v) => v !== false);
    res.status(ok ? 200 : 503).json({ ok, ...parts });
  });
  const gate = { token, cookie: COOKIE, loginPath: '/login', open: ['/healthz'] };
  if (token)
    loginRoutes(app, {
      ...gate,
      title: 'sc2c server',
      urlencoded: express.urlencoded({ extended: false, limit: '2kb' }),
    });
  app.use(tokenGate(gate));
  app.get('/registrations', (_req, res) => {
    res.json(views.registrations());
  });
  app.get('/calls', (_req, res) => {
    res.json(views.calls());
  });
  app.get('/allocations', (_req, res) => {
    res.json(views.allocations());
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.get('/', (_req, res) => {
    res
      .type('html')
      .set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'")
      .send(adminPage(views));
  });
  return app;
}

const cell = (value: unknown): string =>
  `<td>${value === null || value === undefined ? '–' : escapeHtml(typeof value === 'object' ? JSON.stringify(value) : String(value))}</td>`;

function table(id: string, caption: string, headings: string[], rows: unknown[][]): string {
  const head = headings.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.length
    ? rows.map((row) => `<tr>${row.map(cell).join('')}</tr>`).join('\n')
    : `<tr><td colspan="${headings.length}">none</td></tr>`;
  return `<table id="${id}"><caption>${escapeHtml(caption)} (${rows.length})</caption><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const mb = (bytes: number | null): string | null =>
  bytes === null ? null : `${(bytes / 1e6).toFixed(2)} MB`;

/** The admin page: registrations, live calls and relay allocations as they are now. */
export function adminPage(views: AdminViews): string {
  const health = views.health();
  const registrations = views
    .registrations()
    .map((r) => [
      r.user,
      `${r.remote.address}:${r.remote.port}`,
      r.natClass,
      r.rttMs === null ? null : `${r.rttMs} ms`,
      r.lastSeenAgoS === null ? null : `${r.lastSeenAgoS} s ago`,
      `${r.expiresInS} s`,
    ]);
  const calls = views
    .calls()
    .map((c) => [
      c.callId,
      c.caller,
      c.callee,
      c.state,
      c.route === null ? null : c.route === 'direct' && c.transport === 'tcp' ? 'direct (TCP)' : c.route,
      mb(c.directBytes),
      mb(c.relayBytes),
      `${c.ageS} s`,
    ]);
  const allocations = views
    .allocations()
    .map((a) => [a.user, a.relayed, a.client, mb(a.bytes), `${a.expiresInS} s`]);
  const status = Object.entries(health)
    .map(([k, v]) => `${escapeHtml(k)}: ${escapeHtml(String(v))}`)
    .join(' · ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>sc2c server</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0;min-width:60%}
caption{text-align:left;font-weight:600;padding:.3em 0}th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
th{background:#f4f4f4}</style></head><body>
<h1>sc2c server</h1><p id="health">${status}</p>
${table('registrations', 'Registrations', ['user', 'from', 'NAT class', 'RTT', 'last seen', 'expires in'], registrations)}
${table('calls', 'Live calls', ['call', 'caller', 'callee', 'state', 'route', 'direct', 'relayed', 'age'], calls)}
${table('allocations', 'Relay allocations', ['user', 'relayed', 'client', 'bytes', 'expires in'], allocations)}
<p>Read-only; refreshes every 5 s. JSON: /registrations, /calls, /allocations; Prometheus: /metrics.</p>
</body></html>
`;
}
