/**
 * Media setup for one call attempt: opens the RTP socket (and an RTCP socket unless RTCP is muxed)
 * and works out the public endpoints to advertise: observed with STUN, or predicted from the NAT's
 * allocation step right before the call (paper steps 5-8), per `planPort`.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import type { CallDescription, MediaLine, PortSource, TraversalMode } from '../protocol/sdp.ts';
import type { PortLease, PortMapper } from '../traversal/port-mapper.ts';
import { planPort } from '../traversal/predict.ts';
import { describeProbe, freshPort, type NatProbe } from '../traversal/probe.ts';
import { stunBinding } from '../traversal/stun-client.ts';

/**
 * `mux`: RTCP shares the RTP port. `offer-both` (an offerer that can mux) advertises rtcp-mux and a
 * separate RTCP port, as RFC 5761 §5.1.1 asks; the RTCP socket is only used if the answer declines
 * mux. `separate`: RTCP has its own port.
 */
export type RtcpPlan = 'mux' | 'offer-both' | 'separate';

export interface MediaSetupComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface MediaSetupInit {
  readonly stunServer: Endpoint;
  readonly stunRtoMs: number;
  readonly probe: NatProbe;
  /** Our address on the LAN, advertised as the host candidate. */
  readonly hostAddress: string;
  readonly mode: TraversalMode;
  readonly rtcp: RtcpPlan;
  /** The m= lines to advertise. */
  readonly media?: readonly MediaLine[];
  /** Offer to pin our mapping before the punch where our NAT allows it (traversal/pin.ts). Default true. */
  readonly pin?: boolean;
  /**
   * We are the caller and will pin when the answer comes (issue 19): the pin reads our port after
   * its rungs, so the offer's prediction only matters if the pin fails, and the fresh sample it
   * would cost (a STUN round trip before the INVITE) is skipped: the offer predicts from the
   * probe's newest port, and a failed attempt's re-INVITE samples afresh. Default false.
   */
  readonly pinLater?: boolean;
  /**
   * Issue 20: ask our router for the media port(s) (PCP or NAT-PMP, traversal/port-mapper.ts); a
   * grant on our own public address is advertised as it is (`portSource: 'mapped'`), in place of
   * an observed or predicted port. Only in the SC2C modes: the paper's baselines stay as published.
   */
  readonly mapper?: PortMapper;
}

export interface MediaSetup {
  readonly socket: UdpSocket;
  readonly rtcpSocket?: UdpSocket;
  readonly description: CallDescription;
  /**
   * When the STUN sample behind a predicted port was taken (clock ms); absent for an observed
   * or unpredictable port. Issue 19: the older it is at the punch, the more other sessions through
   * a busy NAT may have taken the predicted port.
   */
  readonly sampledAtMs?: number;
  /** The port that sample read (the predicted port is the next one on our step) and when it left. */
  readonly sample?: PortSample;
  /**
   * With `pinLater`: the sample taken beside the offer (undefined when STUN did not answer). The
   * offer's own prediction came from the probe's newest port.
   */
  readonly late?: Promise<PortSample | undefined>;
  /** The router's leases on our media ports (issue 20), released when the attempt's media closes. */
  readonly leases?: readonly PortLease[];
}

/** A STUN sample of our NAT's port counter: the port it read, and when its request left. */
export interface PortSample {
  readonly port: number;
  readonly sentAtMs: number;
}

/**
 * The ports our media sockets' first packets will take after a sample read `last`: the next on our
 * step, and the one after it for a separate RTCP socket. Pure.
 */
export function predictedPorts(
  probe: NatProbe,
  last: number,
  rtcp: boolean,
): { readonly port: number; readonly rtcpPort?: number } {
  const next = planPort(probe, last);
  const port = next.kind === 'predict' ? next.port : last;
  if (!rtcp) return { port };
  const after = planPort(probe, port);
  return { port, rtcpPort: after.kind === 'predict' ? after.port : port };
}

/**
 * Whether we can pin our mapping (traversal/pin.ts): our NAT maps per destination with a known
 * step, is known not to be IPS (the rungs draw ICMP time-exceeded errors), RTCP can share the port.
 */
export function canPin(probe: NatProbe, mode: TraversalMode, rtcp: RtcpPlan): boolean {
  return (
    mode === 'sc2c' &&
    rtcp !== 'separate' &&
    !probe.udpBlocked &&
    probe.mapping !== 'endpoint-independent' &&
    probe.allocation === 'sequential' &&
    probe.delta !== null &&
    probe.ips === false
  );
}

/**
 * Leases for the RTP socket and (when there is one) the RTCP socket, or undefined when the router
 * refused either or granted an address that is not our public one (another NAT lies beyond it:
 * its grant would be unreachable). Whatever was granted then is released again.
 */
async function leasePorts(
  mapper: PortMapper,
  publicAddress: string,
  socket: UdpSocket,
  rtcpSocket: UdpSocket | undefined,
): Promise<{ endpoint: Endpoint; rtcpEndpoint?: Endpoint; leases: PortLease[] } | undefined> {
  const results = await Promise.all([
    mapper.map(socket.local.port),
    ...(rtcpSocket ? [mapper.map(rtcpSocket.local.port)] : []),
  ]);
  const leases = results.flatMap((r) => (r.ok ? [r.lease] : []));
  const usable =
    leases.length === results.length && leases.every((l) => l.mapping.externalAddress === publicAddress);
  if (!usable) {
    await Promise.all(leases.map((l) => l.release()));
    return undefined;
  }
  const at = (lease: PortLease): Endpoint => ({
    address: lease.mapping.externalAddress,
    port: lease.mapping.externalPort,
  });
  return { endpoint: at(leases[0]!), rtcpEndpoint: leases[1] && at(leases[1]), leases };
}

