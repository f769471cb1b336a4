import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/net/clock.ts';
import type { BindInit, Network, UdpSocket } from '../../src/net/types.ts';
import { FreshPortNetwork } from '../../src/traversal/fresh-ports.ts';
import { world } from '../net/world.ts';

describe('FreshPortNetwork', () => {
  it('never hands out a port used within the hold time, even when the stack offers it', async () => {
    const w = world();
    // A stack that always offers the lowest free port, so reuse is certain without the guard.
    let next = 40_000;
    const stubborn: Network = {
      bindUdp: (init: BindInit = {}) => w.alice.bindUdp({ ...init, port: init.port ?? next }),
      connect: (to, init) => w.alice.connect(to, init),
      listen: (init) => w.alice.listen(init),
    };
    const clock = new VirtualClock();
    const guarded = new FreshPortNetwork(
      {
        ...stubborn,
        bindUdp: async (init?: BindInit): Promise<UdpSocket> => {
          const socket = await stubborn.bindUdp(init);
          next++;
          return socket;
        },
      },
      clock,
      180_000,
    );
    const first = await guarded.bindUdp();
    first.close();
    next = 40_000;
    const second = await guarded.bindUdp();
    expect(second.local.port).not.toBe(first.local.port);
    second.close();
    await clock.advance(180_000);
    next = 40_000;
    const later = await guarded.bindUdp();
    expect(later.local.port).toBe(first.local.port);
    expect(w.alice.openHandles()).toBe(1);
  });
});
