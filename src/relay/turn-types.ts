/** The TURN server's options and counters. */
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import type { StreamConnection, UdpSocket } from '../net/types.ts';
import type { CredentialStore } from './credentials.ts';

/**
 * A client's transport address: a UDP source, or the far end of a TCP connection (RFC 8656 §3.1),
 * which then carries every answer and every byte relayed to that client.
 */
export interface TurnClientAddress extends Endpoint {
  readonly stream?: StreamConnection;
}

/** The key of a client's allocation: its 5-tuple, transport included. */
export function clientKey(client: TurnClientAddress): string {
  return client.stream ? `tcp/${formatEndpoint(client)}` : formatEndpoint(client);
}

export interface TurnServerInit extends CredentialStore {
  /** Where clients reach the server, e.g. 198.18.0.10:3478. */
  readonly listen: Endpoint;
  /** The address relayed sockets bind to and advertise (default: the listen address). */
  readonly relayAddress?: string;
  readonly realm: string;
  /** Allocations one user may hold at once (486 beyond). Default 10. */
  readonly userQuota?: number;
  /** Allocations in total (508 beyond). Default 1000. */
  readonly capacity?: number;
  /**
   * Allocations held from one source address, whatever the user (486 beyond). Default 100: the
   * gateways of one site share its NAT's address, and one source cannot take the whole capacity.
   */
  readonly perSourceQuota?: number;
  /** A TCP or TLS client that holds no allocation this long after connecting is closed. Default 10 000 ms. */
  readonly unallocatedIdleMs?: number;
  /**
   * Bytes queued on a TCP client's connection beyond which relayed data for it is dropped (UDP's
   * semantics) rather than buffered without bound. Default 256 KiB.
   */
  readonly maxQueuedBytes?: number;
  /** Nonce lifetime; an older nonce gets 438. Default 10 min. */
  readonly nonceLifetimeMs?: number;
  /** Unauthenticated requests per second per source address (burst twice that). Default 20. */
  readonly unauthenticatedPerSecond?: number;
  /** Peer ranges refused with 403 (CIDR). Default `DEFAULT_DENIED_PEERS`. */
  readonly deniedPeers?: readonly string[];
  /** Exceptions to `deniedPeers` (the lab's own ranges). */
  readonly allowedPeers?: readonly string[];
  /**
   * Datagrams from clients larger than this are dropped and counted; over TCP a larger frame closes
   * the connection. Default 2048.
   */
  readonly maxDatagramBytes?: number;
  readonly software?: string;
  /** Forwards latched raw-relay allocations in the kernel (issue 23); without it, userspace. */
  readonly offload?: RelayOffload;
  /**
   * Issue 23, many cores: relay shards in processes of their own. A UDP client's authenticated
   * Allocate is answered 300 (Try Alternate) with the shard `pick` names; TCP and TLS clients
   * stay here. `pick` may refuse instead (the user's quota across every shard, or no shard up).
   */
  readonly shards?: TurnShardPicker;
  /**
   * Forwards UDP clients' bound channels outside this event loop (issue 23: the native data plane);
   * only when the listening and relayed sockets are its own. Without it, the forwarding path here.
   */
  readonly channelPlane?: ChannelPlane;
}

/** Chooses the relay shard for a new UDP allocation of `user` (the quota user), or refuses it. */
export interface TurnShardPicker {
  pick(user: string): Endpoint | { readonly code: 486 | 508; readonly why: string };
}

/**
 * Kernel forwarding of raw-relay allocations: datagrams from `peer` to `relayed` go on to
 * `client`, from `relayed`, without reaching this process (at the ingress hook: an eBPF program,
 * bpf-offload.ts, or nftables rules, nft-offload.ts).
 */
export interface RelayOffload {
  install(id: number, route: { relayed: Endpoint; client: Endpoint; peer: Endpoint }): Promise<void>;
  /** Removes its rules, so the kernel forwards nothing more for it. Idempotent. */
  remove(id: number): Promise<void>;
  /** Packets and UDP payload bytes the kernel forwarded per installed id, since its install. */
  counters(): Promise<ReadonlyMap<number, { packets: number; bytes: number }>>;
  close(): Promise<void>;
}

