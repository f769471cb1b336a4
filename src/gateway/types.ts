/** The gateway's public shapes: its options, components, call outcomes and events. */

import type { MediaRole } from '../media/negotiate.ts';
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import type { Route, RoutedPath } from '../path/routed-path.ts';
import type { SecurePath } from '../path/secure-path.ts';
import type { CallDescription, TraversalMode } from '../protocol/sdp.ts';
import type { SignalingClientInit } from '../signaling/client.ts';
import type { DriftEstimate } from '../traversal/drift.ts';
import type { PortMapperInit, PortMappingStatus } from '../traversal/port-mapper.ts';
import type { NatProbe } from '../traversal/probe.ts';
import type { PunchInit } from '../traversal/punch.ts';
import type { RelayConfig, RelayPath } from './call-relay.ts';
import type { DtlsInit } from './secure-call.ts';

export interface GatewayInit {
  readonly sip: SignalingClientInit;
  /** The STUN server (primary endpoint; its OTHER-ADDRESS gives the alternate). */
  readonly stunServer: Endpoint;
  /** Traversal mode for calls this gateway places. Default `sc2c`. */
  readonly mode?: TraversalMode;
  /** Punch timings, and `window`: how many forward candidates to cover on a peer's predicted port. Default 3. */
  readonly punch?: Pick<PunchInit, 'intervalMs' | 'timeoutMs' | 'keepaliveMs'> & {
    readonly window?: number;
    /**
     * Pin our mapping before the punch where our NAT allows it (issue 19, traversal/pin.ts).
     * Default true; false keeps the paper's prediction alone.
     */
    readonly pin?: boolean;
    /**
     * Our pin's window: we open `2·pinWindow - 1` rungs, so a peer's NAT may move up to
     * `2·pinWindow - 2` steps before its checks (traversal/pin.ts). Default 16, at most 32.
     */
    readonly pinWindow?: number;
    /**
     * Checks we send toward a peer's pinned port when we tracked our own NAT's drift while
     * waiting for the go (traversal/drift.ts): centred where our counter most likely is. Default 8.
     */
    readonly pinChecks?: number;
    /**
     * Toward a peer's pinned port, keep sampling our NAT's counter until the go and check where it
     * most likely is (issue 19, traversal/drift.ts). Default true; false checks from the prediction on.
     */
    readonly drift?: boolean;
    /**
     * Between two per-destination NATs that both predicted (neither could pin, e.g. both IPS): the
     * callee checks this many ports on the caller's step-2 ladder, the caller twice as many less
     * one, and drifts adding up to `crossWindow - 1` steps meet (traversal/predict.ts). Default 16,
     * at most 32; 1 turns it off.
     */
    readonly crossWindow?: number;
    /** TTL of the pinning rungs and of sc2c-ttl's primes: past our NAT, short of the peer's. Default 2. */
    readonly pinTtl?: number;
    /**
     * sc2c-ttl's priming TTL (issue 21). Unset: a gateway whose mode is sc2c-ttl reads it at start
     * from its NAT's counter (traversal/prime-ttl.ts), else `pinTtl`.
     */
    readonly primeTtl?: number;
    /** sc2c-ttl (issue 21): from the low-TTL primes to the first full checks. Default 100 ms. */
    readonly primeWaitMs?: number;
    /**
     * Birthday punching where our NAT allocates at random and the peer's keeps one mapping
     * (issue 19, traversal/birthday.ts). Default true: our NAT's ports are the ones probed.
     */
    readonly birthday?: boolean;
    /** Mappings the random side opens. Default 256, at most 1024. */
    readonly birthdayPorts?: number;
    /** Random ports the easy side probes. Default 2048. */
    readonly birthdayProbes?: number;
    /** Probes per second. Default 1000. */
    readonly birthdayRate?: number;
  };
  /** STUN retransmission timeout. Default 200 ms. */
  readonly stunRtoMs?: number;
  /**
   * Issue 21, which direct path to try: `udp` (UDP only; the default here, and what the paper
   * measured), `auto` (UDP where both sides have it; a TCP simultaneous open where either side's
   * UDP is blocked, or the peer asks for TCP), `tcp` (a TCP direct path only). Not `udp`: a TCP
   * probe (STUN Binding over TCP at `stunServer`) runs at start, before the UDP one.
   */
  readonly transport?: DirectTransport;
  /** Punch attempts per SC2C call, each with a fresh prediction (re-INVITE). Default 3. */
  readonly maxAttempts?: number;
  /** Offer RTCP on the RTP port (RFC 5761). Default true; false offers and uses a separate RTCP port. */
  readonly rtcpMux?: boolean;
  /** What this endpoint does with media (offer and answer); default: H.264 both ways, no checks. */
  readonly media?: MediaRole;
  /** A NAT probe measured earlier (the gateway caches its probe); default: probe at start. */
  readonly probe?: NatProbe;
  /** Re-probe the NAT this often (a home router can be swapped or rebooted). Default 600 000 ms; 0 = never. */
  readonly probeRefreshMs?: number;
  /** Reconnect backoff after the signaling connection drops: first delay, doubled up to the maximum. */
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number };
  /**
   * Issue 24: the other nodes of the signaling service, after `sip.server`. When the connection
   * drops, the gateway registers with the next one at once (then the one after, cycling, with the
   * backoff). Each node runs its own STUN server and relay: `stunServer` and `relay.server` on
   * `sip.server`'s host move to the host of the node in use (same ports); others stay.
   */
  readonly failover?: readonly Endpoint[];
  /** A TURN relay for calls no direct path serves (issue 6); omit for direct only. Needs rtcp-mux. */
  readonly relay?: RelayConfig;
  /**
   * Who may call this gateway, by the identity the server asserts (`P-Asserted-Identity`); others
   * get 403 before any media is set up. Omit to rely on the server's access list alone.
   */
  readonly allowedCallers?: readonly string[];
  /** Calls at once; a new INVITE beyond gets 486 Busy Here before any media is set up. Default 16. */
  readonly maxCalls?: number;
  /**
   * Issue 22: how often a call we placed reports its route and bytes to the server (an in-dialog
   * INFO the server keeps for its admin page), besides at once on every route change. Default
   * 5000 ms; 0 sends none.
   */
  readonly statusIntervalMs?: number;
  /**
   * Issue 22: register again once the NAT probe is done, so the server's camera list shows our NAT
   * class from the start (the first REGISTER goes before the probe). Default true.
   */
  readonly reportNat?: boolean;
  /**
   * Ask our router to map each call's media port (issue 20): PCP, NAT-PMP or UPnP IGD, to `gateway`
   * (the default router; the CLI reads it from the routing table). Detected once at start, beside
   * the NAT probe; omit to never ask.
   */
  readonly portMapping?: Omit<PortMapperInit, 'clientAddress'> & {
    /** Our address on the router's LAN. Default: the signaling connection's local address. */
    readonly clientAddress?: string;
  };
  /**
   * DTLS-SRTP on every call (issue 17): our certificate and handshake timings. Omit for plain RTP
   * (`--insecure-media`); a gateway with it refuses calls whose peer does not encrypt.
   */
  readonly dtls?: DtlsInit;
}

