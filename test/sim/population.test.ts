import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parsePortMappingShare } from '../../src/cli/sim-population.ts';
import { loadPopulation } from '../../src/nat/population.ts';
import { natClass, planPopulation, summarizeMode } from '../../src/sim/population.ts';
import { BIN } from '../lab/support.ts';

const run = promisify(execFile);
const models = loadPopulation();

describe('sim population', () => {
  it('draws pairs from the 134 models and plans one job per class pair and mode, covering every pair once', () => {
    const { jobs } = planPopulation(models, 2000, ['sc2c', 'c2c'], 7);
    for (const mode of ['sc2c', 'c2c'] as const)
      expect(jobs.filter((j) => j.mode === mode).reduce((n, j) => n + j.trials, 0)).toBe(2000);
    const keys = jobs.map((j) => `${natClass(j.calling)}|${natClass(j.called)}|${j.mode}`);
    expect(new Set(keys).size).toBe(keys.length);
    // Port-restricted cone +1 is 57 of 134 models: about 18 % of callers and callees each.
    const prc = jobs
      .filter((j) => j.mode === 'sc2c' && natClass(j.calling) === 'port-restricted-cone/+1')
      .reduce((n, j) => n + j.trials, 0);
    expect(prc / 2000).toBeGreaterThan(0.36);
    expect(prc / 2000).toBeLessThan(0.49);
    expect(planPopulation(models, 2000, ['sc2c'], 7).jobs.length).toBe(jobs.length / 2);
  });

  it('gives NATs a port-mapping protocol with the asked shares, without changing which models were drawn', () => {
    const strip = (key: string) => key.replace(/\+(pcp|natpmp|upnp)/g, '');
    const plain = planPopulation(models, 4000, ['sc2c'], 7);
    const mapped = planPopulation(models, 4000, ['sc2c'], 7, { pcp: 0.3, natpmp: 0.2, upnp: 0.1 });
    const merged = (classPairs: Record<string, number>) => {
      const out: Record<string, number> = {};
      for (const [key, count] of Object.entries(classPairs)) out[strip(key)] = (out[strip(key)] ?? 0) + count;
      return out;
    };
    expect(merged(mapped.classPairs)).toEqual(plain.classPairs);
    const sides = mapped.jobs.flatMap((j) => Array(j.trials).fill([j.calling, j.called]).flat());
    const share = (p: string) => sides.filter((m) => m.portMapping === p).length / sides.length;
    expect(share('pcp')).toBeGreaterThan(0.27);
    expect(share('pcp')).toBeLessThan(0.33);
    expect(share('nat-pmp')).toBeGreaterThan(0.17);
    expect(share('nat-pmp')).toBeLessThan(0.23);
    expect(share('upnp')).toBeGreaterThan(0.08);
    expect(share('upnp')).toBeLessThan(0.12);
    expect(plain.jobs.every((j) => !j.calling.portMapping && !j.called.portMapping)).toBe(true);
  });

  it('--port-mapping-share takes pcp=X,natpmp=Y and refuses anything else', () => {
    expect(parsePortMappingShare('pcp=0.2,natpmp=0.1')).toEqual({ pcp: 0.2, natpmp: 0.1, upnp: 0 });
    expect(parsePortMappingShare('natpmp=1')).toEqual({ pcp: 0, natpmp: 1, upnp: 0 });
    expect(parsePortMappingShare('upnp=0.3')).toEqual({ pcp: 0, natpmp: 0, upnp: 0.3 });
    for (const bad of [
      '0.2',
      'pcp=',
      'pcp=2',
      'igd=0.1',
      'pcp=-1',
      'pcp=0.7,natpmp=0.6',
      'pcp=x',
      'upnp=0.5,pcp=0.6',
    ])
      expect(() => parsePortMappingShare(bad)).toThrow(/--port-mapping-share/);
  });

  it('models relay time from failures and late setups', () => {
    const summary = summarizeMode(
      'sc2c',
      [
        { successes: 2, trials: 3, setupsMs: [500, 3000], failures: { 'no direct path': 1 }, checksSent: 30 },
        { successes: 1, trials: 1, setupsMs: [200], failures: {}, checksSent: 6 },
      ],
      { callS: 10, budgetMs: 1000 },
    );
    expect(summary).toMatchObject({ pairs: 4, direct: 3, directRate: 0.75, relayShare: 0.25 });
    // One call relayed for 10 s, one for 2 s (confirmed at 3 s, budget 1 s), of 40 s of calls.
    expect(summary.relayBandwidthSaved).toBe(0.7);
    expect(summary.failures).toEqual({ 'no direct path': 1 });
    // 36 checks over 4 calls.
    expect(summary.checksPerCall).toBe(9);
  });

  it('sc2c sim population --json: real calls for every drawn pair; SC2C beats C2C and plain STUN', async () => {
    const { stdout } = await run(
      process.execPath,
      [BIN, 'sim', 'population', '--trials', '300', '--json', '-q', '--workers', '2'],
      { timeout: 120_000 },
    );
    const report = JSON.parse(stdout) as {
      config: { pairs: number; models: number; classes: number };
      modes: {
        mode: string;
        pairs: number;
        directRate: number;
        relayShare: number;
        relayBandwidthSaved: number;
        checksPerCall: number;
      }[];
      cells: { successes: number; trials: number; mode: string; calling: string; called: string }[];
    };
    expect(report.config).toMatchObject({ pairs: 300, models: 134, classes: 16 });
    const by = Object.fromEntries(report.modes.map((m) => [m.mode, m]));
    for (const m of report.modes) {
      expect(m.pairs).toBe(300);
      expect(m.directRate + m.relayShare).toBeCloseTo(1, 6);
    }
    expect(by.sc2c!.directRate).toBeGreaterThan(by.stun!.directRate);
    expect(by.stun!.directRate).toBeGreaterThan(by.c2c!.directRate);
    // SC2C fails only where a NAT allocates at random: there is no port to predict.
    for (const cell of report.cells.filter((c) => c.mode === 'sc2c' && c.successes < c.trials))
      expect(`${cell.calling} ${cell.called}`).toMatch(/random/);
    // Every call punched: the probe budget is reported beside the success rate.
    for (const m of report.modes) expect(m.checksPerCall).toBeGreaterThan(0);
  }, 130_000);

  it('--background: busy NATs, recorded in the report (issue 19 measures against it)', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        BIN,
        'sim',
        'population',
        '--trials',
        '60',
        '--modes',
        'sc2c',
        '--background',
        '5',
        '--json',
        '-q',
        '--workers',
        '2',
      ],
      { timeout: 120_000 },
    );
    const report = JSON.parse(stdout) as {
      config: { backgroundPerSecond: number };
      modes: { pairs: number; checksPerCall: number }[];
    };
    expect(report.config.backgroundPerSecond).toBe(5);
    expect(report.modes[0]!.pairs).toBe(60);
    expect(report.modes[0]!.checksPerCall).toBeGreaterThan(0);
  }, 130_000);
});
