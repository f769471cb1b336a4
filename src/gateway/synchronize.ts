/**
 * The caller's side of paper step 17 (the sync, and the wait for the server's go), with what issue
 * 19 puts before it: our pin's rungs (the sync carries the pinned port, or names the STUN Binding
 * the server reads it from), the ports sampled beside the offer when no pin happened, and the
 * tracking of our own NAT's drift when the callee pinned.
 */
import type { FreshField, SyncFields } from '../protocol/sc2c-info.ts';
import type { CallDescription, TraversalMode } from '../protocol/sdp.ts';
import type { SignalingClient } from '../signaling/client.ts';
import { SC2C_CONTENT_TYPE } from '../signaling/server.ts';
import type { NatProbe } from '../traversal/probe.ts';
import type { ActiveCall } from './active-call.ts';
import { predictedPorts } from './media-setup.ts';
import { directTransport } from './path-policy.ts';
import { prepareMapping, trackDrift, withFreshPorts } from './pin-call.ts';
import type { GatewayComponents, GatewayInit } from './types.ts';

/** How long a caller waits for the server's go after its sync was accepted. */
export const GO_TIMEOUT_MS = 5000;

export interface SynchronizeHost {
  readonly c: GatewayComponents;
  readonly init: GatewayInit;
  readonly probe: NatProbe;
  readonly signaling: SignalingClient;
  /** A step that failed without failing the call (a pin without a STUN answer). */
  report(message: string): void;
}

export interface SynchronizeCall {
  readonly callId: string;
  readonly user: string;
  readonly mode: TraversalMode;
  readonly toTag: string | undefined;
  readonly active: ActiveCall;
  readonly local: CallDescription;
  readonly remote: CallDescription;
  /** The call's first attempt (a retry pins the classic way and samples afresh). */
  readonly first: boolean;
}

/**
 * Asks the server for the synchronized go and waits for it. When we are the side that pins, the
 * rungs go out first and the sync carries our pinned port, which the server hands the callee in
 * its go. Resolves with our description as punched.
 */
export async function synchronizeCaller(
  host: SynchronizeHost,
  call: SynchronizeCall,
): Promise<CallDescription> {
  const { c, init, probe, signaling } = host;
  const { callId, user, mode, toTag, active, local, remote, first } = call;
  // The callee pinned before answering: our counter's drift until the go places our checks.
  const tracking = remote.portSource === 'pinned' ? trackDrift(c, init, active, local) : undefined;
  if (remote.portSource === 'pinned') active.pin = { side: 'remote' };
  // Set before any sync leaves: a go can follow an early sync before our pin has read its port.
  const goArrived = new Promise<void>((resolve) => {
    active.go = () => resolve();
  });
  const sync = (fields: SyncFields) =>
    signaling.request('INFO', signaling.uri(user), [['Content-Type', SC2C_CONTENT_TYPE]], {
      callId,
      toTag,
      body: JSON.stringify({
        type: 'sync',
        schedule: mode === 'sc2c-naive' ? 'naive' : 'timed',
        ...fields,
      }),
    });
  // Issue 19: where the server runs our STUN server, it reads our pinned port from the Binding
  // sent right after the rungs: the sync leaves with them, a STUN round trip before we know it.
  let early: ReturnType<typeof sync> | undefined;
  const observed =
    first && signaling.observedPin && init.stunServer.address === signaling.connection.stream.remote.address;
  let punched = await prepareMapping(
    c,
    init,
    active,
    'caller',
    local,
    remote,
    probe.udpBlocked === true || directTransport(local, remote) === 'tcp',
    (message) => host.report(message),
    observed
      ? (pin) => {
          early = sync({ pin });
          // Awaited below, after the pin's STUN answers: a connection lost meanwhile must not
          // surface as an unhandled rejection first.
          early.catch(() => {});
        }
      : undefined,
  );
  // We meant to pin and did not (the answer declined rtcp-mux, STUN failed): our offer predicted
  // from the probe, the sample taken beside it is fresher, and the sync carries it (issue 19).
  const late = punched.portSource === 'predicted' ? await active.late : undefined;
  let fresh: FreshField | undefined;
  if (late) {
    fresh = predictedPorts(probe, late.port, punched.rtcpEndpoint !== undefined);
    punched = withFreshPorts(punched, fresh);
    active.sample = late;
    active.sampledAtMs = c.clock.now();
  }
  const answer = await (early ??
    sync({
      ...(punched.portSource === 'pinned' && typeof punched.pin === 'number'
        ? { pin: { port: punched.publicEndpoint.port, window: punched.pin } }
        : {}),
      ...(punched.birthday !== undefined ? { birthday: punched.birthday } : {}),
      ...(fresh ? { fresh } : {}),
    }));
  // Refused (rate-limited, a field out of range): no go will come. A go lost on the way: none
  // either. The attempt goes on unsynchronized rather than wait for ever.
  if (answer.status !== 200) {
    tracking?.stop();
    return punched;
  }
  let timer: ReturnType<typeof c.clock.setTimeout> | undefined;
  await Promise.race([
    goArrived,
    new Promise<void>((resolve) => {
      timer = c.clock.setTimeout(resolve, GO_TIMEOUT_MS);
    }),
  ]);
  timer?.clear();
  tracking?.stop();
  return punched;
}
