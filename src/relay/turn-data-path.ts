/**
 * The TURN server's data path in Node (RFC 8656 §11-12): Send and Data indications, ChannelData
 * both ways, raw relays to a latched address, and every send to a client (a datagram, or a padded
 * frame on its TCP connection). The control plane (`turn-server.ts`) owns the allocations and
 * hands their look-ups in; what sc2c-relayd forwards never comes here.
 */
import { type Endpoint, sameEndpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import { decodeXorAddress, encodeXorAddress } from '../protocol/stun/attributes.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
import { encodeStun, findAttribute, isStun, StunClass, type StunMessage } from '../protocol/stun/message.ts';
import {
  decodeChannelData,
  encodeChannelData,
  padForStream,
  TurnAttribute,
  TurnMethod,
} from '../protocol/stun/turn.ts';
import type { Allocation } from './allocation.ts';
import type { RawRelayControl } from './raw-relay.ts';
import type { TurnClientAddress, TurnCounters, TurnServerInit } from './turn-types.ts';

/** What the data path needs from the server that owns it. */
export interface TurnDataPathComponents {
  readonly clock: Clock;
  readonly counters: TurnCounters;
  /** The listening socket: clients' datagrams arrive and leave on it. */
  readonly socket: UdpSocket;
  readonly raw: RawRelayControl;
  /** The allocation of a client 5-tuple (UDP or TCP). */
  allocationOf(client: TurnClientAddress): Allocation | undefined;
  /** The allocation of a UDP client, without a key string. */
  udpAllocation(address: string, port: number): Allocation | undefined;
  /** True once the server is closed: nothing more is forwarded. */
  closed(): boolean;
}

export class TurnDataPath {
  constructor(
    private readonly c: TurnDataPathComponents,
    private readonly init: Pick<TurnServerInit, 'maxDatagramBytes' | 'maxQueuedBytes' | 'offload'>,
  ) {}

  /** A Send indication: its DATA to its XOR-PEER-ADDRESS, if permitted (§11.2). */
  onSend(message: StunMessage, from: TurnClientAddress): void {
    const allocation = this.c.allocationOf(from);
    const peerAttribute = findAttribute(message, TurnAttribute.XOR_PEER_ADDRESS);
    const data = findAttribute(message, TurnAttribute.DATA);
    if (!allocation || !peerAttribute || !data) {
      this.c.counters.malformed++;
      return;
    }
    let peer: Endpoint;
    try {
      peer = decodeXorAddress(peerAttribute.value);
    } catch {
      this.c.counters.malformed++;
      return;
    }
    this.#toPeer(allocation, peer, data.value);
  }

  /** ChannelData on the slow path (TCP clients, and what the fast path passed on). */
  onChannelData(bytes: Uint8Array, from: TurnClientAddress): void {
    const allocation = this.c.allocationOf(from);
    let frame: ReturnType<typeof decodeChannelData>;
    try {
      frame = decodeChannelData(bytes);
    } catch {
      this.c.counters.malformed++;
      return;
    }
    const peer = allocation?.peerOf(frame.channel, this.c.clock.now());
    if (!allocation || !peer) {
      this.c.counters.unpermitted++;
      return;
    }
    this.#toPeer(allocation, peer, frame.data);
  }

  #toPeer(allocation: Allocation, peer: Endpoint, data: Uint8Array): void {
    // The peer policy was checked when the permission was installed (CreatePermission, ChannelBind).
    if (!allocation.permitted(peer.address, this.c.clock.now())) {
      this.c.counters.unpermitted++;
      return;
    }
    allocation.relay.send(data, peer);
    allocation.counters.packetsToPeers++;
    allocation.counters.bytesToPeers += data.byteLength;
    this.c.counters.packetsToPeers++;
    this.c.counters.bytesToPeers += data.byteLength;
  }

  /** A peer's datagram on the slow path: a latch, a Data indication, or ChannelData to a TCP client. */
  fromPeer(allocation: Allocation, data: Uint8Array, peer: Endpoint): void {
    if (this.c.closed()) return;
    if (
      allocation.raw &&
      isStun(data) &&
      data[0] === 0x00 &&
      data[1] === 0x01 &&
      this.c.raw.latch(allocation, data, peer)
    )
      return;
    if (allocation.latch && sameEndpoint(peer, allocation.latch)) return; // the client itself: nothing to relay
    if (!allocation.permitted(peer.address, this.c.clock.now())) {
      this.c.counters.unpermitted++;
      return;
    }
    const channel = allocation.channelOf(peer);
    const out =
      channel !== undefined && allocation.peerOf(channel, this.c.clock.now())
        ? encodeChannelData(channel, data, allocation.client.stream !== undefined)
        : addFingerprint(
            encodeStun({
              method: TurnMethod.data,
              cls: StunClass.indication,
              transactionId: randomTransactionId(),
              attributes: [
                { type: TurnAttribute.XOR_PEER_ADDRESS, value: encodeXorAddress(peer) },
                { type: TurnAttribute.DATA, value: data },
              ],
            }),
          );
    this.send(allocation.client, out);
    allocation.counters.packetsToClient++;
    allocation.counters.bytesToClient += data.byteLength;
    this.c.counters.packetsToClients++;
    this.c.counters.bytesToClients += data.byteLength;
  }

  /**
   * ChannelData from a UDP client, on the forwarding path: no objects, no copy, no callback. The
   * channel's binding implies its permission and the peer policy (both checked when it was bound);
   * expiry is the sweep's. False leaves the datagram to the slow path.
   */
  fromClientFast(data: Uint8Array, address: string, port: number): boolean {
    const first = data[0]!;
    if (this.c.closed() || first < 0x40 || first > 0x7f) return false;
    const size = data.byteLength;
    if (size > (this.init.maxDatagramBytes ?? 2048)) {
      this.c.counters.oversized++;
      return true;
    }
    const length = size < 4 ? -1 : (data[2]! << 8) | data[3]!;
    if (length < 0 || 4 + length > size || size - 4 - length > 3) {
      this.c.counters.malformed++;
      return true;
    }
    const allocation = this.c.udpAllocation(address, port);
    const peer = allocation?.routeOf((first << 8) | data[1]!);
    if (!allocation || !peer) {
      this.c.counters.unpermitted++;
      return true;
    }
    allocation.relay.forward(data, 4, length, peer.address, peer.port);
    allocation.counters.packetsToPeers++;
    allocation.counters.bytesToPeers += length;
    this.c.counters.packetsToPeers++;
    this.c.counters.bytesToPeers += length;
    return true;
  }

  /**
   * A peer's datagram to a relayed address, on the forwarding path: raw to the latched address, or
   * as ChannelData (a 4-byte head, the payload not copied) to a UDP client. The rest (Data
   * indications, TCP clients, latches, the unpermitted) takes the slow path.
   */
  fromPeerFast(allocation: Allocation, data: Uint8Array, address: string, port: number): boolean {
    if (this.c.closed() || !allocation.permissions.has(address)) return false;
    const length = data.byteLength;
    const latch = allocation.latch;
    if (latch) {
      if (address === latch.address && port === latch.port) return false;
      allocation.relay.forward(data, 0, length, latch.address, latch.port);
      // A source the kernel does not forward for (the first, or the peer's NAT moved it): the
      // rules follow it, at most once a second, and userspace carries it meanwhile.
      const peer = allocation.kernelPeer;
      if (
        this.init.offload &&
        allocation.kernel !== 'failed' &&
        (peer?.address !== address || peer.port !== port) &&
        this.c.clock.now() - allocation.kernelAtMs >= 1000
      )
        this.c.raw.install(allocation, { address, port });
    } else {
      const client = allocation.client;
      if (client.stream) return false;
      const channel = allocation.channelFor(address, port);
      if (channel === undefined) return false;
      const head = new Uint8Array(4);
      head[0] = channel >> 8;
      head[1] = channel & 0xff;
      head[2] = length >> 8;
      head[3] = length & 0xff;
      this.c.socket.forward(data, 0, length, client.address, client.port, head);
    }
    allocation.counters.packetsToClient++;
    allocation.counters.bytesToClient += length;
    this.c.counters.packetsToClients++;
    this.c.counters.bytesToClients += length;
    return true;
  }

  /**
   * To a client: over TCP on its connection, ChannelData padded (RFC 8656 §12.5; frames encoded
   * padded pass through uncopied), dropped and counted beyond `maxQueuedBytes` queued; else a datagram.
   */
  send(to: TurnClientAddress, data: Uint8Array): void {
    if (to.stream) {
      if (to.stream.closed) return;
      if (to.stream.bufferedBytes > (this.init.maxQueuedBytes ?? 256 * 1024)) {
        this.c.counters.backpressureDrops++;
        return;
      }
      to.stream.write(padForStream(data));
    } else this.c.socket.send(data, to);
  }
}

function randomTransactionId(): Uint8Array {
  const id = new Uint8Array(12);
  crypto.getRandomValues(id);
  return id;
}
