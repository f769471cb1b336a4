/**
 * The gateway's NAT probe (paper §2.2, steps 5-8): repeated STUN tests from fresh sockets give the
 * public address, the mapping and filtering behaviour, and the allocation step. The result is
 * cached by the caller and refreshed; `freshPort` gives the newest public port right before a call.
 */

import type { FilteringBehaviour, MappingBehaviour } from '../nat/behaviour.ts';
import type { Endpoint } from '../net/address.ts';
import { StunTests, type StunTestsComponents } from './stun-tests.ts';

export interface NatProbe {
  readonly publicAddress: string;
  readonly mapping: MappingBehaviour;
  /** `unknown` when the STUN server has one address (only port filtering can be seen). */
  readonly filtering: FilteringBehaviour | 'unknown';
  readonly allocation: 'preserve-if-free' | 'sequential' | 'random';
  readonly delta: number | null;
  readonly lastPort: number;
  /** An ICMP error closes the mapping (IPS); `null` where the probe cannot see it. */
  readonly ips: boolean | null;
  readonly measuredAtMs: number;
  /**
   * No STUN answer at all: UDP is blocked on the way out, and the behaviour fields are the
   * worst case (nothing predictable). Only a relay reached over TCP can carry calls then.
   */
  readonly udpBlocked?: boolean;
}

/** The probe of a network where STUN got no answer: nothing is known, nothing can be predicted. */
export function udpBlockedProbe(measuredAtMs: number): NatProbe {
  return {
    publicAddress: '0.0.0.0',
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    allocation: 'random',
    delta: null,
    lastPort: 0,
    ips: null,
    measuredAtMs,
    udpBlocked: true,
  };
}

export interface ProbeInit {
  /** The STUN server's primary endpoint; its OTHER-ADDRESS gives the alternate. */
  readonly server: Endpoint;
  readonly rtoMs?: number;
  readonly attempts?: number;
  readonly samples?: number;
  readonly signal?: AbortSignal;
}

function stunTests(
  components: StunTestsComponents,
  init: ProbeInit,
  alternate: Endpoint = init.server,
): StunTests {
  return new StunTests(components, {
    primary: init.server,
    alternate,
    rtoMs: init.rtoMs,
    attempts: init.attempts,
    signal: init.signal,
  });
}

async function alternateOf(components: StunTestsComponents, init: ProbeInit): Promise<Endpoint> {
  const tests = stunTests(components, init);
  try {
    const socket = await tests.fresh();
    const first = await tests.mustBind(socket, init.server);
    if (!first.otherAddress) {
      throw new Error(
        `STUN server ${init.server.address}:${init.server.port} sends no OTHER-ADDRESS: it cannot run RFC 5780 tests`,
      );
    }
    return first.otherAddress;
  } finally {
    tests.close();
  }
}

export async function probeNat(components: StunTestsComponents, init: ProbeInit): Promise<NatProbe> {
  const alternate = await alternateOf(components, init);
  const tests = stunTests(components, init, alternate);
  try {
    const { mapping, publicAddress } = await tests.mapping();
    const filtering = await tests.filtering();
    // Before the allocation samples: a burned port must not fall between them.
    const ips = await tests.icmpSensitive(mapping);
    const alloc = await tests.allocation(init.samples ?? 4);
    // Per-destination mappings hide IPS from the test above; a known step shows it (issue 19:
    // pinning needs to know the NAT is not IPS). The sequential test runs after the samples.
    const seenIps =
      ips === null && alloc.allocation === 'sequential' && alloc.delta !== null
        ? await ipsFromRuns((step) => tests.icmpSensitiveSequential(step), alloc.delta)
        : ips;
    return {
      publicAddress,
      mapping,
      filtering,
      ...alloc,
      ips: seenIps,
      measuredAtMs: components.clock.now(),
    };
  } finally {
    tests.close();
  }
}

/**
 * The sequential IPS test run several times (`icmpSensitiveSequential` reads 1 step where the NAT
 * kept the mapping, 2 where it closed it). Another host's session between the two reads adds a
 * step, so a read of 1 is proof the NAT kept it; two such reads (a lost ICMP error also reads 1)
 * say not IPS. IPS only when no run read 1 and at least three read exactly 2. Otherwise unknown:
 * an IPS NAT must never be taken for one that keeps its mappings.
 */
export async function ipsFromRuns(
  run: (step: number) => Promise<boolean | null>,
  step: number,
  maxRuns = 6,
): Promise<boolean | null> {
  let kept = 0;
  let closed = 0;
  for (let i = 0; i < maxRuns; i++) {
    const result = await run(step);
    if (result === false) kept++;
    if (result === true) closed++;
    if (kept >= 2) return false;
    if (closed >= 3 && kept === 0) return true;
  }
  return null;
}

/** One STUN test from a fresh socket: the public port the NAT handed out most recently. */
export async function freshPort(components: StunTestsComponents, init: ProbeInit): Promise<number> {
  const tests = stunTests(components, init);
  try {
    return (await tests.mustBind(await tests.fresh(), init.server)).mapped.port;
  } finally {
    tests.close();
  }
}

/** `mapping/filtering/allocation` in one token for SDP and reports. */
export function describeProbe(probe: NatProbe): string {
  const alloc = probe.allocation === 'sequential' ? `sequential+${probe.delta}` : probe.allocation;
  const ips = probe.ips === null ? '' : probe.ips ? '/ips' : '/no-ips';
  return `${probe.mapping}/${probe.filtering}/${alloc}${ips}`;
}

/** The allocation step a peer's `describeProbe` token advertises, or `null` when not sequential. */
export function advertisedStep(nat: string): number | null {
  const match = /(?:^|\/)sequential\+(\d{1,5})(?:\/|$)/.exec(nat);
  const step = match ? Number(match[1]) : 0;
  return step > 0 && step < 65536 ? step : null;
}
