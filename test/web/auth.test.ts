/**
 * Issue 22's HTTP faces refuse what they must: the admin page and API without the token, a wrong
 * token at the sign-in, a foreign Host, and values from the wire that would be markup. The console
 * off loopback without a token does not start.
 */
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { adminApp, adminPage } from '../../src/web/admin.ts';
import { scratch } from '../cli/processes.ts';

const TOKEN = 'admin-token-for-auth-tests';
const views = {
  health: () => ({ sip: true }),
  registrations: () => [
    {
      user: 'cam1',
      contact: '<sip:cam1@10.0.0.1>',
      expiresInS: 60,
      remote: { address: '198.18.1.1', port: 4000 },
      natClass: 'endpoint-independent/endpoint-independent/preserve/no-ips',
      rttMs: 12.5,
      lastSeenAgoS: 3,
    },
  ],
  calls: () => [
    {
      callId: '<script>alert("x")</script>@evil',
      caller: 'viewer',
      callee: 'cam1',
      state: 'confirmed',
      ageS: 4,
      route: 'direct' as const,
      transport: 'udp' as const,
      directBytes: 2_000_000,
      relayBytes: 0,
      statusAgoS: 1,
    },
  ],
  allocations: () => [],
};

const app = adminApp(TOKEN, new Registry(), views);
const server = app.listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
afterAll(() => {
  server.close();
});

describe('the admin page (issue 22)', () => {
  it('answers /healthz openly, the API with 401 and the page with the sign-in form without the token', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/calls`)).status).toBe(401);
    const page = await fetch(`${base}/`, { headers: { Accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/login');
  });

  it('signs in with the right token only, and the session cookie then opens the page', async () => {
    const post = (token: string) =>
      fetch(`${base}/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
        redirect: 'manual',
      });
    const wrong = await post('not-the-token');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    const right = await post(TOKEN);
    expect(right.status).toBe(303);
    const cookie = right.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    // The cookie is derived from the token, never the token itself.
    expect(cookie).not.toContain(TOKEN);
    const page = await fetch(`${base}/`, { headers: { Cookie: cookie.split(';')[0]! } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('endpoint-independent/endpoint-independent/preserve/no-ips');
    expect(html).toContain('12.5 ms');
    expect(html).toContain('2.00 MB');
    // The bearer token works for the API as before.
    expect((await fetch(`${base}/calls`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(
      200,
    );
  });

  it('escapes every value it shows: a Call-ID from the wire cannot become markup', () => {
    const html = adminPage(views);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;@evil');
  });
});

describe('sc2c console refuses to start unsafely', () => {
  const { sc2c } = scratch('sc2c-console-auth-');
  it('off loopback without a token, with a short token, or on a bad address (exit 2, and why)', async () => {
    for (const [args, message] of [
      [['--listen', '0.0.0.0'], /without a token/],
      [['--token', 'short'], /at least 16 characters/],
      [['--listen', 'example.com'], /IPv4 address or localhost/],
    ] as const) {
      const run = sc2c(['console', ...args, '--config', 'config/gateway.yaml']);
      expect((await run.exited).code, args.join(' ')).toBe(2);
      expect(run.err()).toMatch(message);
    }
  }, 30_000);
});