export const DIRECT_TRANSPORTS = ['udp', 'auto', 'tcp'] as const;
export type DirectTransport = (typeof DIRECT_TRANSPORTS)[number];

export interface GatewayComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface CallOutcome {
  readonly callId: string;
  readonly role: 'caller' | 'callee';
  readonly peer: string;
  readonly mode: TraversalMode;
  readonly ok: boolean;
  /** Why the call or its direct path failed, on failure. */
  readonly reason?: string;
  /** Clock time the call started here (INVITE sent or received) and the path was confirmed. */
  readonly startedAtMs: number;
  readonly confirmedAtMs?: number;
  readonly local?: CallDescription;
  readonly remote?: CallDescription;
  /** The confirmed pair: our media socket and the peer endpoint that answered. */
  readonly path?: {
    readonly socket: UdpSocket;
    readonly remote: Endpoint;
    /** The RTCP pair, when RTCP does not share the RTP port. */
    readonly rtcp?: { readonly socket: UdpSocket; readonly remote: Endpoint };
  };
  readonly checksSent: number;
  /**
   * How old our port prediction was when the first checks left: from the STUN sample it came
   * from to the punch (issue 19 drives it down). Absent when our port was observed, not predicted.
   */
  readonly predictionAgeMs?: number;
  /**
   * Which side pinned its mapping before the punch (issue 19): `local` (ours; our prediction age is
   * then 0: the port was read after the mapping was opened), `remote`, or absent (neither).
   */
  readonly pinned?: 'local' | 'remote';
  /** Our pin's two STUN samples agreed (no other session between the rungs). Local pins only. */
  readonly pinVerified?: boolean;
  /**
   * Facing a pinned peer: how far our NAT's counter had moved, in steps, from our prediction's
   * sample to the go (traversal/drift.ts), and the background rate the samples measured.
   */
  readonly drift?: DriftEstimate;
  /** The direct path's transport (issue 21): `tcp` for a TCP simultaneous open; absent for UDP. */
  readonly transport?: 'tcp';
  /** Connects the TCP punch tried (a reset one counts), on a TCP attempt. */
  readonly tcpConnects?: number;
  /** Which relay path carries what is relayed to us (issue 23), when a relay is in play. */
  readonly relayPath?: RelayPath;
  /** Where media goes when a relay is in play: `direct` or `relay`. Absent without a relay. */
  readonly route?: Route;
  /** The switchable path (same object as `path`) when a relay is in play: route changes and byte counts. */
  readonly routed?: RoutedPath;
  /** Why the direct path did not open, when the call went to the relay. */
  readonly directReason?: string;
  /** `DTLS-SRTP <profile>` or `none`, once the path is settled. */
  readonly encryption?: string;
  /** How long the DTLS handshake took on the settled path (included in the setup time). */
  readonly dtlsMs?: number;
  /** The encrypting path (same object as `path`): SRTP counters. */
  readonly secure?: SecurePath;
  /** Offer/answer and punch rounds this call took (a failed SC2C punch is retried with a fresh prediction). */
  readonly attempts?: number;
}

