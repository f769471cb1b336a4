import type { NatBehaviour } from '../../src/nat/behaviour.ts';
import { type Flow, Nat } from '../../src/nat/nat.ts';
import { createRng } from '../../src/util/rng.ts';

export const PUBLIC = '198.18.1.1';

export function behaviour(overrides: Partial<NatBehaviour> = {}): NatBehaviour {
  return {
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    allocation: { type: 'sequential', delta: 1 },
    portRange: { min: 1024, max: 65535 },
    mappingLifetimeMs: 120_000,
    tcpMappingLifetimeMs: 7_440_000,
    refreshOnInbound: false,
    hairpin: true,
    unsolicitedReply: 'icmp-port-unreachable',
    unsolicitedTcpReply: 'rst',
    tcpCounter: 'shared',
    pks: false,
    pksBlockMs: 60_000,
    ips: false,
    ipsBurnMs: 60_000,
    ...overrides,
  };
}

export function nat(overrides: Partial<NatBehaviour> = {}, firstPort = 20_000, seed = 1): Nat {
  const rng = createRng(seed);
  return new Nat({
    behaviour: behaviour(overrides),
    publicAddress: PUBLIC,
    random: () => rng.next(),
    firstPort,
  });
}

export function udp(src: string, dst: string): Flow {
  const [sa, sp] = src.split(':');
  const [da, dp] = dst.split(':');
  return { proto: 'udp', src: { address: sa!, port: Number(sp) }, dst: { address: da!, port: Number(dp) } };
}

/** Sends one outbound packet and returns the public port it left from (throws on drop). */
export function out(n: Nat, src: string, dst: string, nowMs = 0): number {
  const result = n.outbound(udp(src, dst), nowMs);
  if (result.action !== 'forward') throw new Error(`outbound dropped: ${result.reason}`);
  return result.src.port;
}

/** Sends one inbound packet from `src` to our public `port`. */
export function inbound(n: Nat, src: string, port: number, nowMs = 0) {
  return n.inbound(udp(src, `${PUBLIC}:${port}`), nowMs);
}