/** What a channel route forwarded, both ways. */
export interface RouteCounts {
  readonly packetsToPeer: number;
  readonly bytesToPeer: number;
  readonly packetsToClient: number;
  readonly bytesToClient: number;
}

/** One bound channel of a UDP client, for a `ChannelPlane` to forward both ways. */
export interface ChannelRoute {
  /** The server's socket the client sends to, and the allocation's relayed socket. */
  readonly listener: UdpSocket;
  readonly relay: UdpSocket;
  readonly client: Endpoint;
  readonly channel: number;
  readonly peer: Endpoint;
  /** What the plane forwarded since it last said; `gone` on the last call (removed or refused). */
  counted(delta: RouteCounts, gone: boolean): void;
}

/**
 * A data plane that forwards bound channels' ChannelData itself (issue 23: native/relayd.c), on
 * sockets it owns. Datagrams it does not forward reach the sockets' owners as usual.
 */
export interface ChannelPlane {
  /** True when `socket` is the plane's own, so it can forward on it. */
  owns(socket: UdpSocket): boolean;
  /** Starts forwarding; the route's id, or undefined when the plane cannot take it. */
  add(route: ChannelRoute): number | undefined;
  /** Stops forwarding; the route's `counted` gets its last counts. */
  remove(id: number): void;
  /** Asks for the counters; routes' `counted` get them when they come. */
  poll(): void;
  /** Datagrams the plane dropped because this process was not reading, and sends that failed, as last read. */
  readonly droppedUp: number;
  readonly sendFailures: number;
}

export interface TurnCounters {
  requests: number;
  allocations: number;
  unauthorized: number;
  staleNonce: number;
  forbidden: number;
  quotaExceeded: number;
  badRequest: number;
  mismatch: number;
  malformed: number;
  oversized: number;
  rateLimited: number;
  /** Relayed traffic, client -> peer and peer -> client. */
  packetsToPeers: number;
  bytesToPeers: number;
  packetsToClients: number;
  bytesToClients: number;
  /** Data a permission or channel did not cover (dropped, RFC 8656 §9). */
  unpermitted: number;
  /** TCP connections from clients: accepted in all, and refused at the connection limit. */
  tcpConnections: number;
  tcpRefused: number;
  /** TCP/TLS clients closed for holding no allocation after `unallocatedIdleMs`. */
  tcpIdleClosed: number;
  /** Allocate requests dropped while the same 5-tuple's first one was still being served. */
  allocateInFlight: number;
  /** Relayed packets dropped because a TCP client was not reading (its queue was full). */
  backpressureDrops: number;
  /** Raw relay (issue 23): latches accepted and refused; allocations the kernel forwards for, and failed installs. */
  latches: number;
  latchesRefused: number;
  kernelInstalls: number;
  kernelFailures: number;
  /** Packets and bytes the kernel forwarded (read at each sweep; also in the totals above). */
  kernelPackets: number;
  kernelBytes: number;
  /** Allocates answered 300 (Try Alternate) toward a relay shard. */
  redirected: number;
  /** Channels the native data plane forwards for now, and what it forwarded (also in the totals). */
  nativeRoutes: number;
  nativePackets: number;
  nativeBytes: number;
  /** The plane's losses, as last read: datagrams it could not pass up, and sends that failed. */
  nativeDroppedUp: number;
  nativeSendFailures: number;
}

export function emptyTurnCounters(): TurnCounters {
  return {
    requests: 0,
    allocations: 0,
    unauthorized: 0,
    staleNonce: 0,
    forbidden: 0,
    quotaExceeded: 0,
    badRequest: 0,
    mismatch: 0,
    malformed: 0,
    oversized: 0,
    rateLimited: 0,
    packetsToPeers: 0,
    bytesToPeers: 0,
    packetsToClients: 0,
    bytesToClients: 0,
    unpermitted: 0,
    tcpConnections: 0,
    tcpRefused: 0,
    tcpIdleClosed: 0,
    allocateInFlight: 0,
    backpressureDrops: 0,
    latches: 0,
    latchesRefused: 0,
    kernelInstalls: 0,
    kernelFailures: 0,
    kernelPackets: 0,
    kernelBytes: 0,
    redirected: 0,
    nativeRoutes: 0,
    nativePackets: 0,
    nativeBytes: 0,
    nativeDroppedUp: 0,
    nativeSendFailures: 0,
  };
}