export type GatewayEvents = {
  /** A call this gateway answered has an outcome. */
  call: [outcome: CallOutcome];
  /** The signaling connection dropped; `retryInMs` until the next attempt. */
  disconnected: [reason: string, retryInMs: number];
  /** Connected and registered again after a drop. */
  /** Registered again, with this server (another node after a failover, issue 24). */
  reconnected: [server: Endpoint];
  /** The peer ended a call (BYE or CANCEL). */
  ended: [callId: string, reason: string];
  /**
   * A call's media is over, whoever ended it (BYE either way, CANCEL, close): its counters are
   * final. `failure` says why when it ended badly: this side hung up with a reason (a silent peer,
   * a failed encoder), or the peer's BYE carried one.
   */
  closed: [callId: string, failure?: string];
  /** Media of an established call moved between the direct path and the relay. */
  route: [callId: string, route: Route, why: string];
  /** The relay could not be used (allocation, permission or renewal failed); calls go on without it. */
  'relay-error': [reason: string];
  /** What asking our router for a mapping found at start (issue 20): a grant, or why none. */
  'port-mapping': [status: PortMappingStatus];
  /**
   * A lease on a media port changed (issue 20): renewed, moved to another external port, lost
   * (renewals failed until it ran out), or `reset` (the router's epoch says it lost every mapping).
   */
  lease: [event: 'renewed' | 'moved' | 'lost' | 'reset', detail: string];
};
