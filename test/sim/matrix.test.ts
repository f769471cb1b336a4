import { describe, expect, it } from 'vitest';
import { MATRIX_PROFILES } from '../../src/cli/sim.ts';
import { loadProfiles } from '../../src/nat/profiles.ts';
import type { TraversalMode } from '../../src/protocol/sdp.ts';
import { cellSeed, runMatrixCell } from '../../src/sim/matrix.ts';

const catalog = loadProfiles();
const cell = (
  calling: string,
  called: string,
  mode: TraversalMode,
  trials: number,
  oneWayMs: [number, number] = [10, 10],
  backgroundPerSecond = 0,
  window?: number,
) =>
  runMatrixCell({
    window,
    calling: { name: calling, behaviour: catalog.resolve(calling) },
    called: { name: called, behaviour: catalog.resolve(called) },
    mode,
    trials,
    oneWayMs,
    backgroundPerSecond,
    seed: cellSeed(1, calling, called, mode),
  });

describe('sim matrix (real server and gateways on the virtual network)', () => {
  it('measures how old each predicted port is at the punch; observed ports have no age', async () => {
    const kept = (calling: string, called: string, trials: number) =>
      runMatrixCell({
        calling: { name: calling, behaviour: catalog.resolve(calling) },
        called: { name: called, behaviour: catalog.resolve(called) },
        mode: 'sc2c',
        trials,
        oneWayMs: [10, 10],
        backgroundPerSecond: 0,
        seed: 7,
        keepSetups: true,
      });
    const predicted = await kept('symmetric-seq1', 'symmetric-seq2', 3);
    expect(predicted.successes).toBe(3);
    // Both sides predict in every trial; the sample precedes the INVITE's round trips, the sync and
    // the go: at 40 ms RTT more than one RTT old, and not seconds.
    expect(predicted.predictionAgesMs).toHaveLength(6);
    for (const age of predicted.predictionAgesMs!) {
      expect(age).toBeGreaterThan(40);
      expect(age).toBeLessThan(2000);
    }
    expect(predicted.checksSent).toBeGreaterThan(0);
    const observed = await kept('port-restricted-cone', 'port-restricted-cone', 2);
    expect(observed.successes).toBe(2);
    expect(observed.predictionAgesMs).toEqual([]);
  });

  it('SC2C connects every pair of {port-restricted cone, symmetric +1, symmetric +2} x {plain, +pks, +ips}', async () => {
    for (const calling of MATRIX_PROFILES) {
      for (const called of MATRIX_PROFILES) {
        const result = await cell(calling, called, 'sc2c', 2);
        expect({ calling, called, successes: result.successes, failures: result.failures }).toEqual({
          calling,
          called,
          successes: 2,
          failures: {},
        });
        expect(result.skewMsP95).toBeLessThanOrEqual(5);
      }
    }
  }, 120_000);

  it('C2C collapses exactly when the caller is PKS or the callee is IPS (paper Table 4)', async () => {
    for (const calling of MATRIX_PROFILES) {
      for (const called of MATRIX_PROFILES) {
        const result = await cell(calling, called, 'c2c', 1);
        const collapses = calling.endsWith('+pks') || called.endsWith('+ips');
        expect({ calling, called, ok: result.successes === 1 }).toEqual({ calling, called, ok: !collapses });
      }
    }
  }, 120_000);

  it('every mode connects two sequential full cones (each side checks when its own port is a guess too)', async () => {
    const behaviour = {
      ...catalog.resolve('full-cone'),
      allocation: { type: 'sequential', delta: 1 },
    } as const;
    for (const mode of ['sc2c', 'c2c', 'stun'] as const) {
      const result = await runMatrixCell({
        calling: { name: 'full-cone/+1', behaviour },
        called: { name: 'full-cone/+1', behaviour },
        mode,
        trials: 2,
        oneWayMs: [10, 10],
        backgroundPerSecond: 0,
        seed: cellSeed(1, 'full-cone/+1', 'full-cone/+1', mode),
      });
      expect({ mode, successes: result.successes, failures: result.failures }).toEqual({
        mode,
        successes: 2,
        failures: {},
      });
    }
  });

  it('classic STUN hole punching works between cones only', async () => {
    expect((await cell('port-restricted-cone', 'port-restricted-cone', 'stun', 2)).successes).toBe(2);
    expect((await cell('port-restricted-cone', 'symmetric-seq1', 'stun', 2)).successes).toBe(0);
    expect((await cell('symmetric-seq2', 'symmetric-seq1', 'stun', 2)).successes).toBe(0);
  });

  it('with 10 ms and 150 ms one-way delays the timed go keeps skew under 5 ms; a naive go leaves 140 ms', async () => {
    const timed = await cell('symmetric-seq1+pks', 'symmetric-seq1+ips', 'sc2c', 3, [10, 150]);
    const naive = await cell('symmetric-seq1+pks', 'symmetric-seq1+ips', 'sc2c-naive', 3, [10, 150]);
    expect(timed.successes).toBe(3);
    expect(timed.skewMsP95).toBeLessThanOrEqual(5);
    expect(naive.skewMsP95).toBeGreaterThanOrEqual(135);
  });

  it('reports background traffic as what it is: ports that move between prediction and punch', async () => {
    const quiet = await cell('symmetric-seq1', 'symmetric-seq1', 'sc2c', 5);
    const busy = await cell('symmetric-seq1', 'symmetric-seq1', 'sc2c', 20, [10, 10], 5);
    expect(quiet.successes).toBe(5);
    expect(busy.trials).toBe(20);
    expect(busy.successes + Object.values(busy.failures).reduce((a, b) => a + b, 0)).toBe(20);
  });

  it('a candidate window behind a cone NAT recovers calls whose peer port moved on', async () => {
    // The same seeds, so the same background sessions: only the window differs. The cone's own port
    // is observed (exact); the symmetric peer's is predicted, and background sessions move it on.
    const narrow = await cell('port-restricted-cone', 'symmetric-seq1', 'sc2c', 20, [10, 10], 5, 1);
    const wide = await cell('port-restricted-cone', 'symmetric-seq1', 'sc2c', 20, [10, 10], 5, 3);
    expect(narrow.successes).toBeLessThan(20);
    expect(wide.successes).toBeGreaterThan(narrow.successes);
  });
});
