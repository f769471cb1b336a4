import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/net/clock.ts';
import { RecentBindings } from '../../src/traversal/recent-bindings.ts';

const FROM = { address: '198.18.1.1', port: 40_000 };

describe('recent STUN Bindings (the server reading pins)', () => {
  it('keeps at most max entries, the oldest leaving first, each for ttlMs', async () => {
    const clock = new VirtualClock();
    const bindings = new RecentBindings(clock, { max: 3, ttlMs: 1000 });
    for (const id of ['a', 'b', 'c', 'd']) bindings.record(id, FROM);
    expect(bindings.size).toBe(3);
    expect(bindings.lookup('a')).toBeUndefined();
    expect(bindings.lookup('d')).toEqual(FROM);
    await clock.advance(1001);
    expect(bindings.lookup('d')).toBeUndefined();
  });

  it('wakes a waiter when its Binding comes, and gives up after the timeout', async () => {
    const clock = new VirtualClock();
    const bindings = new RecentBindings(clock);
    const early = bindings.wait('x', 250);
    clock.setTimeout(() => bindings.record('x', FROM), 10);
    expect(await clock.run(early)).toEqual(FROM);
    expect(await clock.run(bindings.wait('never', 250))).toBeUndefined();
    expect(clock.pendingTimers()).toBe(0);
  });

  it('bounds the waiters: one per ID, maxWaiters in all', async () => {
    const clock = new VirtualClock();
    const bindings = new RecentBindings(clock, { maxWaiters: 2 });
    const first = bindings.wait('p', 100);
    expect(await bindings.wait('p', 100)).toBeUndefined(); // a second wait on the same ID
    const second = bindings.wait('q', 100);
    expect(await bindings.wait('r', 100)).toBeUndefined(); // over the bound
    await clock.advance(100);
    expect([await first, await second]).toEqual([undefined, undefined]);
  });
});
