/**
 * Birthday punching for a NAT that maps per destination and allocates ports at random (issue 19;
 * the birthday-paradox approach Tailscale describes for "hard" NATs). Neither side can name the
 * random side's port, so the random ("hard") side opens many mappings toward the other side's
 * observed endpoint, and the other ("easy") side, whose NAT keeps one mapping for every destination,
 * sends checks to many random ports on the hard side's address: with `ports` mappings open among
 * the ~64 000 and `probes` distinct ports probed, some probe lands with probability about
 * 1 - (1 - ports/64512)^probes (256 and 2048: 99.97 %). A probe that lands is a check with the
 * call's credentials, answered from the mapping it hit; the answer passes the easy side's filter
 * (it sent to exactly that port).
 *
 * Safety, following PKS and IPS:
 * - the hard side's packets carry a TTL that runs out past its own NAT: they never reach the easy
 *   side's NAT (no ICMP from its filter, no knock);
 * - the easy side must be known not IPS: probes to ports with no mapping draw port-unreachable
 *   errors from the hard side's NAT, which would close an IPS NAT's only mapping;
 * - probes to a PKS hard NAT would block the ports they knock for other sessions; PKS cannot be
 *   probed for, so the hard side opts in (`punch.birthday`), which it does by default.
 * Bounded: ports per call, probes per call, and a pace (probes per second).
 */
import type { Endpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { MAX_BIRTHDAY_PORTS } from '../protocol/sc2c-info.ts';
import { DEFAULT_PIN_TTL } from './pin.ts';
import type { Puncher } from './punch.ts';

export const DEFAULT_BIRTHDAY_PORTS = 256;
export { MAX_BIRTHDAY_PORTS } from '../protocol/sc2c-info.ts';
export const DEFAULT_BIRTHDAY_PROBES = 2048;
export const DEFAULT_BIRTHDAY_RATE = 1000;

/** What a `describeProbe` token says (mapping/filtering/allocation[/ips|/no-ips]). Pure. */
export function natTraits(nat: string): {
  mapping: string;
  filtering: string;
  allocation: string;
  ips: boolean | null;
} {
  const [mapping = '', filtering = '', allocation = '', sensitivity] = nat.split('/');
  return {
    mapping,
    filtering,
    allocation,
    ips: sensitivity === 'ips' ? true : sensitivity === 'no-ips' ? false : null,
  };
}

export interface BirthdayView {
  readonly mode: string;
  readonly rtcpMux: boolean;
  readonly portSource: string;
  readonly nat: string;
}

/**
 * The hard side of a call that needs birthday punching, or undefined: one side maps per
 * destination at random (its port unpredictable), the other keeps one observed mapping for every
 * destination (exact), filters on the sender's port (with a looser filter the hard side's own checks
 * already get in and become peer-reflexive candidates), and is known not IPS; SC2C, RTCP muxed. Pure.
 */
export function birthdayHardSide(
  caller: BirthdayView,
  callee: BirthdayView,
): 'caller' | 'callee' | undefined {
  if (caller.mode !== 'sc2c' || callee.mode !== 'sc2c' || !caller.rtcpMux || !callee.rtcpMux)
    return undefined;
  const hard = (d: BirthdayView): boolean => {
    const t = natTraits(d.nat);
    return (
      d.portSource === 'unpredictable' && t.mapping !== 'endpoint-independent' && t.allocation === 'random'
    );
  };
  const easy = (d: BirthdayView): boolean => {
    const t = natTraits(d.nat);
    return (
      d.portSource === 'exact' &&
      t.mapping === 'endpoint-independent' &&
      t.filtering === 'address-and-port-dependent' &&
      t.ips === false
    );
  };
  if (hard(caller) && easy(callee)) return 'caller';
  if (hard(callee) && easy(caller)) return 'callee';
  return undefined;
}

/**
 * `count` distinct ports in [min, max] in random order, from `random` (uniform in [0, 1)). Pure
 * given `random`.
 */
export function probePorts(count: number, random: () => number, min = 1024, max = 65535): number[] {
  const size = max - min + 1;
  const want = Math.min(Math.max(0, Math.floor(count)), size);
  const chosen = new Set<number>();
  while (chosen.size < want) chosen.add(min + Math.floor(random() * size));
  return [...chosen];
}

/**
 * The hard side: `count` fresh sockets, each opening a mapping toward `target` with a packet whose
 * TTL runs out past our NAT. The caller owns the sockets (and closes the ones that lose).
 */
export async function openHardPorts(
  network: Network,
  count: number,
  target: Endpoint,
  primer: () => Uint8Array,
  ttl = DEFAULT_PIN_TTL,
): Promise<UdpSocket[]> {
  const sockets: UdpSocket[] = [];
  try {
    for (let i = 0; i < Math.min(count, MAX_BIRTHDAY_PORTS); i++) sockets.push(await network.bindUdp());
    await Promise.all(sockets.map((socket) => socket.sendWithTtl(primer(), target, ttl)));
    return sockets;
  } catch (error) {
    for (const socket of sockets) socket.close();
    throw error;
  }
}

/**
 * The easy side: checks from `puncher`'s socket to `ports` on `address`, `ratePerSecond` at most,
 * until `done()` or the ports run out. Resolves with how many were sent.
 */
export async function probeHardSide(
  c: { readonly clock: Clock },
  puncher: Puncher,
  address: string,
  ports: readonly number[],
  init: { readonly ratePerSecond?: number; readonly done: () => boolean },
): Promise<number> {
  const rate = Math.max(1, init.ratePerSecond ?? DEFAULT_BIRTHDAY_RATE);
  // Bursts every 10 ms keep the pace without a timer per probe.
  const perTick = Math.max(1, Math.round(rate / 100));
  let sent = 0;
  while (sent < ports.length && !init.done()) {
    for (let i = 0; i < perTick && sent < ports.length; i++) puncher.probe({ address, port: ports[sent++]! });
    await sleep(c.clock, 10);
  }
  return sent;
}
