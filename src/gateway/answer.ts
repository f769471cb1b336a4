/**
 * The called side of a call (paper steps 13-16, 20-21): read the offer, agree on media, allocate the
 * relay leg before predicting (its NAT session must not take the predicted port), answer with our
 * prediction, wait for the go (SC2C) or the ACK (straight to the relay), punch, and settle the route.
 * A re-INVITE on an established call is a background direct attempt: only the direct path changes.
 */
import { answerFor } from '../media/negotiate.ts';
import { isPortPin, type SyncFields } from '../protocol/sc2c-info.ts';
import type { MediaLine, TraversalMode } from '../protocol/sdp.ts';
import { type CallDescription, DEFAULT_MEDIA, decodeSdp, encodeSdp } from '../protocol/sdp.ts';
import type { SipRequest } from '../protocol/sip/message.ts';
import { assertedCaller } from '../signaling/identity.ts';
import { readCredential } from '../signaling/turn-credentials.ts';
import { birthdayHardSide } from '../traversal/birthday.ts';
import type { ActiveCall } from './active-call.ts';
import { type CallRelay, describeWithRelay } from './call-relay.ts';
import type { CallRoutes, RoutesHost } from './call-routes.ts';
import type { MediaSetup, RtcpPlan } from './media-setup.ts';
import {
  consentCredentials,
  directTransport,
  settlePath,
  straightReason,
  straightToRelay,
} from './path-policy.ts';
import { prepareMapping, sideThatPins, trackDrift, withFreshPorts, withPeerPin } from './pin-call.ts';
import { encryptionMismatch, withDtls } from './secure-call.ts';
import type { CallOutcome, GatewayComponents, GatewayInit } from './types.ts';

export type Respond = (status: number, extra?: [string, string][], body?: string) => void;

/** What answering needs from its gateway. */
export interface AnswerHost {
  readonly c: GatewayComponents;
  readonly init: GatewayInit;
  readonly routes: CallRoutes;
  /** True while our network blocks UDP (no STUN answer at start): calls are relay-only. */
  udpBlocked(): boolean;
  emit: RoutesHost['emit'];
  punch: RoutesHost['punch'];
  /** `mapPorts`: ask our router for the ports (issue 20), on a call's first attempt. */
  prepare(
    mode: TraversalMode,
    rtcp: RtcpPlan,
    media: readonly MediaLine[] | undefined,
    mapPorts: boolean,
    remote: CallDescription,
  ): Promise<MediaSetup & { readonly tcp?: { readonly localPort: number } }>;
  /** Makes `active` the call's current attempt. */
  register(callId: string, active: ActiveCall): void;
  /** INVITEs received for this call so far. */
  attempts(callId: string): number;
  /** A direct outcome with no relay in play, counted all the same. */
  counted(active: ActiveCall, outcome: CallOutcome): CallOutcome;
  /** DTLS-SRTP on an established outcome's path; a failure ends the call with its reason. */
  secure(callId: string, active: ActiveCall, outcome: CallOutcome): Promise<CallOutcome>;
}

