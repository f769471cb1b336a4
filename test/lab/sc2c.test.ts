import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runLabCalls } from '../../src/lab/calls.ts';
import { labUnavailable } from './support.ts';

const run = promisify(execFile);
const unavailable = await labUnavailable();

describe.skipIf(unavailable)('SC2C with real processes in the kernel lab', () => {
  it('a PKS caller reaches an IPS callee directly with SC2C, and not with C2C; the admin API saw it', async () => {
    let metrics = '';
    let registrations: { user: string }[] = [];
    let health: unknown;
    const runs = await runLabCalls({
      natA: 'symmetric-seq1+pks',
      natB: 'symmetric-seq1+ips',
      rttMs: 40,
      modes: ['sc2c', 'c2c'],
      callsPerMode: 3,
      name: `sc${process.pid % 10_000}`,
      inspect: async (hosts) => {
        // The admin API listens on 127.0.0.1 inside the server's namespace.
        const admin = async (path: string): Promise<string> =>
          (await run('ip', ['netns', 'exec', hosts.server!, 'curl', '-s', `http://127.0.0.1:8080${path}`]))
            .stdout;
        health = JSON.parse(await admin('/healthz'));
        registrations = JSON.parse(await admin('/registrations'));
        metrics = await admin('/metrics');
      },
    });
    expect(runs.sc2c!.map((o) => o.ok)).toEqual([true, true, true]);
    // The PKS caller (not IPS) pins its mapping before the punch (issue 19).
    expect(runs.sc2c![0]!.local!.portSource).toBe('pinned');
    expect(runs.sc2c![0]!.pair!.remote.address).toBe('198.18.2.1');
    // The paper's C2C collapses here; a lucky race can let one through, so count the failures.
    const c2cFailures = runs.c2c!.filter((o) => !o.ok);
    expect(c2cFailures.length).toBeGreaterThanOrEqual(2);
    for (const o of c2cFailures)
      expect(o.reason).toMatch(/^no direct path: no answer from 198\.18\.2\.1:\d+/);
    expect(health).toEqual({ ok: true, sip: true, stun: true, turn: true, store: 'off' });
    expect(registrations.map((r) => r.user)).toContain('bob');
    // At least one sync per SC2C call and one INVITE per call; a retried SC2C call adds a re-INVITE.
    const metric = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1]);
    expect(metric('sc2c_syncs_total')).toBeGreaterThanOrEqual(3);
    expect(metric('sc2c_sip_invites_total')).toBeGreaterThanOrEqual(6);
  }, 180_000);
});
