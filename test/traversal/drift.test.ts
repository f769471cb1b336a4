import { describe, expect, it } from 'vitest';
import { BackgroundTraffic } from '../../src/net/virtual/background.ts';
import { checkPlan, DriftTracker, estimateDrift, MIN_RATE_SPAN_MS } from '../../src/traversal/drift.ts';
import { checksTowardPinned, rungTargets } from '../../src/traversal/pin.ts';
import { freshPort } from '../../src/traversal/probe.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles, world } from '../net/world.ts';

const BASE = { atMs: 0, port: 1000 };

describe('drift: how far our counter moved since the prediction', () => {
  it('without samples knows nothing beyond the prediction', () => {
    expect(estimateDrift(BASE, [], 1, 500)).toEqual({
      atLeast: 0,
      expected: 0,
      ratePerSecond: null,
      samples: 0,
      answered: 0,
    });
    // Sent but unanswered: each still took a port.
    expect(estimateDrift(BASE, [{ sentAtMs: 100 }, { sentAtMs: 200 }], 1, 500)).toMatchObject({
      atLeast: 2,
      ratePerSecond: null,
    });
  });

  it('takes a floor from the newest answered sample and a rate from the ports beyond our own', () => {
    // Sample 0 read 1003: one of the 3 ports is ours, 2 are other sessions' in 100 ms (20/s).
    // Sample 1 left after it and took one more. 200 ms since sample 0 at 20/s: 4 more expected.
    const drift = estimateDrift(BASE, [{ sentAtMs: 100, port: 1003 }, { sentAtMs: 200 }], 1, 300);
    expect(drift.atLeast).toBe(4);
    expect(drift.ratePerSecond).toBeCloseTo(20);
    expect(drift.expected).toBeCloseTo(8);
    // On a +2 NAT the same in steps.
    const two = estimateDrift(BASE, [{ sentAtMs: 100, port: 1006 }, { sentAtMs: 200 }], 2, 300);
    expect([two.atLeast, two.expected]).toEqual([drift.atLeast, drift.expected]);
  });

  it('uses the newest answered sample in sending order, and ignores a wrapped or off-step reading', () => {
    const samples = [{ sentAtMs: 100, port: 1002 }, { sentAtMs: 200, port: 1005 }, { sentAtMs: 300 }];
    expect(estimateDrift(BASE, samples, 1, 300).atLeast).toBe(6);
    // The counter wrapped (a port below the base) or moved off our step: not a reading.
    expect(estimateDrift(BASE, [{ sentAtMs: 100, port: 900 }], 1, 300).ratePerSecond).toBeNull();
    expect(estimateDrift(BASE, [{ sentAtMs: 100, port: 1003 }], 2, 300).ratePerSecond).toBeNull();
  });

  it('gives no rate from a span too short to hold one', () => {
    const drift = estimateDrift(BASE, [{ sentAtMs: MIN_RATE_SPAN_MS - 1, port: 1003 }], 1, 300);
    expect(drift).toMatchObject({ atLeast: 3, expected: 3, ratePerSecond: null });
  });
});

