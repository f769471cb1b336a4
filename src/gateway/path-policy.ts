/**
 * Direct or relay, per call (issue 6's path policy):
 * - a pair neither side can predict (random allocation on both) goes straight to the relay;
 * - otherwise SC2C punches; if no direct path is confirmed within the budget, media starts on the
 *   relay and the punch goes on, moving media to the direct path if it confirms later;
 * - without a relay on both sides, the punch alone decides, as before.
 */
import type { Clock } from '../net/clock.ts';
import { sleep } from '../net/clock.ts';
import type { ConsentCredentials } from '../path/route-consent.ts';
import { RoutedPath } from '../path/routed-path.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import type { CallRelay } from './call-relay.ts';
import type { CallOutcome } from './types.ts';

/**
 * Issue 21: the direct path's transport for a pair, the same on both sides: TCP when either side's
 * UDP is blocked or either asks for TCP (`--transport tcp`), else UDP. A TCP pair without a TCP
 * candidate on both sides has no direct path.
 */
export function directTransport(local: CallDescription, remote: CallDescription): 'udp' | 'tcp' {
  return local.udpBlocked || remote.udpBlocked || local.transport === 'tcp' || remote.transport === 'tcp'
    ? 'tcp'
    : 'udp';
}

/** Why `straightToRelay` said so, for the call's `directReason`. */
export function straightReason(local: CallDescription, remote: CallDescription): string {
  if (directTransport(local, remote) === 'tcp') {
    const side = !local.tcp ? 'our side' : "the peer's side";
    return `the direct path must be TCP (${local.udpBlocked || remote.udpBlocked ? 'UDP is blocked' : 'TCP was asked for'}) and ${side} has no TCP candidate`;
  }
  return 'both NATs allocate ports at random: there is no port to predict';
}

/** Both sides advertise a relay and neither port can be predicted: punching cannot work. */
export function straightToRelay(local: CallDescription, remote: CallDescription): boolean {
  if (directTransport(local, remote) === 'tcp')
    return (
      local.relayEndpoint !== undefined && remote.relayEndpoint !== undefined && !(local.tcp && remote.tcp)
    );
  return (
    local.relayEndpoint !== undefined &&
    remote.relayEndpoint !== undefined &&
    local.portSource === 'unpredictable' &&
    remote.portSource === 'unpredictable'
  );
}

export interface SettleInit {
  readonly relay?: CallRelay;
  readonly local: CallDescription;
  readonly remote: CallDescription;
  readonly budgetMs: number;
  readonly deadAfterMs: number;
}

export type Settled =
  /** No relay on both sides: the punch alone decides. */
  | { readonly kind: 'plain' }
  | { readonly kind: 'direct'; readonly routed: RoutedPath; readonly punched: CallOutcome }
  /** On the relay: `punched` is the punch's failure when it failed within the budget. */
  | { readonly kind: 'relay'; readonly routed: RoutedPath; readonly punched?: CallOutcome };

/**
 * Waits for the punch or the budget, whichever decides first. `punch` is undefined for a pair that
 * goes straight to the relay; it is left running when the budget runs out first.
 */
export async function settlePath(
  c: { readonly clock: Clock },
  punch: Promise<CallOutcome> | undefined,
  init: SettleInit,
): Promise<Settled> {
  const peerRelayed = init.remote.relayEndpoint;
  if (!init.relay || !init.local.relayEndpoint || !peerRelayed) return { kind: 'plain' };
  const leg = init.relay.leg(peerRelayed);
  const deadAfterMs = init.deadAfterMs;
  // Relayed media waits until the peer's relayed address answers a check with the call's credentials.
  const consent = consentCredentials(init.local, init.remote);
  if (!punch)
    return { kind: 'relay', routed: new RoutedPath(c, { relay: leg, route: 'relay', deadAfterMs, consent }) };
  const budget = new AbortController();
  const decided = await Promise.race([
    punch,
    sleep(c.clock, init.budgetMs, budget.signal).then(
      () => undefined,
      () => undefined,
    ),
  ]);
  budget.abort();
  if (decided?.ok && decided.path) {
    const routed = new RoutedPath(c, {
      direct: decided.path,
      relay: leg,
      route: 'direct',
      deadAfterMs,
      consent,
    });
    return { kind: 'direct', routed, punched: decided };
  }
  const routed = new RoutedPath(c, { relay: leg, route: 'relay', deadAfterMs, consent });
  if (!decided) {
    // The punch goes on: a late confirmation moves media to the direct path.
    void punch.then((late) => {
      if (!late.ok || !late.path) return;
      routed.setDirect(late.path.socket, late.path.remote);
      routed.use('direct', 'the direct path confirmed after media started on the relay');
    });
  }
  return { kind: 'relay', routed, punched: decided };
}

/**
 * A direct call without a relay still goes through a `RoutedPath`, so its media is counted the
 * same way as a relayed call's (the call record's bytes). Not for a separate RTCP port: that pair
 * stays as the punch left it.
 */
export function countedDirect(c: { readonly clock: Clock }, outcome: CallOutcome): CallOutcome {
  if (!outcome.ok || !outcome.path || outcome.routed || outcome.path.rtcp) return outcome;
  const routed = new RoutedPath(c, { direct: outcome.path, route: 'direct' });
  return { ...outcome, path: routed, routed, route: 'direct' };
}

/** The consent checks' credentials of a pair: ours and the peer's from the offer and answer. */
export function consentCredentials(
  local: Pick<CallDescription, 'ufrag' | 'pwd'>,
  remote: Pick<CallDescription, 'ufrag' | 'pwd'>,
): ConsentCredentials {
  return { localUfrag: local.ufrag, localPwd: local.pwd, remoteUfrag: remote.ufrag, remotePwd: remote.pwd };
}
