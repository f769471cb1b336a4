/**
 * Port prediction (paper §2.2): the public port the NAT will give the next new session. Pure.
 *
 * The media socket sends nothing before the punch, so its first packet opens a new session on the
 * NAT; with sequential allocation that session gets last + delta, whatever the mapping type: the
 * paper predicts on every NAT (step 5), and the C2C baseline does so here too. Where the mapping is
 * endpoint-independent the media socket's own STUN answer is the port every peer will see, exactly:
 * SC2C uses it (`exactWhenIndependent`), since a prediction can be overtaken by other hosts'
 * sessions between STUN test and punch, and an observed mapping cannot. Random allocation with a
 * destination-dependent mapping cannot be predicted.
 */
import type { Endpoint } from '../net/address.ts';
import type { NatProbe } from './probe.ts';

export type PortPlan =
  | { readonly kind: 'observe' }
  | { readonly kind: 'predict'; readonly port: number }
  | { readonly kind: 'unpredictable'; readonly reason: string };

export function planPort(
  probe: Pick<NatProbe, 'mapping' | 'allocation' | 'delta'>,
  lastPort: number,
  options: { readonly exactWhenIndependent?: boolean } = {},
): PortPlan {
  if (options.exactWhenIndependent && probe.mapping === 'endpoint-independent') return { kind: 'observe' };
  if (probe.allocation === 'sequential' && probe.delta !== null) {
    const next = lastPort + probe.delta;
    return { kind: 'predict', port: next > 65535 ? next - 65535 + 1023 : next };
  }
  if (probe.mapping === 'endpoint-independent') return { kind: 'observe' };
  return {
    kind: 'unpredictable',
    reason: `the NAT maps per destination and allocates ports ${probe.allocation === 'random' ? 'at random' : 'by preservation'}: the next public port cannot be predicted`,
  };
}

/**
 * Candidates around a predicted endpoint: the prediction, then the next `size - 1` ports on the
 * step. Other hosts' sessions (background traffic) can only push a sequential NAT's port forward,
 * so the window looks forward only. Pure.
 */
export function candidateWindow(predicted: Endpoint, step: number, size: number): Endpoint[] {
  const candidates: Endpoint[] = [];
  for (let k = 0; k < Math.max(1, size); k++) {
    const port = predicted.port + k * step;
    if (port > 65535) break;
    candidates.push({ address: predicted.address, port });
  }
  return candidates;
}

/**
 * How many candidates we may cover on the peer. Every extra destination costs nothing only when
 * our own NAT keeps one mapping for all of them (endpoint-independent), and the ICMP errors that
 * wrong guesses draw must not close that mapping: a NAT we could not show to be IPS-free gets one.
 */
export function windowSize(
  own: Pick<NatProbe, 'mapping' | 'ips'>,
  peerStep: number | null,
  peerPortSource: string,
  configured: number,
): number {
  if (peerStep === null || peerPortSource !== 'predicted') return 1;
  if (own.mapping !== 'endpoint-independent' || own.ips !== false) return 1;
  return Math.max(1, Math.floor(configured));
}

/**
 * Whether to check the peer's advertised public port at all. Not when that port is a guess
 * (predicted, or unpredictable: the peer's NAT allocates at random), our own NAT lets the peer's
 * checks in anyway (endpoint-independent filtering) and our own advertised port is the one our NAT
 * really uses (observed behind an endpoint-independent mapping), so the peer's checks are sure to
 * arrive: the first one comes from the peer's real port and becomes a peer-reflexive candidate,
 * while a check to a wrong guess (the peer's counter moved on, or was never known) draws an ICMP
 * error from the peer's NAT, which closes our mapping on an IPS NAT, and a check to a right one can
 * knock a PKS peer's port early. When our own port is a guess too (C2C predicts on every NAT), both
 * sides must check, or neither would. Pure.
 */
export function checksPeerGuess(
  own: Pick<NatProbe, 'mapping' | 'filtering'>,
  ownPortSource: string,
  peerPortSource: string,
): boolean {
  const guess = peerPortSource === 'unpredictable' || peerPortSource === 'predicted';
  const reachable =
    own.filtering === 'endpoint-independent' &&
    own.mapping === 'endpoint-independent' &&
    (ownPortSource === 'exact' || ownPortSource === 'stun');
  return !(guess && reachable);
}

/**
 * Issue 19: two per-destination NATs that both predicted (neither could pin: IPS on both sides).
 * Each check a side sends takes its own NAT's next port, so a window on one side alone moves the
 * very port the other is guessing. A ladder from each side meets whatever both NATs moved: the
 * caller checks the callee's predicted port + i steps (i < 2·window - 1), the callee the caller's
 * + 2j steps (j < window); with the caller's counter moved kA steps and the callee's kB, check
 * j = kA + kB from the callee and check i = kA + 2kB from the caller name each other's source, so
 * every kA + kB < window meets once. The synchronized go sends both ladders at the same moment, so
 * every mapping exists before the other side's checks arrive. Pure.
 */
export function crossLadder(
  peer: Endpoint,
  peerStep: number,
  role: 'caller' | 'callee',
  window: number,
): Endpoint[] {
  const size = Math.max(1, Math.min(MAX_CROSS_WINDOW, Math.floor(window)));
  const count = role === 'caller' ? 2 * size - 1 : size;
  const stride = role === 'caller' ? 1 : 2;
  const candidates: Endpoint[] = [];
  for (let i = 0; i < count; i++) {
    const port = peer.port + i * stride * peerStep;
    if (port > 65535) break;
    candidates.push({ address: peer.address, port });
  }
  return candidates;
}

/** The largest ladder: 63 checks from the caller, 32 from the callee. */
export const MAX_CROSS_WINDOW = 32;

/**
 * Drifts adding up to 15 steps meet: at 5 sessions/s behind a 150 ms uplink both NATs move about
 * 10 between prediction and punch (docs/benchmarks.md, "Busy NATs, second pass").
 */
export const DEFAULT_CROSS_WINDOW = 16;
