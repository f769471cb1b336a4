/**
 * Pinning one call attempt's mapping (issue 19, traversal/pin.ts): which side pins, opening the
 * rungs from the media socket, and the descriptions each side punches with afterwards.
 */
import {
  type FreshField,
  infoFields,
  MAX_BIRTHDAY_PORTS,
  type ObservedPinField,
  type PinField,
  readSyncFields,
  type SyncFields,
} from '../protocol/sc2c-info.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import { birthdayHardSide, DEFAULT_BIRTHDAY_PORTS, openHardPorts } from '../traversal/birthday.ts';
import { DriftTracker } from '../traversal/drift.ts';
import {
  DEFAULT_PIN_TTL,
  DEFAULT_PIN_WINDOW,
  type PinResult,
  pinMappings,
  pinningSide,
  pinWindowFor,
  primer,
  rungTargets,
} from '../traversal/pin.ts';
import { advertisedStep } from '../traversal/probe.ts';
import type { ActiveCall } from './active-call.ts';
import type { GatewayComponents, GatewayInit } from './types.ts';

/** What the go carries to the callee when the caller pinned. */
export type PeerPin = PinField;

export function sideThatPins(
  caller: CallDescription,
  callee: CallDescription,
): 'caller' | 'callee' | undefined {
  return pinningSide(caller, callee, advertisedStep);
}

/**
 * Opens the rungs toward `remote` from the attempt's media socket and returns our description with
 * the pinned port. Rejects when STUN does not answer (the attempt then goes on unpinned).
 */
export async function pinLocal(
  c: GatewayComponents,
  init: GatewayInit,
  active: ActiveCall,
  local: CallDescription,
  remote: CallDescription,
  announce?: (pin: ObservedPinField) => void,
): Promise<{ description: CallDescription; result: PinResult }> {
  const window = pinWindowFor(remote, init.punch?.pinWindow ?? DEFAULT_PIN_WINDOW);
  const targets = rungTargets(remote.publicEndpoint, advertisedStep(remote.nat) ?? 1, window);
  const result = await pinMappings(c, active.socket, targets, {
    stunServer: init.stunServer,
    stunRtoMs: init.stunRtoMs ?? 200,
    ownStep: advertisedStep(local.nat) ?? 1,
    ttl: init.punch?.pinTtl,
    announce: announce
      ? ({ transactionId, offset }) =>
          announce({ stun: Buffer.from(transactionId).toString('hex'), offset, window })
      : undefined,
  });
  active.pin = { side: 'local', verified: result.verified };
  return {
    description: {
      ...local,
      publicEndpoint: { address: local.publicEndpoint.address, port: result.port },
      portSource: 'pinned',
      pin: window,
    },
    result,
  };
}

/**
 * Issue 19, item 1: while we wait for the go toward a peer that pins, our NAT's counter may move.
 * Tracks it (traversal/drift.ts) when our port was predicted on a known step; `stop()` at the go
 * puts the estimate on `active.drift`, which places our checks. Undefined when there is nothing
 * to track.
 */
export function trackDrift(
  c: GatewayComponents,
  init: GatewayInit,
  active: ActiveCall,
  local: CallDescription,
): { stop(): void } | undefined {
  const step = advertisedStep(local.nat);
  if (
    init.punch?.drift === false ||
    local.portSource !== 'predicted' ||
    step === null ||
    active.sample === undefined
  )
    return undefined;
  const tracker = new DriftTracker(c, {
    stunServer: init.stunServer,
    stunRtoMs: init.stunRtoMs ?? 200,
    base: { atMs: active.sample.sentAtMs, port: active.sample.port },
    step,
  }).start();
  return {
    stop: () => {
      active.drift = tracker.stop();
    },
  };
}

/** The peer's description with the ports its sync sent after its offer (`fresh`). */
export function withFreshPorts(remote: CallDescription, fresh: FreshField): CallDescription {
  return {
    ...remote,
    publicEndpoint: { address: remote.publicEndpoint.address, port: fresh.port },
    ...(remote.rtcpEndpoint && fresh.rtcpPort !== undefined
      ? { rtcpEndpoint: { address: remote.rtcpEndpoint.address, port: fresh.rtcpPort } }
      : {}),
  };
}

/** The peer's description as the go corrects it: its pinned port and the checks it asks for. */
export function withPeerPin(remote: CallDescription, pin: PeerPin): CallDescription {
  return {
    ...remote,
    publicEndpoint: { address: remote.publicEndpoint.address, port: pin.port },
    portSource: 'pinned',
    pin: pin.window,
  };
}

/**
 * Birthday punching, hard side (traversal/birthday.ts): opens the extra mappings toward the peer's
 * observed endpoint (and primes the media socket's), and returns our description saying how many.
 */
export async function openBirthday(
  c: GatewayComponents,
  init: GatewayInit,
  active: ActiveCall,
  local: CallDescription,
  remote: CallDescription,
): Promise<CallDescription> {
  const ports = Math.min(
    MAX_BIRTHDAY_PORTS,
    Math.max(1, init.punch?.birthdayPorts ?? DEFAULT_BIRTHDAY_PORTS),
  );
  const ttl = init.punch?.pinTtl ?? DEFAULT_PIN_TTL;
  const extra = await openHardPorts(c.network, ports - 1, remote.publicEndpoint, () => primer(c), ttl);
  if (active.ended) {
    // The call ended while the ports opened: nothing else would close them.
    for (const socket of extra) socket.close();
    throw new Error('the call ended while the birthday ports opened');
  }
  active.birthday = extra;
  await active.socket.sendWithTtl(primer(c), remote.publicEndpoint, ttl);
  return { ...local, birthday: ports };
}

/**
 * Issue 19, right before the punch is synchronized: the side `we` are pins its mapping, or opens
 * birthday ports, when the two descriptions say it is the one to. Either failing leaves our
 * description as it was (told through `report`). Resolves with our description as punched.
 */
export async function prepareMapping(
  c: GatewayComponents,
  init: GatewayInit,
  active: ActiveCall,
  we: 'caller' | 'callee',
  local: CallDescription,
  remote: CallDescription,
  udpBlocked: boolean,
  report: (message: string) => void,
  /** Issue 19: called as the pin's rungs leave, with the pin as our server can read it (the caller's early sync). */
  announce?: (pin: ObservedPinField) => void,
): Promise<CallDescription> {
  const [caller, callee] = we === 'caller' ? [local, remote] : [remote, local];
  const going = we === 'caller' ? 'punching' : 'answering';
  let punched = local;
  if (init.punch?.pin !== false && sideThatPins(caller, callee) === we) {
    try {
      punched = (await pinLocal(c, init, active, local, remote, announce)).description;
    } catch (error) {
      report(`could not pin the media port, ${going} unpinned: ${(error as Error).message}`);
    }
  }
  // Not where UDP is blocked: the "random" NAT there is only what nothing was learned looks like.
  if (
    init.punch?.birthday !== false &&
    !udpBlocked &&
    !active.ended &&
    birthdayHardSide(caller, callee) === we
  ) {
    try {
      punched = await openBirthday(c, init, active, punched, remote);
    } catch (error) {
      report(`could not open birthday ports: ${(error as Error).message}`);
    }
  }
  return punched;
}

/** A go's fields from the wire; none when the body is not JSON or a field is malformed. */
export function readGoFields(body: string): SyncFields {
  const fields = infoFields(body);
  const read = fields ? readSyncFields(fields) : undefined;
  return read && 'fields' in read ? read.fields : {};
}