export async function answerCall(
  host: AnswerHost,
  request: SipRequest,
  callId: string,
  respond: Respond,
  previous?: ActiveCall,
): Promise<void> {
  const startedAtMs = host.c.clock.now();
  const peer = assertedCaller(request);
  let remote: CallDescription;
  try {
    remote = decodeSdp(request.body);
  } catch (error) {
    respond(488);
    host.emit('call', {
      callId,
      role: 'callee',
      peer,
      mode: 'sc2c',
      ok: false,
      reason: `bad SDP offer: ${(error as Error).message}`,
      startedAtMs,
      checksSent: 0,
    });
    return;
  }
  const base = { callId, role: 'callee' as const, peer, mode: remote.mode, startedAtMs };
  const mismatch = previous ? undefined : encryptionMismatch(host.init.dtls, remote, true);
  if (mismatch) {
    respond(488, [['Warning', `399 sc2c "${mismatch}"`]]);
    host.emit('call', { ...base, ok: false, reason: mismatch, remote, checksSent: 0 });
    return;
  }
  const media = host.init.media ? answerFor(remote.media ?? DEFAULT_MEDIA, host.init.media) : remote.media;
  if (media && 'reason' in media) {
    // RFC 3261 §20.43: a Warning says why, so the caller can tell its user.
    respond(488, [['Warning', `399 sc2c "${media.reason.replace(/"/g, "'")}"`]]);
    host.emit('call', {
      ...base,
      ok: false,
      reason: `media refused: ${media.reason}`,
      remote,
      checksSent: 0,
    });
    return;
  }
  let prepared: MediaSetup & { readonly tcp?: { readonly localPort: number } };
  let relay: CallRelay | undefined;
  let permitted: Promise<void> | undefined;
  const rtcp = remote.rtcpMux && host.init.rtcpMux !== false ? 'mux' : 'separate';
  const relayReady =
    previous?.relay || !remote.relayEndpoint || rtcp !== 'mux'
      ? Promise.resolve(previous?.relay)
      : host.routes.allocateRelay(readCredential(request));
  try {
    if (rtcp === 'separate' && !remote.rtcpEndpoint)
      throw new Error('the offer has neither rtcp-mux nor an RTCP port');
    // Allocate before predicting: the allocation's NAT session must not take the predicted port.
    relay = await relayReady;
    // The peer's permission on our relay beside our sample: it travels on the allocation's own
    // session, so it takes no port the prediction counts on, and the answer waits one round trip less.
    if (relay && remote.relayEndpoint) {
      permitted = relay
        .permit([remote.publicEndpoint.address, remote.relayEndpoint.address])
        .catch((error: Error) => {
          host.emit('relay-error', `no permission for the peer on the relay: ${error.message}`);
        });
    }
    // A re-INVITE is a retry after the first attempt failed: it predicts instead (issue 20).
    prepared = await host.prepare(remote.mode, rtcp, media, previous === undefined, remote);
  } catch (error) {
    if (!previous?.relay) void (await relayReady)?.close();
    respond(500);
    host.emit('call', {
      ...base,
      ok: false,
      reason: `could not prepare media: ${(error as Error).message}`,
      checksSent: 0,
    });
    return;
  }
  let description = withDtls(
    relay && remote.relayEndpoint
      ? describeWithRelay(prepared.description, relay, host.udpBlocked())
      : prepared.description,
    host.init.dtls,
    remote,
    // A caller that will pin only answers on the direct path: we are the DTLS client, so our
    // ClientHello leaves with our first checks instead of waiting for them to arrive (issue 19).
    sideThatPins(remote, prepared.description) === 'caller',
  );
  const active: ActiveCall = {
    socket: prepared.socket,
    rtcpSocket: prepared.rtcpSocket,
    sampledAtMs: prepared.sampledAtMs,
    sample: prepared.sample,
    leases: prepared.leases,
    ...(prepared.tcp ? { tcp: { localPort: prepared.tcp.localPort } } : {}),
    ended: false,
    // The callee can end the call too (a failed camera source): BYE goes to the caller.
    dialog: { user: peer },
    relay,
    peerRelayed: remote.relayEndpoint,
    routed: previous?.routed,
    relayOnly: previous?.relayOnly,
    ...(previous?.routed ? { dtls: previous.dtls, secure: previous.secure } : {}),
  };
  host.register(callId, active);
  if (active.ended) return; // the gateway closed while this call was being set up
  // Before answering: the caller may send relayed media as soon as it has the answer.
  await permitted;
  // Issue 19: a pin's rungs or birthday ports go out before the answer names our port.
  description = await prepareMapping(
    host.c,
    host.init,
    active,
    'callee',
    description,
    remote,
    // A TCP direct path (issue 21) pins nothing and opens no birthday ports: those are UDP.
    host.udpBlocked() || directTransport(description, remote) === 'tcp',
    (message) => host.emit('relay-error', message),
  );
  if (active.ended) return;
  const goArrived = new Promise<SyncFields>((resolve) => {
    active.go = resolve;
  });
  const ackArrived = new Promise<void>((resolve) => {
    active.acked = resolve;
  });
  respond(200, [['Content-Type', 'application/sdp']], encodeSdp(description, Math.floor(host.c.clock.now())));
  const straight = straightToRelay(description, remote);
  if ((remote.mode === 'sc2c' || remote.mode === 'sc2c-naive') && !straight) {
    // The caller pinned: its go names the pinned port and how many checks to send toward it.
    const tracking =
      sideThatPins(remote, description) === 'caller'
        ? trackDrift(host.c, host.init, active, description)
        : undefined;
    const { pin, birthday, fresh } = await goArrived;
    tracking?.stop();
    // The caller read its ports after its INVITE left (it meant to pin and did not): they replace
    // the offer's prediction.
    if (fresh && remote.portSource === 'predicted') remote = withFreshPorts(remote, fresh);
    if (isPortPin(pin) && remote.pin === 'capable' && description.portSource !== 'pinned') {
      remote = withPeerPin(remote, pin);
      active.pin = { side: 'remote' };
    }
    if (birthday !== undefined && birthdayHardSide(remote, description) === 'caller')
      remote = { ...remote, birthday };
  } else if (straight) await ackArrived; // the caller permitted us before its ACK
  const punched = straight ? undefined : host.punch(callId, description, remote, base);
  if (previous?.routed) {
    // A background attempt on an established call: only the direct path may change.
    const result = await punched;
    if (result?.ok && result.path && !active.ended) {
      previous.routed.setDirect(
        result.path.socket,
        result.path.remote,
        consentCredentials(description, remote),
      );
      previous.routed.use('direct', 'a fresh direct path confirmed');
    }
    return;
  }
  const settled = await settlePath(host.c, punched, host.routes.settleInit(active, description, remote));
  const attempts = host.attempts(callId);
  if (settled.kind === 'plain') {
    const outcome = { ...host.counted(active, await punched!), local: description, remote, attempts };
    host.emit('call', outcome.ok ? await host.secure(callId, active, outcome) : outcome);
    return;
  }
  const established = host.routes.established(
    callId,
    active,
    settled,
    base,
    straight,
    straight ? straightReason(description, remote) : undefined,
  );
  host.emit(
    'call',
    await host.secure(callId, active, { ...established, local: description, remote, attempts }),
  );
}
