/**
 * Pinning a symmetric NAT's mapping before the punch (issue 19; the low-TTL priming of seed 002).
 *
 * A prediction made at the INVITE is only right if no other session takes the NAT's next port
 * before the media socket's first packet: on a busy NAT it often is not. A side whose NAT maps per
 * destination with a known step (sequential) can fix its port instead, once it knows where the
 * peer will send from: it sends one packet per *rung* from the media socket, with a TTL that runs
 * out past its own NAT (so it never reaches the peer's NAT, cannot knock a PKS port or draw an ICMP
 * error from it), toward the peer's predicted port and the next ones on the peer's step. Each rung
 * opens a mapping whose public port is then known: a STUN sample sent right after the rungs reads
 * the port after the last one, and a sample sent right before checks nothing came in between.
 *
 * The peer's own port is still a guess, and its NAT may have moved by `k` steps since it sampled
 * (unknown, >= 0). Rung `m` maps our port `base + m·ownStep` to the peer's `peer + m·peerStep`. The
 * peer sends its j-th check (j = 0..window-1, back to back, so they take consecutive ports
 * `peer + (k + j)·peerStep`) to our `base + 2j·ownStep`: that rung expects the peer's port
 * `peer + 2j·peerStep`, so check j = k matches exactly one rung. The others reach a rung from the
 * wrong source port and are filtered (an IPS peer loses only that check's own mapping). So
 * `2·window - 1` rungs cover a peer that moved by up to `window - 1` steps. The pinned side only
 * answers: it never sends to a port that might not be mapped yet.
 *
 * Not on an IPS NAT: the rungs' TTL runs out at a router, whose ICMP time-exceeded error would
 * close the mapping it quotes.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { MAX_PIN_WINDOW } from '../protocol/sc2c-info.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
import { encodeStun, StunClass, StunMethod } from '../protocol/stun/message.ts';
import { stunBinding } from './stun-client.ts';

// The most checks a peer's window may ask for; the pinned side opens `2·MAX_PIN_WINDOW - 1` rungs.
export { MAX_PIN_WINDOW } from '../protocol/sc2c-info.ts';
/** Past the host's own NAT, short of the peer's: one router beyond a single NAT. */
export const DEFAULT_PIN_TTL = 2;
/**
 * 31 rungs: at 20 sessions/s behind the peer's NAT and a 150 ms uplink its counter moves about 14
 * steps between its sample and its checks (docs/benchmarks.md); rungs cost nothing beyond our own
 * NAT, checks cost the peer a port each, so the rungs cover far more than the checks.
 */
export const DEFAULT_PIN_WINDOW = 16;
/** Checks a peer that tracked its drift sends (drift.ts `checkPlan`): about ±3.5 steps of error. */
export const DEFAULT_PIN_CHECKS = 8;

/** The peer endpoints the rungs go to: the peer's port and the next `2·window - 2` on its step. Pure. */
export function rungTargets(peer: Endpoint, peerStep: number, window: number): Endpoint[] {
  const rungs = 2 * clampWindow(window) - 1;
  const targets: Endpoint[] = [];
  for (let m = 0; m < rungs; m++) {
    const port = peer.port + m * peerStep;
    if (port > 65535) break;
    targets.push({ address: peer.address, port });
  }
  return targets;
}

/**
 * Where a peer facing a pinned side sends its checks, in this order (the first leaves first, so it
 * takes the port the peer predicted): check j to the pinned base plus `2j` steps, or, when the peer
 * tracked its own drift (drift.ts `checkPlan`), `count` checks from rung `first`: check j to the
 * base plus `first + 2j` steps, landing when the peer's NAT moved `first + j` steps. Pure.
 */
export function checksTowardPinned(
  pinned: Endpoint,
  pinnedStep: number,
  window: number,
  plan: { readonly first: number; readonly count: number } = { first: 0, count: clampWindow(window) },
): Endpoint[] {
  const rungs = 2 * clampWindow(window) - 1;
  const checks: Endpoint[] = [];
  for (let j = 0; j < plan.count; j++) {
    const rung = plan.first + 2 * j;
    const port = pinned.port + rung * pinnedStep;
    if (rung >= rungs || port > 65535) break;
    checks.push({ address: pinned.address, port });
  }
  return checks;
}

export function clampWindow(window: number): number {
  return Math.min(MAX_PIN_WINDOW, Math.max(1, Math.floor(Number.isFinite(window) ? window : 1)));
}

export interface PinComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface PinInit {
  readonly stunServer: Endpoint;
  readonly stunRtoMs: number;
  /** Our NAT's allocation step. */
  readonly ownStep: number;
  readonly ttl?: number;
  /** Tries when the samples show another session came between the rungs. Default 2 (1 with `announce`). */
  readonly tries?: number;
  /**
   * Called as the rungs and the later sample leave, with that sample's transaction ID and what to
   * add to the port it will read to get ours: a server that answered it knows our port at once
   * (issue 19). Only one try then: the port announced is the one kept.
   */
  readonly announce?: (after: { readonly transactionId: Uint8Array; readonly offset: number }) => void;
}

