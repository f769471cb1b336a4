/**
 * `sc2c server` as a real process on loopback (issue 16): placeholder secrets refused outside the
 * lab, an admin API on a non-loopback address refused without a token, and with a token every
 * route but /healthz checked.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';

const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'sc2c-admin-'));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function config(name: string, users: string, admin: string): Promise<string> {
  const [sip, stun] = [await freePort(), await freePort()];
  const path = join(dir, name);
  writeFileSync(
    path,
    `sip:
  listen: { address: 127.0.0.1, port: ${sip} }
  realm: sc2c.test
  users: ${users}
stun:
  primary: { address: 127.0.0.1, port: ${stun} }
  alternate: { address: 127.0.0.2, port: ${stun + 1} }
${admin}
`,
  );
  return path;
}

/** Runs `sc2c server`; resolves with its exit (code and stderr) or, once it serves, the child. */
function server(path: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, 'server', '--config', path], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise<{ code: number | null; stderr: string; child: ChildProcess }>((resolve) => {
    child.on('exit', (code) => resolve({ code, stderr, child }));
    child.stderr.on('data', () => {
      if (/sc2c server: SIP on/.test(stderr)) resolve({ code: null, stderr, child });
    });
  });
}

describe('sc2c server outside the lab', () => {
  it('refuses the shipped placeholder passwords, naming them, without a stack trace', async () => {
    const path = await config('placeholder.yaml', '{ alice: alice-lab-secret }', '');
    const { code, stderr } = await server(path);
    expect(code).toBe(2);
    expect(stderr).toMatch(/placeholder for the password of user 'alice'/);
    expect(stderr).not.toMatch(/at .*\.ts:\d+/);
  }, 30_000);

  it('refuses an admin API on a non-loopback address without a token', async () => {
    const port = await freePort();
    const path = await config(
      'open-admin.yaml',
      '{ alice: a-real-password-1 }',
      `admin:\n  listen: { address: 0.0.0.0, port: ${port} }`,
    );
    const { code, stderr } = await server(path);
    expect(code).toBe(2);
    expect(stderr).toMatch(/admin API would listen on 0\.0\.0\.0 without a token/);
  }, 30_000);

  it('with a token: /healthz open and reporting what listens, every other route 401 without it', async () => {
    const port = await freePort();
    const path = await config(
      'admin.yaml',
      '{ alice: a-real-password-1 }',
      `admin:\n  listen: { address: 127.0.0.1, port: ${port} }`,
    );
    const token = 'a-token-long-enough-for-the-test';
    const { code, child } = await server(path, { SC2C_ADMIN_TOKEN: token });
    expect(code).toBeNull();
    const base = `http://127.0.0.1:${port}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true, sip: true, stun: true, turn: 'off', store: 'off' });
    for (const route of ['/registrations', '/calls', '/allocations', '/metrics']) {
      expect((await fetch(`${base}${route}`)).status, route).toBe(401);
      const wrong = await fetch(`${base}${route}`, { headers: { authorization: 'Bearer nope' } });
      expect(wrong.status, route).toBe(401);
      const right = await fetch(`${base}${route}`, { headers: { authorization: `Bearer ${token}` } });
      expect(right.status, route).toBe(200);
    }
    const metrics = await (
      await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })
    ).text();
    expect(metrics).toMatch(/sc2c_sip_auth_throttled_total 0/);
    expect(metrics).toMatch(/sc2c_stun_rate_limited_total 0/);
    child.kill('SIGTERM');
  }, 30_000);

  it('takes at most sip.maxConnections signaling connections (issue 24: the benchmark raises it)', async () => {
    const path = await config('limited.yaml', '{ alice: a-real-password-1 }', '');
    writeFileSync(
      path,
      readFileSync(path, 'utf8').replace('  realm: sc2c.test', '  realm: sc2c.test\n  maxConnections: 2'),
    );
    const { code, stderr, child } = await server(path);
    expect(code, stderr).toBeNull();
    const port = Number(
      /listen: \{ address: 127\.0\.0\.1, port: (\d+) \}/.exec(readFileSync(path, 'utf8'))![1],
    );
    // Open three: one is closed on accept, two stay.
    const sockets = [0, 1, 2].map(() => createConnection({ host: '127.0.0.1', port }));
    const connected = sockets.map((socket) => new Promise((r) => socket.once('connect', r)));
    const closed = sockets.map(
      (socket) =>
        new Promise<boolean>((resolve) => {
          socket.once('close', () => resolve(true));
          socket.once('error', () => {});
          setTimeout(() => resolve(false), 1500);
        }),
    );
    await Promise.all(connected);
    const outcome = await Promise.all(closed);
    expect(outcome.filter(Boolean)).toHaveLength(1);
    for (const socket of sockets) socket.destroy();
    child.kill('SIGTERM');
  }, 30_000);
});
