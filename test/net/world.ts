/** A small reusable topology: alice behind NAT-A, bob behind NAT-B, a public server. */
import type { NatBehaviour } from '../../src/nat/behaviour.ts';
import { loadProfiles } from '../../src/nat/profiles.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import type { LinkInit } from '../../src/net/virtual/link.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import type { TraceSink } from '../../src/net/virtual/trace.ts';

export const profiles = loadProfiles();

export interface WorldInit {
  seed?: number;
  natA?: NatBehaviour;
  natB?: NatBehaviour;
  wan?: LinkInit;
  lan?: LinkInit;
  trace?: TraceSink;
}

export function world(init: WorldInit = {}) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: init.seed ?? 1, trace: init.trace });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const server = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  const natA = net.addNat('nat-a', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: init.natA ?? profiles.resolve('symmetric-seq1'),
    firstPort: 20_000,
  });
  const natB = net.addNat('nat-b', {
    publicAddress: '198.18.2.1',
    insideAddress: '10.0.2.1',
    behaviour: init.natB ?? profiles.resolve('symmetric-seq1'),
    firstPort: 30_000,
  });
  const alice = net.addHost('alice', { addresses: ['10.0.1.2'] });
  const alice2 = net.addHost('alice2', { addresses: ['10.0.1.3'] });
  const bob = net.addHost('bob', { addresses: ['10.0.2.2'] });
  const serverLink = net.connect(server, internet, init.wan ?? { latencyMs: 10 });
  const wanA = net.connect(natA, internet, init.wan ?? { latencyMs: 10 });
  const wanB = net.connect(natB, internet, init.wan ?? { latencyMs: 10 });
  net.connect(alice, natA, init.lan ?? { latencyMs: 1 });
  net.connect(alice2, natA, init.lan ?? { latencyMs: 1 });
  net.connect(bob, natB, init.lan ?? { latencyMs: 1 });
  return { clock, net, internet, server, natA, natB, alice, alice2, bob, serverLink, wanA, wanB };
}

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (data: Uint8Array): string => new TextDecoder().decode(data);
