/**
 * The punch for one call attempt's media pair (paper steps 20-21): connectivity checks from the RTP
 * socket, and from the RTCP socket when either side declined rtcp-mux. Both must be confirmed.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import { checkPlan, type DriftEstimate } from '../traversal/drift.ts';
import { checksTowardPinned, DEFAULT_PIN_CHECKS } from '../traversal/pin.ts';
import {
  candidateWindow,
  checksPeerGuess,
  crossLadder,
  DEFAULT_CROSS_WINDOW,
  windowSize,
} from '../traversal/predict.ts';
import { advertisedStep, type NatProbe } from '../traversal/probe.ts';
import { Puncher, type PunchInit } from '../traversal/punch.ts';
import { punchEasy, punchHard } from './birthday-punch.ts';

/** A call attempt's sockets and checkers; `punchPair` fills in the checkers and may close `rtcpSocket`. */
export interface MediaPair {
  socket: UdpSocket;
  rtcpSocket?: UdpSocket;
  /** How far our NAT's counter moved while we waited for the go (traversal/drift.ts). */
  drift?: DriftEstimate;
  /** Birthday punching, hard side: more sockets with mappings toward the peer (traversal/birthday.ts). */
  birthday?: UdpSocket[];
  puncher?: Puncher;
  rtcpPuncher?: Puncher;
}

export type PairResult =
  | {
      readonly ok: true;
      readonly path: {
        readonly socket: UdpSocket;
        readonly remote: Endpoint;
        readonly rtcp?: { readonly socket: UdpSocket; readonly remote: Endpoint };
      };
      readonly checksSent: number;
    }
  | { readonly ok: false; readonly reason: string; readonly checksSent: number };

export async function punchPair(
  c: { readonly clock: Clock; readonly transactionId?: () => Uint8Array },
  pair: MediaPair,
  local: CallDescription,
  remote: CallDescription,
  init: Pick<PunchInit, 'intervalMs' | 'timeoutMs' | 'keepaliveMs' | 'prime'> & {
    readonly pinChecks?: number;
    readonly crossWindow?: number;
  },
  own: Pick<NatProbe, 'publicAddress' | 'mapping' | 'filtering' | 'ips'>,
  window = 1,
  birthday?: { readonly probes?: number; readonly ratePerSecond?: number },
  role?: 'caller' | 'callee',
): Promise<PairResult> {
  // RTCP gets its own pair only when either side declined mux; an unused RTCP socket never sent,
  // so it opened no NAT session.
  const mux = local.rtcpMux && remote.rtcpMux;
  if (mux && pair.rtcpSocket) {
    pair.rtcpSocket.close();
    pair.rtcpSocket = undefined;
  }
  if (!mux && !(pair.rtcpSocket && remote.rtcpEndpoint)) {
    return {
      ok: false,
      reason: 'no RTCP port to punch: the peer declined rtcp-mux without an a=rtcp port',
      checksSent: 0,
    };
  }
  // Issue 19: birthday punching between a random-port NAT and an easy one (traversal/birthday.ts).
  if (mux && local.birthday !== undefined && pair.birthday) return punchHard(c, pair, local, remote, init);
  const components = (socket: UdpSocket) => ({ socket, clock: c.clock, transactionId: c.transactionId });
  const puncher = new Puncher(components(pair.socket), { local, remote, ...init });
  const rtcpPuncher = mux ? undefined : new Puncher(components(pair.rtcpSocket!), { local, remote, ...init });
  pair.puncher = puncher;
  pair.rtcpPuncher = rtcpPuncher;
  // A host candidate only helps behind the same public address (same LAN or hairpin, Ford et al. §3).
  // Where the peer's port may have moved on (background traffic), cover a few steps past it.
  const step = advertisedStep(remote.nat);
  const size = windowSize(own, step, remote.portSource, window);
  const around = (endpoint: Endpoint) =>
    checksPeerGuess(own, local.portSource, remote.portSource)
      ? candidateWindow(endpoint, step ?? 1, size)
      : [];
  // Issue 19: a pinned side only answers (its rungs wait for the peer's checks); its peer sends
  // check j to the pinned port plus 2j steps, so the one matching how far its own NAT moved lands.
  // Issue 19: two per-destination NATs that both predicted (neither could pin) check crossed ladders.
  const crossed =
    role !== undefined &&
    mux &&
    local.mode === 'sc2c' &&
    local.portSource === 'predicted' &&
    remote.portSource === 'predicted' &&
    step !== null &&
    (init.crossWindow ?? DEFAULT_CROSS_WINDOW) > 1;
  // Issue 20: a mapped port is open to anyone, so the peer checks exactly it, and the mapped side
  // only answers: sending first would open an ordinary session toward the peer, and a router that
  // forwards its lease with a DNAT rule alone (miniupnpd) would then find the peer's checks
  // clashing with it. Both mapped: the caller checks, the callee answers.
  const passive =
    local.portSource === 'pinned' ||
    (local.portSource === 'mapped' && !(remote.portSource === 'mapped' && role === 'caller'));
  const publicCandidates = passive
    ? []
    : remote.portSource === 'mapped'
      ? [remote.publicEndpoint]
      : crossed
        ? crossLadder(remote.publicEndpoint, step, role, init.crossWindow ?? DEFAULT_CROSS_WINDOW)
        : remote.portSource === 'pinned' && typeof remote.pin === 'number'
          ? checksTowardPinned(
              remote.publicEndpoint,
              step ?? 1,
              remote.pin,
              checkPlan(2 * remote.pin - 1, pair.drift, init.pinChecks ?? DEFAULT_PIN_CHECKS),
            )
          : around(remote.publicEndpoint);
  const candidates =
    remote.hostEndpoint && remote.publicEndpoint.address === own.publicAddress
      ? [remote.hostEndpoint, ...publicCandidates]
      : publicCandidates;
  if (mux && remote.birthday !== undefined) {
    const host =
      remote.hostEndpoint && remote.publicEndpoint.address === own.publicAddress ? [remote.hostEndpoint] : [];
    return punchEasy(c, puncher, pair.socket, remote, host, birthday?.probes, birthday?.ratePerSecond);
  }
  try {
    // RTP's first check leaves before RTCP's: the order the ports were predicted in.
    const [success, rtcpSuccess] = await Promise.all([
      puncher.punch(candidates),
      rtcpPuncher?.punch(
        passive ? [] : remote.portSource === 'mapped' ? [remote.rtcpEndpoint!] : around(remote.rtcpEndpoint!),
      ),
    ]);
    return {
      ok: true,
      path: {
        socket: pair.socket,
        remote: success.remote,
        rtcp:
          rtcpSuccess && pair.rtcpSocket
            ? { socket: pair.rtcpSocket, remote: rtcpSuccess.remote }
            : undefined,
      },
      checksSent: success.checksSent + (rtcpSuccess?.checksSent ?? 0),
    };
  } catch (error) {
    puncher.close();
    rtcpPuncher?.close();
    return {
      ok: false,
      reason: `no direct path: ${(error as Error).message}`,
      checksSent: puncher.counters.checksSent,
    };
  }
}
