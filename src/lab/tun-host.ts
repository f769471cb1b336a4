/**
 * A lab host: a network namespace whose only interface is a TUN device held by the lab process.
 * Packets the namespace's kernel sends are decoded and put on the host's link; packets the link
 * delivers are encoded and written to the TUN device.
 */
import type { Fabric } from '../net/virtual/fabric.ts';
import type { Link } from '../net/virtual/link.ts';
import type { EndHost } from '../net/virtual/network.ts';
import type { Packet } from '../net/virtual/packet.ts';
import { DecodeError } from '../protocol/decode-error.ts';
import { decodeIpv4, encodeIpv4 } from '../protocol/ipv4.ts';
import type { TunDevice } from './tun.ts';

export interface HostCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** Packets from the namespace the lab does not route (IPv6, ICMP echo, fragments). */
  undecodable: number;
}

export class TunHost implements EndHost {
  readonly counters: HostCounters = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, undecodable: 0 };
  #uplink?: Link;

  constructor(
    readonly name: string,
    readonly namespace: string,
    readonly addresses: readonly string[],
    private readonly tun: TunDevice,
    private readonly fabric: Fabric,
  ) {}

  attach(link: Link): void {
    this.#uplink = link;
  }

  start(onError: (error: Error) => void): void {
    this.tun.startReading((bytes) => this.#fromKernel(bytes), onError);
  }

  receive(packet: Packet): void {
    const bytes = encodeIpv4(packet);
    this.counters.rxPackets++;
    this.counters.rxBytes += bytes.byteLength;
    this.fabric.trace(this.name, 'deliver', packet);
    this.tun.write(bytes);
  }

  close(): void {
    this.tun.close();
  }

  #fromKernel(bytes: Uint8Array): void {
    let packet: Packet;
    try {
      packet = decodeIpv4(bytes, this.fabric.nextPacketId());
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
      this.counters.undecodable++;
      return;
    }
    this.counters.txPackets++;
    this.counters.txBytes += bytes.byteLength;
    this.fabric.trace(this.name, 'send', packet);
    this.#uplink?.send(packet, this);
  }
}