export interface PinResult {
  /** Our public port on the first rung (toward `targets[0]`). */
  readonly port: number;
  readonly rungs: number;
  /** The samples around the rungs agreed: no other session took a port between them. */
  readonly verified: boolean;
  readonly tries: number;
  /** When the rungs left (clock ms). */
  readonly pinnedAtMs: number;
}

/**
 * Opens the rungs from `socket` toward `targets` and reads the port of the first. Resolves with
 * the best reading even when unverified; rejects only when STUN does not answer.
 */
export async function pinMappings(
  c: PinComponents,
  socket: UdpSocket,
  targets: readonly Endpoint[],
  init: PinInit,
): Promise<PinResult> {
  const tries = init.announce ? 1 : Math.max(1, init.tries ?? 2);
  let last: PinResult | undefined;
  for (let attempt = 1; attempt <= tries; attempt++) {
    // Sample sockets are bound first, so the two requests and the rungs leave back to back.
    const before = await c.network.bindUdp();
    const after = await c.network.bindUdp().catch((error: Error) => {
      before.close();
      throw error;
    });
    try {
      const stun = { clock: c.clock, transactionId: c.transactionId };
      const query = { server: init.stunServer, rtoMs: init.stunRtoMs, attempts: 4 };
      const first = stunBinding(before, stun, query);
      const pinnedAtMs = c.clock.now();
      const sent = Promise.all(
        targets.map((to) => socket.sendWithTtl(primer(c), to, init.ttl ?? DEFAULT_PIN_TTL)),
      );
      const afterId = c.transactionId?.() ?? new Uint8Array(randomBytes(12));
      const second = stunBinding(after, { clock: c.clock, transactionId: () => afterId }, query);
      init.announce?.({ transactionId: afterId, offset: -targets.length * init.ownStep });
      const [a, b] = await Promise.all([first, second, sent]);
      if (!a || !b) throw new Error('no STUN answer while pinning the media port');
      const rungs = targets.length;
      const verified = b.mapped.port - a.mapped.port === (rungs + 1) * init.ownStep;
      // Unverified: another session came between; most likely before the rungs (the samples'
      // requests and the rungs leave within microseconds), so count back from the later sample.
      const port = b.mapped.port - rungs * init.ownStep;
      // The NAT's counter wrapped past the top of its range: the rungs' ports are not a ladder.
      if (port < 1 || b.mapped.port > 65535 || b.mapped.port < a.mapped.port) continue;
      last = { port, rungs, verified, tries: attempt, pinnedAtMs };
      if (verified) return last;
    } finally {
      before.close();
      after.close();
    }
  }
  if (!last) throw new Error('the NAT port counter wrapped while pinning');
  return last;
}

/** A STUN Binding indication: if a rung ever did reach a peer, it is ignored there (RFC 8489 §6.3.2). */
export function primer(c: { readonly transactionId?: () => Uint8Array }): Uint8Array {
  return addFingerprint(
    encodeStun({
      method: StunMethod.binding,
      cls: StunClass.indication,
      transactionId: c.transactionId?.() ?? new Uint8Array(randomBytes(12)),
      attributes: [],
    }),
  );
}

/** What one side's description says about pinning (the fields `pinningSide` reads). */
export interface PinView {
  readonly mode: string;
  readonly rtcpMux: boolean;
  readonly portSource: string;
  readonly nat: string;
  readonly pin?: 'capable' | number;
}

/**
 * Which side pins, from the two descriptions, the same on both sides: the caller when it can (it
 * learns the callee's port from the answer and sends its pinned port with the sync), else the
 * callee (it pins before answering). A side can when it said `capable` (its own NAT maps per
 * destination with a known step and is not IPS), the call is SC2C with RTCP muxed, and the other
 * side's port is known: observed, or predicted with a known step. Pure.
 */
export function pinningSide(
  caller: PinView,
  callee: PinView,
  stepOf: (nat: string) => number | null,
): 'caller' | 'callee' | undefined {
  if (caller.mode !== 'sc2c' || callee.mode !== 'sc2c' || !caller.rtcpMux || !callee.rtcpMux)
    return undefined;
  const can = (own: PinView, peer: PinView): boolean =>
    own.pin === 'capable' &&
    stepOf(own.nat) !== null &&
    (peer.portSource === 'exact' || (peer.portSource === 'predicted' && stepOf(peer.nat) !== null));
  if (can(caller, callee)) return 'caller';
  if (can(callee, caller)) return 'callee';
  return undefined;
}

/** The window a pinned side offers a peer: one check where the peer's port was observed. Pure. */
export function pinWindowFor(peer: PinView, configured: number): number {
  return peer.portSource === 'exact' ? 1 : clampWindow(configured);
}
