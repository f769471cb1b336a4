import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { ExtendedReport } from '../../src/cli/sim-extended.ts';
import { loadProfiles } from '../../src/nat/profiles.ts';
import {
  extendedBehaviour,
  extendedNats,
  parsePath,
  planExtended,
  summarizeExtended,
} from '../../src/sim/extended.ts';
import type { MatrixCell } from '../../src/sim/matrix.ts';
import { BIN } from '../lab/support.ts';

const run = promisify(execFile);
const catalog = loadProfiles();

describe('sim extended (the crossed matrix)', () => {
  it('crosses mapping x allocation x sensitivity for both sides, x paths x loads x modes', () => {
    const nats = extendedNats();
    expect(nats).toHaveLength(36);
    expect(nats.map((n) => n.name)).toContain('restricted-cone/+2/ips');
    const { keys, jobs } = planExtended(
      {
        nats,
        paths: ['40', '10/150'].map(parsePath),
        backgrounds: [0, 5],
        modes: ['sc2c', 'c2c', 'stun'],
        trials: 10,
        seed: 1,
      },
      catalog,
    );
    expect(jobs).toHaveLength(36 * 36 * 2 * 2 * 3);
    expect(keys).toHaveLength(jobs.length);
    expect(new Set(jobs.map((j) => j.seed)).size).toBeGreaterThan(jobs.length * 0.99);
    expect(parsePath('10/150').oneWayMs).toEqual([10, 150]);
    expect(parsePath('40').oneWayMs).toEqual([10, 10]);
    expect(() => parsePath('fast')).toThrow(/RTT in ms/);
  });

  it('takes the mapping from the shipped profile and replaces only the allocation', () => {
    const [nat] = extendedNats(['symmetric'], ['+2'], ['pks']);
    const behaviour = extendedBehaviour(nat!, catalog);
    expect(behaviour).toMatchObject({
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      allocation: { type: 'sequential', delta: 2 },
      pks: true,
      ips: false,
    });
    const [cone] = extendedNats(['full-cone'], ['random'], ['none']);
    expect(extendedBehaviour(cone!, catalog)).toMatchObject({
      mapping: 'endpoint-independent',
      filtering: 'endpoint-independent',
      allocation: { type: 'random' },
    });
  });

  it('pools every trial of a group, not the cells averaged', () => {
    const nats = extendedNats(['full-cone'], ['+1', 'random'], ['none']);
    const { keys } = planExtended(
      { nats, paths: [parsePath('40')], backgrounds: [0], modes: ['sc2c'], trials: 2, seed: 1 },
      catalog,
    );
    const cell = (successes: number, setupsMs: number[]): MatrixCell => ({
      calling: '',
      called: '',
      mode: 'sc2c',
      successes,
      trials: 2,
      setupMsP50: null,
      setupMsP95: null,
      skewMsP95: null,
      failures: successes < 2 ? { 'no direct path': 2 - successes } : {},
      checksSent: 0,
      setupsMs,
    });
    const { cells, groups } = summarizeExtended(keys, [
      cell(2, [100, 200]),
      cell(1, [300]),
      cell(0, []),
      cell(2, [400, 500]),
    ]);
    expect(cells[2]).toMatchObject({ successes: 0, setupMsP50: null });
    const all = groups.find((g) => g.dimension === 'all')!;
    expect(all).toMatchObject({ successes: 5, trials: 8, rate: 0.625 });
    expect(all.setupMsP50).toBe(300);
    const byAllocation = groups.filter((g) => g.dimension === 'allocation');
    expect(byAllocation.map((g) => g.value).sort()).toEqual([
      '+1 -> +1',
      '+1 -> random',
      'random -> +1',
      'random -> random',
    ]);
  });

  it('sc2c sim extended --json: real calls; the outcomes the NAT types allow, and no others', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        BIN,
        'sim',
        'extended',
        '--trials',
        '3',
        '--mappings',
        'full-cone,port-restricted-cone,symmetric',
        '--allocations',
        '+1,random',
        '--sensitivities',
        'none,ips',
        '--paths',
        '40,10/150',
        '--background',
        '0,5',
        '--modes',
        'sc2c,stun',
        '--workers',
        '2',
        '--json',
        '-q',
      ],
      { timeout: 120_000 },
    );
    const report = JSON.parse(stdout) as ExtendedReport;
    expect(report.cells).toHaveLength(12 * 12 * 2 * 2 * 2);
    const ok = (calling: string, called: string, mode: string, path = '40', background = 0): number => {
      const c = report.cells.find(
        (x) =>
          x.calling === calling &&
          x.called === called &&
          x.mode === mode &&
          x.path === path &&
          x.background === background,
      )!;
      return c.successes / c.trials;
    };
    // A cone's own mapping is observed, so other hosts' sessions cannot move it: still direct.
    expect(ok('port-restricted-cone/+1', 'port-restricted-cone/+1', 'sc2c', '10/150', 5)).toBe(1);
    // A full cone answers the random-port peer's checks and checks it back (peer-reflexive).
    expect(ok('full-cone/random', 'symmetric/random', 'sc2c')).toBe(1);
    expect(ok('symmetric/random', 'full-cone/+1', 'stun')).toBe(1);
    // Even an IPS full cone: it checks no guessed port (whose ICMP error would close its mapping).
    expect(ok('full-cone/+1/ips', 'symmetric/random', 'sc2c')).toBe(1);
    // A port-restricted cone reaches a port nobody can predict only by birthday punching (issue 19);
    // not from an IPS cone (its probes draw ICMP), nor random from random.
    expect(ok('port-restricted-cone/+1', 'symmetric/random', 'sc2c')).toBe(1);
    expect(ok('port-restricted-cone/+1/ips', 'symmetric/random', 'sc2c')).toBe(0);
    expect(ok('symmetric/random', 'symmetric/random', 'sc2c')).toBe(0);
    // SC2C predicts sequential symmetric NATs; plain STUN cannot.
    expect(ok('symmetric/+1', 'symmetric/+1', 'sc2c')).toBe(1);
    expect(ok('symmetric/+1', 'symmetric/+1', 'stun')).toBe(0);
    const all = report.groups.filter((g) => g.dimension === 'all');
    expect(all.find((g) => g.mode === 'sc2c')!.rate).toBeGreaterThan(
      all.find((g) => g.mode === 'stun')!.rate,
    );
    for (const cell of report.cells)
      if (cell.successes > 0) expect(cell.setupMsP95!).toBeGreaterThanOrEqual(cell.setupMsP50!);
  }, 150_000);

  it('refuses an unknown mapping or a bad path with the allowed values', async () => {
    const bad = await run(process.execPath, [BIN, 'sim', 'extended', '--mappings', 'cone'], {
      timeout: 30_000,
    }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toMatch(
      /unknown value 'cone' in --mappings. Allowed: full-cone/,
    );
    const path = await run(process.execPath, [BIN, 'sim', 'extended', '--paths', '40,slow'], {
      timeout: 30_000,
    }).catch((e: { code: number; stderr: string }) => e);
    expect((path as { stderr: string }).stderr).toMatch(/--paths: .*'slow'/);
  });
});
