/** What the gateway holds for each call in progress; shared by the gateway and its route keeper. */

import type { Endpoint } from '../net/address.ts';
import type { UdpSocket } from '../net/types.ts';
import type { DtlsEndpoint } from '../path/dtls-endpoint.ts';
import type { RoutedPath } from '../path/routed-path.ts';
import type { SecurePath } from '../path/secure-path.ts';
import type { SyncFields } from '../protocol/sc2c-info.ts';
import type { DriftEstimate } from '../traversal/drift.ts';
import type { PortLease } from '../traversal/port-mapper.ts';
import type { Puncher } from '../traversal/punch.ts';
import type { CallRelay } from './call-relay.ts';
import type { PortSample } from './media-setup.ts';

export interface ActiveCall {
  /** The media socket; birthday punching (issue 19) may replace it by the one whose mapping won. */
  socket: UdpSocket;
  /** Birthday punching on the hard side: the extra sockets, each with a mapping toward the peer. */
  birthday?: UdpSocket[];
  rtcpSocket?: UdpSocket;
  /** Our router's leases on this attempt's media ports (issue 20); released with its sockets. */
  leases?: readonly PortLease[];
  /** When the STUN sample behind our predicted port was taken (see `MediaSetup.sampledAtMs`). */
  sampledAtMs?: number;
  /** The port that sample read, and when its request left (our NAT chose the port then). */
  sample?: PortSample;
  /** A caller that meant to pin: the sample taken beside its offer (`MediaSetup.late`). */
  late?: Promise<PortSample | undefined>;
  /** How far our NAT's counter moved between that sample and the go (traversal/drift.ts). */
  drift?: DriftEstimate;
  rtcpPuncher?: Puncher;
  /** Set on calls we placed: what a BYE needs. */
  dialog?: { readonly user: string; readonly toTag?: string };
  puncher?: Puncher;
  /**
   * Releases the wait for the server's go, with what the other side's sync carried (issue 19): its
   * pinned port, how many birthday mappings it opened, its fresh ports.
   */
  go?: (fields: SyncFields) => void;
  /** This attempt's pin, once one side pinned (issue 19). */
  pin?: { readonly side: 'local' | 'remote'; readonly verified?: boolean };
  /** Resolves when the caller's ACK arrives (the callee starts relayed media after it). */
  acked?: () => void;
  ended: boolean;
  /** Issue 21: where our TCP punch connects from, and (once it connected) its framed connection. */
  tcp?: { readonly localPort: number; socket?: UdpSocket; puncher?: Puncher };
  /** The peer's answer said its UDP is blocked or it wants TCP: a retry offers a TCP candidate. */
  peerWantsTcp?: boolean;
  /** Ends a TCP punch still connecting when the attempt closes. */
  tcpAbort?: AbortController;
  /** The call's relay leg, kept across attempts. */
  relay?: CallRelay;
  /** The peer's relayed address, as last advertised. */
  peerRelayed?: Endpoint;
  /** Set once media may flow: later attempts only re-punch the direct path. */
  routed?: RoutedPath;
  /** True for a pair that cannot be punched (no background direct attempts). */
  relayOnly?: boolean;
  retrying?: boolean;
  /** The call's DTLS endpoint, from the start of its handshake. */
  dtls?: DtlsEndpoint;
  /** The encrypting path once the handshake finished. */
  secure?: SecurePath;
  /** Stops the early handshake's listener on the punch socket (the path carries DTLS from then on). */
  earlyOff?: () => void;
}