/**
 * The RTP socket's first packet goes out first, so a predicted RTCP port is the one after the RTP
 * port. On failure every socket opened here is closed.
 */
export async function setUpMedia(c: MediaSetupComponents, init: MediaSetupInit): Promise<MediaSetup> {
  const socket = await c.network.bindUdp();
  let rtcpSocket: UdpSocket | undefined;
  let leased: Awaited<ReturnType<typeof leasePorts>>;
  try {
    if (init.rtcp !== 'mux') rtcpSocket = await c.network.bindUdp();
    const stun = { clock: c.clock, transactionId: c.transactionId };
    const observe = async (on: UdpSocket): Promise<Endpoint> => {
      const result = await stunBinding(on, stun, {
        server: init.stunServer,
        rtoMs: init.stunRtoMs,
        attempts: 4,
      });
      if (!result) throw new Error('no STUN answer for the media socket');
      return result.mapped;
    };
    let publicEndpoint: Endpoint;
    let rtcpEndpoint: Endpoint | undefined;
    let portSource: PortSource;
    let sampledAtMs: number | undefined;
    let sample: PortSample | undefined;
    let late: Promise<PortSample | undefined> | undefined;
    leased =
      init.mapper && !init.probe.udpBlocked && (init.mode === 'sc2c' || init.mode === 'sc2c-naive')
        ? await leasePorts(init.mapper, init.probe.publicAddress, socket, rtcpSocket)
        : undefined;
    // SC2C takes an endpoint-independent mapping as it is; the paper's C2C baseline predicts it.
    const plan = planPort(init.probe, 0, {
      exactWhenIndependent: init.mode === 'sc2c' || init.mode === 'sc2c-naive' || init.mode === 'sc2c-ttl',
    });
    if (leased) {
      publicEndpoint = leased.endpoint;
      rtcpEndpoint = leased.rtcpEndpoint;
      portSource = 'mapped';
    } else if (init.probe.udpBlocked) {
      // No STUN answers: nothing to observe or predict. The relay's view of our address replaces
      // the 0.0.0.0 here once it is allocated (describeWithRelay).
      publicEndpoint = { address: init.probe.publicAddress, port: socket.local.port };
      if (rtcpSocket) rtcpEndpoint = { address: init.probe.publicAddress, port: rtcpSocket.local.port };
      portSource = 'unpredictable';
    } else if (init.mode === 'stun' || plan.kind !== 'predict') {
      publicEndpoint = await observe(socket);
      if (rtcpSocket) rtcpEndpoint = await observe(rtcpSocket);
      portSource = init.mode === 'stun' ? 'stun' : plan.kind === 'observe' ? 'exact' : 'unpredictable';
    } else {
      const pinLater =
        init.pinLater === true && init.pin !== false && canPin(init.probe, init.mode, init.rtcp);
      const take = async () => {
        const sentAtMs = c.clock.now();
        const port = await freshPort(
          { network: c.network, ...stun },
          { server: init.stunServer, rtoMs: init.stunRtoMs },
        );
        return { port, sentAtMs };
      };
      if (pinLater) {
        // The offer predicts from the probe's newest port; the sample runs beside the INVITE, for
        // the sync to correct the offer should the pin not happen.
        sample = { port: init.probe.lastPort, sentAtMs: init.probe.measuredAtMs };
        sampledAtMs = init.probe.measuredAtMs;
        late = take().catch(() => undefined);
      } else {
        // Steps 5-8 right before the call: the newest port; the media socket's first packet takes the next.
        sample = await take();
        sampledAtMs = c.clock.now();
      }
      const ports = predictedPorts(init.probe, sample.port, rtcpSocket !== undefined);
      publicEndpoint = { address: init.probe.publicAddress, port: ports.port };
      if (ports.rtcpPort !== undefined)
        rtcpEndpoint = { address: init.probe.publicAddress, port: ports.rtcpPort };
      portSource = 'predicted';
    }
    const description: CallDescription = {
      publicEndpoint,
      hostEndpoint: { address: init.hostAddress, port: socket.local.port },
      ufrag: randomBytes(6).toString('hex'),
      pwd: randomBytes(18).toString('base64url'),
      nat: describeProbe(init.probe),
      mode: init.mode,
      media: init.media,
      portSource,
      rtcpMux: init.rtcp !== 'separate',
      rtcpEndpoint,
      ...(portSource === 'predicted' && init.pin !== false && canPin(init.probe, init.mode, init.rtcp)
        ? { pin: 'capable' as const }
        : {}),
    };
    return { socket, rtcpSocket, description, sampledAtMs, sample, late, leases: leased?.leases };
  } catch (error) {
    socket.close();
    rtcpSocket?.close();
    for (const lease of leased?.leases ?? []) void lease.release();
    throw error;
  }
}
