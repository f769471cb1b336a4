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
  pin?: boolean,
) =>
  runMatrixCell({
    window,
    pin,
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
        pin: true,
      });
    const predicted = await kept('symmetric-seq1', 'symmetric-seq2', 3);
    expect(predicted.successes).toBe(3);
    // Both sides predict in every trial. The caller pins its mapping (issue 19): its port is read
    // after the mapping opened, age 0. The callee's sample precedes the answer's round trip, the
    // sync and the go: at 40 ms RTT more than one RTT old, and not seconds.
    expect(predicted.predictionAgesMs).toHaveLength(6);
    const [callerAges, calleeAges] = [0, 1].map((side) =>
      predicted.predictionAgesMs!.filter((_, i) => i % 2 === side),
    );
    expect(callerAges).toEqual([0, 0, 0]);
    for (const age of calleeAges!) {
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
        // The paper's protocol (no pinning): the timed go is what keeps PKS and IPS safe, so the
        // first checks must leave both NATs together.
        const paper = await cell(calling, called, 'sc2c', 2, [10, 10], 0, undefined, false);
        // With pinning: the pinned side only answers, so skew is not the measure.
        const pinned = await cell(calling, called, 'sc2c', 2, [10, 10], 0, undefined, true);
        expect({
          calling,
          called,
          paper: [paper.successes, paper.failures],
          pinned: [pinned.successes, pinned.failures],
        }).toEqual({ calling, called, paper: [2, {}], pinned: [2, {}] });
        expect(paper.skewMsP95).toBeLessThanOrEqual(5);
      }
    }
  }, 240_000);

  it('C2C collapses exactly when the caller is PKS or the callee is IPS (paper Table 4)', async () => {
    for (const calling of MATRIX_PROFILES) {
      for (const called of MATRIX_PROFILES) {
        const result = await cell(calling, called, 'c2c', 1);
        const collapses = calling.endsWith('+pks') || called.endsWith('+ips');
        expect({ calling, called, ok: result.successes === 1 }).toEqual({ calling, called, ok: !collapses });
      }
    }
  }, 120_000);

  it('low-TTL priming (sc2c-ttl) connects PKS callers without a go, and fails wherever an IPS NAT is (issue 21)', async () => {
    // The primes expire past our own NAT: a PKS peer never sees an early packet. But the router
    // where they expire answers time-exceeded, and an IPS NAT closes the mapping it just opened.
    // One family, both ways (the 81 pairs are in docs/bench/ttl-2026-12-04: the same pattern).
    const family = ['symmetric-seq1', 'symmetric-seq1+pks', 'symmetric-seq1+ips', 'port-restricted-cone+pks'];
    for (const calling of family) {
      for (const called of family) {
        const result = await cell(calling, called, 'sc2c-ttl', 1);
        const fails = calling.endsWith('+ips') || called.endsWith('+ips');
        expect({ calling, called, ok: result.successes === 1 }).toEqual({ calling, called, ok: !fails });
      }
    }
  }, 120_000);

  it('over TCP (--transport tcp): SC2C connects every pair, C2C fails behind a PKS caller, priming beside IPS (issue 21)', async () => {
    // One family both ways; the 81 pairs at two delays are in docs/bench/tcp-2026-12-04 (the same pattern).
    const family = ['symmetric-seq2', 'symmetric-seq1+pks', 'symmetric-seq1+ips'];
    for (const calling of family) {
      for (const called of family) {
        const outcome = async (mode: TraversalMode) => {
          const result = await runMatrixCell({
            calling: { name: calling, behaviour: catalog.resolve(calling) },
            called: { name: called, behaviour: catalog.resolve(called) },
            mode,
            trials: 1,
            oneWayMs: [10, 10],
            backgroundPerSecond: 0,
            transport: 'tcp',
            seed: cellSeed(1, calling, called, mode),
          });
          return result.successes === 1;
        };
        expect({ calling, called, sc2c: await outcome('sc2c') }).toEqual({ calling, called, sc2c: true });
        // The callee's early SYN knocks a PKS caller's port; a reset does not trip IPS.
        expect({ calling, called, c2c: await outcome('c2c') }).toEqual({
          calling,
          called,
          c2c: !calling.endsWith('+pks'),
        });
        // A primed SYN's time-exceeded closes an IPS NAT's mapping, as for UDP.
        expect({ calling, called, ttl: await outcome('sc2c-ttl') }).toEqual({
          calling,
          called,
          ttl: !calling.endsWith('+ips') && !called.endsWith('+ips'),
        });
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
    const timed = await cell('symmetric-seq1+pks', 'symmetric-seq1+ips', 'sc2c', 3, [10, 150], 0, 1, false);
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
    // is observed (exact); the symmetric peer's is predicted (not pinned here), and background
    // sessions move it on.
    const unpinned = (window: number) =>
      runMatrixCell({
        window,
        pin: false,
        calling: { name: 'port-restricted-cone', behaviour: catalog.resolve('port-restricted-cone') },
        called: { name: 'symmetric-seq1', behaviour: catalog.resolve('symmetric-seq1') },
        mode: 'sc2c',
        trials: 20,
        oneWayMs: [10, 10],
        // 20/s: at 5/s the re-INVITEs' fresh predictions alone now recover every call.
        backgroundPerSecond: 20,
        seed: cellSeed(1, 'port-restricted-cone', 'symmetric-seq1', 'sc2c'),
      });
    const narrow = await unpinned(1);
    const wide = await unpinned(3);
    expect(narrow.successes).toBeLessThan(20);
    expect(wide.successes).toBeGreaterThan(narrow.successes);
  });

  it('pinning keeps a busy PKS caller and an IPS callee direct where the prediction alone fails', async () => {
    // Issue 19: 5 sessions/s behind each NAT, 10/150 ms uplinks, the same seeds with and without.
    // The caller (PKS, not IPS) pins its mapping with low-TTL rungs after the answer; the callee
    // checks the rungs that cover how far its own NAT moved.
    const run = (pin: boolean) =>
      runMatrixCell({
        pin,
        // Without the pin, the paper's prediction alone: no crossed ladders either.
        crossWindow: pin ? undefined : 1,
        calling: { name: 'symmetric-seq1+pks', behaviour: catalog.resolve('symmetric-seq1+pks') },
        called: { name: 'symmetric-seq1+ips', behaviour: catalog.resolve('symmetric-seq1+ips') },
        mode: 'sc2c',
        trials: 10,
        oneWayMs: [10, 150],
        backgroundPerSecond: 5,
        seed: 19,
        keepSetups: true,
      });
    const without = await run(false);
    const pinned = await run(true);
    expect(without.successes).toBeLessThan(5);
    expect(pinned.successes).toBe(10);
    // The caller's port was read after its mapping opened: age 0 in every trial.
    expect(pinned.predictionAgesMs!.filter((_, i) => i % 2 === 0)).toEqual(Array(10).fill(0));
  });

  it('tracking its own drift until the go keeps the unpinned side on the rungs at 20 sessions/s', async () => {
    // Issue 19: the IPS caller cannot pin, so the callee pins before answering; the caller's
    // counter moves from its INVITE's sample until the go, the callee's answer crossing a 150 ms
    // uplink twice. Checks from the prediction on (16 of them) often fall short; tracked ones land.
    const run = (drift: boolean) =>
      runMatrixCell({
        drift,
        calling: { name: 'symmetric-seq1+ips', behaviour: catalog.resolve('symmetric-seq1+ips') },
        called: { name: 'symmetric-seq2', behaviour: catalog.resolve('symmetric-seq2') },
        mode: 'sc2c',
        trials: 10,
        oneWayMs: [10, 150],
        backgroundPerSecond: 20,
        seed: 23,
      });
    const untracked = await run(false);
    const tracked = await run(true);
    expect(tracked.successes).toBeGreaterThanOrEqual(9);
    expect(untracked.successes).toBeLessThan(tracked.successes);
  });

  it('two IPS NATs cannot pin (the rungs draw ICMP time-exceeded): the prediction alone, as before', async () => {
    const result = await cell('symmetric-seq1+ips', 'symmetric-seq1+ips', 'sc2c', 3);
    expect(result.successes).toBe(3);
  });

  it('two busy IPS NATs meet on crossed ladders where one guess each misses', async () => {
    // Issue 19: 5 sessions/s behind each NAT, the same seeds with and without the ladders.
    const run = (crossWindow: number) =>
      runMatrixCell({
        crossWindow,
        calling: { name: 'symmetric-seq1+ips', behaviour: catalog.resolve('symmetric-seq1+ips') },
        called: { name: 'symmetric-seq2+ips', behaviour: catalog.resolve('symmetric-seq2+ips') },
        mode: 'sc2c',
        trials: 10,
        oneWayMs: [10, 10],
        backgroundPerSecond: 5,
        seed: 29,
      });
    const single = await run(1);
    const crossed = await run(16);
    expect(crossed.successes).toBe(10);
    expect(single.successes).toBeLessThan(crossed.successes);
  });

  it('a NAT that maps ports on request (+pcp, +natpmp) connects two random-port NATs; without asking, none', async () => {
    const run = (calling: string, called: string, portMapping: boolean) =>
      runMatrixCell({
        portMapping,
        calling: { name: calling, behaviour: catalog.resolve(calling) },
        called: { name: called, behaviour: catalog.resolve(called) },
        mode: 'sc2c',
        trials: 5,
        oneWayMs: [10, 10],
        backgroundPerSecond: 0,
        seed: 20,
      });
    for (const [calling, called] of [
      ['symmetric-random+pcp', 'symmetric-random'],
      ['symmetric-random', 'symmetric-random+natpmp'],
      ['symmetric-random+pcp', 'symmetric-random+natpmp'],
    ] as const) {
      const asked = await run(calling, called, true);
      const notAsked = await run(calling, called, false);
      expect({ calling, called, asked: asked.successes, notAsked: notAsked.successes }).toEqual({
        calling,
        called,
        asked: 5,
        notAsked: 0,
      });
    }
  });

  it('birthday punching connects a random-port symmetric NAT and a port-restricted cone, both ways', async () => {
    const run = (calling: string, called: string, birthday: boolean) =>
      runMatrixCell({
        birthday,
        calling: { name: calling, behaviour: catalog.resolve(calling) },
        called: { name: called, behaviour: catalog.resolve(called) },
        mode: 'sc2c',
        trials: 5,
        oneWayMs: [20, 20],
        backgroundPerSecond: 0,
        seed: 11,
      });
    for (const [calling, called] of [
      ['symmetric-random', 'port-restricted-cone'],
      ['port-restricted-cone+pks', 'symmetric-random'],
    ] as const) {
      const without = await run(calling, called, false);
      const withBirthday = await run(calling, called, true);
      expect({ calling, without: without.successes, with: withBirthday.successes }).toEqual({
        calling,
        without: 0,
        with: 5,
      });
      // The probe budget shows: hundreds of checks a call where the punch alone sends tens.
      expect(withBirthday.checksSent / 5).toBeGreaterThan(100);
      expect(withBirthday.checksSent / 5).toBeLessThanOrEqual(2048 + 400);
    }
  });

  it('birthday punching never probes from an IPS cone (the probes would draw ICMP that closes its mapping)', async () => {
    const result = await cell('symmetric-random', 'port-restricted-cone+ips', 'sc2c', 2);
    expect(result.successes).toBe(0);
    // Only the ordinary punch's checks: no 2048 probes.
    expect(result.checksSent / 2).toBeLessThan(400);
  });
});
