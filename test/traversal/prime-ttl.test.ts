/**
 * Issue 21: the priming TTL read from our NAT's counter: 2 directly behind the NAT, one more per
 * router between, nothing behind a NAT that allocates at random.
 */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { findPrimeTtl } from '../../src/traversal/prime-ttl.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles } from '../net/world.ts';
import { setup } from '../relay/call-world.ts';

const STUN = { address: '198.18.0.10', port: 3478 };

async function behind(profile: string, lanRouters: number) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 3 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const server = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  net.connect(server, internet, { latencyMs: 5 });
  const nat = net.addNat('nat', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: profiles.resolve(profile),
  });
  net.connect(nat, internet, { latencyMs: 5 });
  let upstream = nat as Parameters<typeof net.connect>[1];
  for (let i = 0; i < lanRouters; i++) {
    const router = net.addRouter(`lan${i}`, { addresses: [`10.0.${2 + i}.1`] });
    const link = net.connect(router, upstream, { latencyMs: 1 });
    upstream.addRoute('10.0.0.0/8', link);
    upstream = router;
  }
  const host = net.addHost('host', { addresses: ['10.0.9.2'] });
  net.connect(host, upstream, { latencyMs: 1 });
  await StunResponder.start(server, { primary: STUN, alternate: { address: '198.18.0.11', port: 3479 } });
  const delta = profiles.resolve(profile).allocation;
  return clock.run(
    findPrimeTtl(
      { network: host, clock },
      { server: STUN, delta: delta.type === 'sequential' ? delta.delta : 1, rtoMs: 100 },
    ),
  );
}

describe('priming TTL', () => {
  it('is 2 directly behind a sequential NAT: the NAT drops what it would take to 0', async () => {
    expect(await behind('symmetric-seq2', 0)).toMatchObject({ ttl: 2 });
  });

  it('is one more per router between us and the NAT', async () => {
    expect(await behind('symmetric-seq1', 1)).toMatchObject({ ttl: 3 });
    expect(await behind('symmetric-seq1+ips', 2)).toMatchObject({ ttl: 4 });
  });

  it('reads any NAT that hands out ports in sequence, a cone too (each try sends from a fresh port)', async () => {
    expect(await behind('port-restricted-cone', 0)).toMatchObject({ ttl: 2 });
  });

  it('cannot be read behind a NAT that allocates at random', async () => {
    const result = await behind('symmetric-random', 0);
    expect(result.ttl).toBeNull();
    expect(result).toMatchObject({ reason: expect.stringMatching(/moved our NAT's counter/) });
  });

  it('is read at start by a gateway whose mode is sc2c-ttl, and its primed call connects a PKS caller', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1', { mode: 'sc2c-ttl' });
    const caller = await s.gateway(s.alice, 'alice', false);
    expect(caller.primeTtl).toMatchObject({ ttl: 2 });
    const callee = await s.gateway(s.bob, 'bob', false);
    const outcome = await s.clock.run(caller.call('bob'));
    expect(outcome).toMatchObject({ ok: true, mode: 'sc2c-ttl' });
    caller.close();
    callee.close();
    s.close();
  });
});