describe('drift: where the checks toward a pinned peer go', () => {
  it('covers the rungs from the prediction on without an estimate, from the floor without a rate', () => {
    expect(checkPlan(31, undefined, 8)).toEqual({ first: 0, count: 16 });
    const floor = { atLeast: 5, expected: 5, ratePerSecond: null, samples: 5, answered: 0 };
    expect(checkPlan(31, floor, 8)).toEqual({ first: 5, count: 13 });
  });

  it('centres the checks on the expected drift, never below the floor, sliding down at the top', () => {
    const at = (atLeast: number, expected: number) => ({
      atLeast,
      expected,
      ratePerSecond: 20,
      samples: 4,
      answered: 2,
    });
    expect(checkPlan(31, at(8, 14), 8)).toEqual({ first: 11, count: 8 });
    expect(checkPlan(31, at(8, 9), 8)).toEqual({ first: 8, count: 8 });
    expect(checkPlan(31, at(8, 40), 8)).toEqual({ first: 16, count: 8 });
    expect(checkPlan(31, at(20, 25), 8)).toEqual({ first: 20, count: 6 });
    expect(checkPlan(31, at(50, 60), 8)).toEqual({ first: 30, count: 1 });
    expect(checkPlan(1, at(3, 3), 8)).toEqual({ first: 0, count: 1 });
  });

  it('lands exactly one check for every drift the plan covers, and none outside it', () => {
    // Our pin: 31 rungs, our NAT steps by 2; the peer's by 1, predicted at 4000.
    const window = 16;
    const rungs = rungTargets({ address: '198.18.2.1', port: 4000 }, 1, window);
    const rungFor = new Map(rungs.map((r, m) => [20000 + 2 * m, r.port]));
    for (const plan of [
      { first: 0, count: 8 },
      { first: 11, count: 8 },
      { first: 16, count: 8 },
    ]) {
      const checks = checksTowardPinned({ address: '198.18.1.1', port: 20000 }, 2, window, plan);
      expect(checks).toHaveLength(plan.count);
      for (let k = 0; k < 2 * window; k++) {
        // Check j leaves from the peer's port 4000 + k + j.
        const landing = checks.filter((c, j) => rungFor.get(c.port) === 4000 + k + j).length;
        expect(landing).toBe(k >= plan.first && k < plan.first + plan.count ? 1 : 0);
      }
    }
  });
});

describe('drift tracker on a busy NAT (virtual network)', () => {
  async function track(sessionsPerSecond: number, wanMs = 10) {
    const w = world({ natA: profiles.resolve('symmetric-seq2'), seed: 5, wan: { latencyMs: wanMs } });
    const responder = await StunResponder.start(w.server, {
      primary: { address: '198.18.0.10', port: 3478 },
      alternate: { address: '198.18.0.11', port: 3479 },
    });
    await w.server.bindUdp({ port: 7 });
    const stun = { server: { address: '198.18.0.10', port: 3478 }, rtoMs: 100 + 4 * wanMs };
    const components = { network: w.alice, clock: w.clock };
    const background =
      sessionsPerSecond > 0
        ? new BackgroundTraffic(
            { network: w.alice2, clock: w.clock, rng: w.net.rng('bg') },
            { sessionsPerSecond, target: { address: '198.18.0.10', port: 7 } },
          )
        : undefined;
    try {
      const sentAtMs = w.clock.now();
      const port = await w.clock.run(freshPort(components, stun));
      const tracker = new DriftTracker(components, {
        stunServer: stun.server,
        stunRtoMs: stun.rtoMs,
        base: { atMs: sentAtMs, port },
        step: 2,
      }).start();
      await w.clock.run(new Promise<void>((resolve) => w.clock.setTimeout(resolve, 1000)));
      const estimate = tracker.stop();
      // The truth: the next sample's port is one step past where the counter stood.
      const next = await w.clock.run(freshPort(components, stun));
      return { estimate, truth: (next - port) / 2 - 1, again: tracker.stop() };
    } finally {
      background?.stop();
      responder.close();
    }
  }

  it('on a quiet NAT counts exactly its own samples', async () => {
    const { estimate, truth, again } = await track(0);
    expect(estimate.samples).toBe(10);
    expect(estimate.ratePerSecond).toBe(0);
    expect(estimate.atLeast).toBe(truth);
    expect(estimate.expected).toBe(truth);
    expect(again).toEqual(estimate); // stop() is idempotent
  });

  it('at 20 sessions/s stays under the truth with its floor and near it with its rate', async () => {
    const { estimate, truth } = await track(20);
    expect(estimate.answered).toBeGreaterThan(5);
    expect(estimate.ratePerSecond).toBeGreaterThan(5);
    expect(estimate.atLeast).toBeLessThanOrEqual(truth);
    expect(Math.abs(estimate.expected - truth)).toBeLessThanOrEqual(4);
  });

  it('behind a slow uplink the floor lags by the answers in flight; the rate makes up most of it', async () => {
    // 75 ms each way on every WAN link: a STUN answer takes 300 ms, three samples are always in flight.
    const { estimate, truth } = await track(20, 75);
    expect(estimate.atLeast).toBeLessThan(truth - 3);
    expect(Math.abs(estimate.expected - truth)).toBeLessThan(truth - estimate.atLeast);
  });
});
