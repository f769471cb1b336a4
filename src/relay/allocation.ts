/**
 * One TURN allocation (RFC 8656 §2.2): the relayed socket, its lifetime, the permissions (by peer
 * IP, §9) and the channels (§12) of one client 5-tuple. Pure bookkeeping; the server does the I/O.
 */
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import type { UdpSocket } from '../net/types.ts';
import { TURN_LIFETIMES } from '../protocol/stun/turn.ts';
import type { TurnClientAddress } from './turn-types.ts';

export interface AllocationCounters {
  /** Client -> peer, through the relay. */
  packetsToPeers: number;
  bytesToPeers: number;
  /** Peer -> client. */
  packetsToClient: number;
  bytesToClient: number;
}

export class Allocation {
  readonly permissions = new Map<string, number>();
  readonly #channelPeer = new Map<number, { peer: Endpoint; expiresAtMs: number }>();
  readonly #peerChannel = new Map<string, number>();
  /** The same, by address then port: the forwarding path looks up without building a key. */
  readonly #peerChannelByAddress = new Map<string, Map<number, number>>();
  /**
   * Raw relay (issue 23): granted at Allocate; `latch` is where peers' data goes once the client
   * has signed a Binding from it to the relayed address.
   */
  raw = false;
  latch?: Endpoint;
  /** The server's number for it (the kernel's rules are named by it). */
  id = 0;
  /** The peer source the kernel's rules forward for, and when they were (re)installed. */
  kernelPeer?: Endpoint;
  kernelAtMs = Number.NEGATIVE_INFINITY;
  /** The kernel forwards for it: 'installing', 'installed', or a failure (then userspace goes on). */
  kernel?: 'installing' | 'installed' | 'failed';
  /** Counters read from the kernel at the last sweep, so the next read adds only the difference. */
  kernelSeen = { packets: 0, bytes: 0 };
  /** Channels the native data plane forwards for it: channel number -> the plane's route id. */
  readonly planeRoutes = new Map<number, number>();
  readonly counters: AllocationCounters = {
    packetsToPeers: 0,
    bytesToPeers: 0,
    packetsToClient: 0,
    bytesToClient: 0,
  };

  constructor(
    readonly client: TurnClientAddress,
    readonly username: string,
    /** The long-term key every later request of this allocation must be signed with. */
    readonly key: Uint8Array,
    readonly relay: UdpSocket,
    readonly relayed: Endpoint,
    public expiresAtMs: number,
    /** The Allocate that created it, so a retransmission gets the same answer (RFC 8656 §7.2). */
    readonly transactionId: Uint8Array,
    readonly createdAtMs: number,
  ) {}

  permit(peerIp: string, nowMs: number): void {
    this.permissions.set(peerIp, nowMs + TURN_LIFETIMES.permissionS * 1000);
  }

  permitted(peerIp: string, nowMs: number): boolean {
    return (this.permissions.get(peerIp) ?? 0) > nowMs;
  }

  /**
   * Binds or refreshes `channel` to `peer` (and its permission). Refuses a channel bound to another
   * peer, or a peer bound to another channel (§12.2).
   */
  bind(channel: number, peer: Endpoint, nowMs: number): boolean {
    const key = formatEndpoint(peer);
    const current = this.#channelPeer.get(channel);
    if (current && formatEndpoint(current.peer) !== key) return false;
    const existing = this.#peerChannel.get(key);
    if (existing !== undefined && existing !== channel) return false;
    this.#channelPeer.set(channel, { peer, expiresAtMs: nowMs + TURN_LIFETIMES.channelS * 1000 });
    this.#peerChannel.set(key, channel);
    let ports = this.#peerChannelByAddress.get(peer.address);
    if (!ports) {
      ports = new Map();
      this.#peerChannelByAddress.set(peer.address, ports);
    }
    ports.set(peer.port, channel);
    this.permit(peer.address, nowMs);
    return true;
  }

  peerOf(channel: number, nowMs: number): Endpoint | undefined {
    const bound = this.#channelPeer.get(channel);
    return bound && bound.expiresAtMs > nowMs ? bound.peer : undefined;
  }

  channelOf(peer: Endpoint): number | undefined {
    return this.#peerChannel.get(formatEndpoint(peer));
  }

  /**
   * The forwarding path's look-ups: no expiry test per datagram (the server's sweep drops what
   * expired, within a second of it), no key built.
   */
  routeOf(channel: number): Endpoint | undefined {
    return this.#channelPeer.get(channel)?.peer;
  }

  channelFor(address: string, port: number): number | undefined {
    return this.#peerChannelByAddress.get(address)?.get(port);
  }

  /** Each bound channel and its peer (expired ones until the sweep drops them). */
  *bound(): IterableIterator<[channel: number, peer: Endpoint]> {
    for (const [channel, { peer }] of this.#channelPeer) yield [channel, peer];
  }

  get channels(): number {
    return this.#channelPeer.size;
  }

  /** Drops expired permissions and channels. */
  expire(nowMs: number): void {
    for (const [ip, until] of this.permissions) if (until <= nowMs) this.permissions.delete(ip);
    for (const [channel, bound] of this.#channelPeer) {
      if (bound.expiresAtMs > nowMs) continue;
      this.#channelPeer.delete(channel);
      this.#peerChannel.delete(formatEndpoint(bound.peer));
      const ports = this.#peerChannelByAddress.get(bound.peer.address);
      ports?.delete(bound.peer.port);
      if (ports?.size === 0) this.#peerChannelByAddress.delete(bound.peer.address);
    }
  }
}
