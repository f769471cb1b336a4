/**
 * Which bound channels the native data plane forwards (issue 23), beside the TURN server: a UDP
 * client's channel whose peer is permitted is handed to the plane when it is bound, and taken back
 * when its binding or permission lapses or the allocation ends. What the plane forwarded comes back
 * into the allocation's and the server's counters. Raw-relay (latched) and TCP/TLS allocations stay
 * on the server's own forwarding path.
 */
import type { Clock } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import type { Allocation } from './allocation.ts';
import type { ChannelPlane, RouteCounts, TurnCounters } from './turn-types.ts';

export class ChannelRoutes {
  constructor(
    private readonly c: { readonly clock: Clock },
    private readonly counters: TurnCounters,
    /** The socket clients send to. */
    private readonly listener: UdpSocket,
    private readonly plane?: ChannelPlane,
  ) {}

  /** Brings the plane's routes for `allocation` in line with its channels and permissions now. */
  sync(allocation: Allocation): void {
    const plane = this.plane;
    if (!plane || allocation.client.stream || allocation.raw) return;
    if (!plane.owns(this.listener) || !plane.owns(allocation.relay)) return;
    const now = this.c.clock.now();
    const wanted = new Map<number, { address: string; port: number }>();
    for (const [channel, peer] of allocation.bound())
      if (allocation.permitted(peer.address, now)) wanted.set(channel, peer);
    for (const [channel, id] of allocation.planeRoutes)
      if (!wanted.has(channel)) {
        allocation.planeRoutes.delete(channel);
        plane.remove(id);
      }
    for (const [channel, peer] of wanted) {
      if (allocation.planeRoutes.has(channel)) continue; // a binding never changes its peer
      const id = plane.add({
        listener: this.listener,
        relay: allocation.relay,
        client: { address: allocation.client.address, port: allocation.client.port },
        channel,
        peer,
        counted: (delta, gone) => this.#counted(allocation, channel, id, delta, gone),
      });
      if (id === undefined) continue;
      allocation.planeRoutes.set(channel, id);
      this.counters.nativeRoutes++;
    }
  }

  /** The allocation ends: its routes go (their last counts still arrive). */
  forget(allocation: Allocation): void {
    for (const id of allocation.planeRoutes.values()) this.plane?.remove(id);
    allocation.planeRoutes.clear();
  }

  /** The sweep's read of the plane's counters (its losses as of the read before). */
  poll(): void {
    if (!this.plane) return;
    this.plane.poll();
    this.counters.nativeDroppedUp = this.plane.droppedUp;
    this.counters.nativeSendFailures = this.plane.sendFailures;
  }

  #counted(
    allocation: Allocation,
    channel: number,
    id: number | undefined,
    delta: RouteCounts,
    gone: boolean,
  ): void {
    if (gone) {
      if (allocation.planeRoutes.get(channel) === id) allocation.planeRoutes.delete(channel);
      this.counters.nativeRoutes--;
    }
    const packets = delta.packetsToPeer + delta.packetsToClient;
    if (packets === 0) return;
    allocation.counters.packetsToPeers += delta.packetsToPeer;
    allocation.counters.bytesToPeers += delta.bytesToPeer;
    allocation.counters.packetsToClient += delta.packetsToClient;
    allocation.counters.bytesToClient += delta.bytesToClient;
    this.counters.packetsToPeers += delta.packetsToPeer;
    this.counters.bytesToPeers += delta.bytesToPeer;
    this.counters.packetsToClients += delta.packetsToClient;
    this.counters.bytesToClients += delta.bytesToClient;
    this.counters.nativePackets += packets;
    this.counters.nativeBytes += delta.bytesToPeer + delta.bytesToClient;
  }
}
