/**
 * The raw relay's control plane (issue 23), beside the TURN server: a client's signed latch, and
 * the kernel path of each latched allocation (its rules installed for the peer source the relay
 * saw, removed when that peer's permission lapses or the allocation ends, and its counters read
 * into the allocation's and the server's). Datagrams themselves stay on the server's forwarding path.
 */
import { type Endpoint, sameEndpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import { encodeErrorCode, encodeXorAddress } from '../protocol/stun/attributes.ts';
import { addFingerprint, addMessageIntegrity, verifyMessageIntegrity } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  findAttribute,
  type StunAttribute,
  StunClass,
  type StunMessage,
  StunMethod,
} from '../protocol/stun/message.ts';
import { encodeU32, RAW_RELAY_PATH, SC2C_RAW_RELAY } from '../protocol/stun/turn.ts';
import type { Allocation } from './allocation.ts';
import type { RelayOffload, TurnCounters } from './turn-types.ts';

export class RawRelayControl {
  /** The kernel's counters being read, if a read is under way. */
  #reading?: Promise<void>;

  constructor(
    private readonly c: { readonly clock: Clock },
    private readonly counters: TurnCounters,
    private readonly offload?: RelayOffload,
  ) {}

  /** The path raw relays are granted on: the kernel's when this server may offload. */
  get path(): number {
    return this.offload ? RAW_RELAY_PATH.kernel : RAW_RELAY_PATH.userspace;
  }

  /**
   * The client's latch (issue 23): a Binding request to its relayed address, carrying
   * SC2C-RAW-RELAY, USERNAME and MESSAGE-INTEGRITY with the allocation's key. The first valid one
   * fixes where peers' data goes; a later one from elsewhere is refused (a replay cannot move the
   * stream). True when it was a latch attempt (answered or dropped).
   */
  latch(allocation: Allocation, data: Uint8Array, from: Endpoint): boolean {
    let message: StunMessage;
    try {
      message = decodeStun(data);
    } catch {
      return false;
    }
    if (!findAttribute(message, SC2C_RAW_RELAY)) return false;
    const username = findAttribute(message, AttributeType.USERNAME);
    let valid = false;
    try {
      valid =
        username !== undefined &&
        new TextDecoder().decode(username.value) === allocation.username &&
        verifyMessageIntegrity(data, allocation.key);
    } catch {
      valid = false;
    }
    if (!valid) {
      this.counters.latchesRefused++;
      return true; // unsigned: no answer, so it reflects nothing
    }
    const reply = (cls: StunClass, attributes: StunAttribute[]): void => {
      const encoded = encodeStun({
        method: StunMethod.binding,
        cls,
        transactionId: message.transactionId,
        attributes,
      });
      allocation.relay.send(addFingerprint(addMessageIntegrity(encoded, allocation.key)), from);
    };
    if (allocation.latch && !sameEndpoint(allocation.latch, from)) {
      this.counters.latchesRefused++;
      reply(StunClass.error, [
        {
          type: AttributeType.ERROR_CODE,
          value: encodeErrorCode({ code: 403, reason: 'Forbidden: latched elsewhere' }),
        },
      ]);
      return true;
    }
    if (!allocation.latch) this.counters.latches++;
    allocation.latch = { address: from.address, port: from.port };
    reply(StunClass.success, [
      { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from) },
      { type: SC2C_RAW_RELAY, value: encodeU32(this.path) },
    ]);
    return true;
  }

  /**
   * Hands a latched allocation's forwarding from `peer` to the kernel, replacing any earlier peer's
   * rules; userspace goes on meanwhile. One source per relayed port: a raw relay carries one call,
   * whose far side sends from one address at a time, and the kernel's rules follow the source the
   * relay saw last; any other permitted source is relayed in userspace.
   */
  install(allocation: Allocation, peer: Endpoint): void {
    const offload = this.offload;
    const latch = allocation.latch;
    if (!offload || !latch) return;
    allocation.kernel = 'installing';
    allocation.kernelPeer = peer;
    allocation.kernelAtMs = this.c.clock.now();
    offload
      .install(allocation.id, { relayed: allocation.relayed, client: latch, peer })
      .then(() => {
        if (allocation.kernel !== 'installing') {
          // Deleted while installing: the rules go again.
          void offload.remove(allocation.id).catch(() => {});
          return;
        }
        allocation.kernel = 'installed';
        this.counters.kernelInstalls++;
      })
      .catch(() => {
        if (allocation.kernel === 'installing') allocation.kernel = 'failed';
        this.counters.kernelFailures++;
      });
  }

  /** The peer the kernel forwards for lost its permission: its rules go, userspace decides. */
  lapse(allocation: Allocation, nowMs: number): void {
    const peer = allocation.kernelPeer;
    if (allocation.kernel !== 'installed' || !peer || allocation.permitted(peer.address, nowMs)) return;
    allocation.kernel = undefined;
    allocation.kernelPeer = undefined;
    void this.offload?.remove(allocation.id).catch(() => {
      this.counters.kernelFailures++;
    });
  }

  /** The sweep's read of the kernel's counters; skipped while one is still under way. */
  read(allocations: Iterable<Allocation>): void {
    if (!this.offload || this.#reading) return;
    const installed = [...allocations].filter((a) => a.kernel === 'installed');
    if (installed.length === 0) return;
    this.#reading = this.#count(installed).finally(() => {
      this.#reading = undefined;
    });
  }

  /** An allocation ends: what the kernel forwarded since the last sweep is counted, then its rules go. */
  forget(allocation: Allocation): void {
    if (!allocation.kernel) return;
    const offload = this.offload!;
    const installed = allocation.kernel === 'installed';
    allocation.kernel = undefined;
    // After any read under way, a read of this allocation alone (it has left the table the sweep reads).
    void (this.#reading ?? Promise.resolve())
      .then(() => (installed ? this.#count([allocation]) : undefined))
      .then(() => offload.remove(allocation.id))
      .catch(() => {
        this.counters.kernelFailures++;
      });
  }

  /** Adds what the kernel forwarded for `allocations` since the last read to theirs and the server's counters. */
  async #count(allocations: readonly Allocation[]): Promise<void> {
    try {
      const counts = await this.offload!.counters();
      for (const allocation of allocations) {
        const now = counts.get(allocation.id);
        if (!now) continue;
        const packets = Math.max(0, now.packets - allocation.kernelSeen.packets);
        const bytes = Math.max(0, now.bytes - allocation.kernelSeen.bytes);
        allocation.kernelSeen = { packets: now.packets, bytes: now.bytes };
        allocation.counters.packetsToClient += packets;
        allocation.counters.bytesToClient += bytes;
        this.counters.packetsToClients += packets;
        this.counters.bytesToClients += bytes;
        this.counters.kernelPackets += packets;
        this.counters.kernelBytes += bytes;
      }
    } catch {
      this.counters.kernelFailures++;
    }
  }
}
