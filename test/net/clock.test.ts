import { describe, expect, it } from 'vitest';
import { sleep, VirtualClock } from '../../src/net/clock.ts';

describe('VirtualClock', () => {
  it('fires timers in time order, ties in the order they were set, and skips cleared ones', async () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('c@20'), 20);
    clock.setTimeout(() => fired.push('never'), 15).clear();
    await clock.advance(19);
    expect(fired).toEqual(['a@10']);
    expect(clock.now()).toBe(19);
    await clock.advance(1);
    expect(fired).toEqual(['a@10', 'b@20', 'c@20']);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('runs promise continuations between timers, like the real event loop', async () => {
    const clock = new VirtualClock();
    const steps: string[] = [];
    const task = (async () => {
      await sleep(clock, 10);
      steps.push(`woke@${clock.now()}`);
      await sleep(clock, 5);
      steps.push(`woke@${clock.now()}`);
      return 'done';
    })();
    expect(await clock.run(task)).toBe('done');
    expect(steps).toEqual(['woke@10', 'woke@15']);
  });

  it('run() rejects when the work does not finish within maxMs of virtual time', async () => {
    const clock = new VirtualClock();
    await expect(clock.run(sleep(clock, 1000), 999)).rejects.toThrow(/did not finish/);
  });

  it('sleep rejects with the abort reason and clears its timer', async () => {
    const clock = new VirtualClock();
    const controller = new AbortController();
    const slept = sleep(clock, 1000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(slept).rejects.toThrow('stop');
    expect(clock.pendingTimers()).toBe(0);
  });

  it('a throwing timer does not stop the clock', async () => {
    const clock = new VirtualClock();
    const errors: unknown[] = [];
    clock.onTimerError = (e) => errors.push(e);
    let after = false;
    clock.setTimeout(() => {
      throw new Error('boom');
    }, 1);
    clock.setTimeout(() => {
      after = true;
    }, 2);
    await clock.advance(5);
    expect(errors).toHaveLength(1);
    expect(after).toBe(true);
  });
});
