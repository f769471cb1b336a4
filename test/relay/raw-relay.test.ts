/**
 * The raw relay (issue 23) on the virtual network: alice, behind a symmetric NAT, allocates with
 * SC2C-RAW-RELAY and latches; a permitted peer's datagrams then reach her as plain datagrams from
 * her relayed address. The attacks: a forged latch, a replayed latch from elsewhere, an
 * unpermitted sender. The kernel offload is the interface the server drives; its nftables
 * implementation is tested on a real kernel in test/lab/kernel-relay.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../src/net/address.ts';
import { encodeText } from '../../src/protocol/stun/attributes.ts';
import { addFingerprint, addMessageIntegrity } from '../../src/protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  StunClass,
  StunMethod,
} from '../../src/protocol/stun/message.ts';
import { encodeU32, longTermKey, SC2C_RAW_RELAY } from '../../src/protocol/stun/turn.ts';
import type { RelayOffload } from '../../src/relay/turn-types.ts';
import { setup } from './turn-world.ts';

/** Records what the server asks of the kernel path. */
class RecordingOffload implements RelayOffload {
  readonly installs: { id: number; relayed: Endpoint; client: Endpoint; peer: Endpoint }[] = [];
  readonly removes: number[] = [];
  forwarded = new Map<number, { packets: number; bytes: number }>();
  async install(id: number, route: { relayed: Endpoint; client: Endpoint; peer: Endpoint }) {
    this.installs.push({ id, ...route });
  }
  async remove(id: number) {
    this.removes.push(id);
  }
  async counters() {
    return this.forwarded;
  }
  async close() {}
}

function latchRequest(username: string, key: Uint8Array): Uint8Array {
  const encoded = encodeStun({
    method: StunMethod.binding,
    cls: StunClass.request,
    transactionId: crypto.getRandomValues(new Uint8Array(12)),
    attributes: [
      { type: SC2C_RAW_RELAY, value: encodeU32(0) },
      { type: AttributeType.USERNAME, value: encodeText(username) },
    ],
  });
  return addFingerprint(addMessageIntegrity(encoded, key));
}

describe('raw relay (SC2C-RAW-RELAY)', () => {
  it('grants, latches, and delivers a permitted peer raw from the relayed address; the unpermitted and the client itself are not relayed', async () => {
    const s = await setup();
    const { client, socket } = await s.allocate(s.alice, 'alice', 'alice-pass', { rawRelay: true });
    expect(client.rawRelay).toBe('userspace');
    const peer = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    const stranger = await s.bob.bindUdp();
    await s.clock.run(client.createPermission(['198.18.0.66']));
    await s.clock.run(client.latch());
    expect(s.server.counters.latches).toBe(1);

    const atAlice: { text: string; from: string }[] = [];
    socket.on('message', (data, from) => {
      if (data[0]! >= 0x20)
        atAlice.push({ text: new TextDecoder().decode(data), from: `${from.address}:${from.port}` });
    });
    const viaClient: string[] = [];
    client.on('data', (data) => viaClient.push(new TextDecoder().decode(data)));
    peer.send(encodeText('frame 1'), client.relayed);
    stranger.send(encodeText('intruder'), client.relayed);
    await s.clock.advance(100);
    // Plain bytes, no ChannelData head, from the relayed address: what a NAT that saw her latch lets in.
    expect(atAlice).toEqual([{ text: 'frame 1', from: `${client.relayed.address}:${client.relayed.port}` }]);
    expect(viaClient).toEqual(['frame 1']);
    expect(s.server.counters.unpermitted).toBe(1);
    expect(s.server.counters.packetsToClients).toBe(1);
  });

  it('refuses a forged latch silently and a replayed one from elsewhere with 403: the stream stays where the client latched it', async () => {
    const s = await setup();
    const { client } = await s.allocate(s.alice, 'alice', 'alice-pass', { rawRelay: true });
    await s.clock.run(client.createPermission(['198.18.0.66']));
    // A forged latch (wrong key) before the real one: no answer, nothing latched.
    const attacker = await s.bob.bindUdp();
    const answers: ReturnType<typeof decodeStun>[] = [];
    attacker.on('message', (data) => answers.push(decodeStun(data)));
    attacker.send(latchRequest('alice', new Uint8Array(16).fill(7)), client.relayed);
    await s.clock.advance(100);
    expect(answers).toEqual([]);
    expect(s.server.counters.latchesRefused).toBe(1);
    await s.clock.run(client.latch());
    // A validly signed latch (a replay of hers, or her own from a second socket) from elsewhere: 403.
    attacker.send(latchRequest('alice', longTermKey('alice', 'sc2c.lab', 'alice-pass')), client.relayed);
    await s.clock.advance(100);
    expect(s.server.counters.latchesRefused).toBe(2);
    expect(answers.map((a) => a.cls)).toEqual([StunClass.error]);

    const atAlice: string[] = [];
    client.on('data', (data) => atAlice.push(new TextDecoder().decode(data)));
    const atAttacker: string[] = [];
    attacker.on('message', (data) => {
      if (data[0]! >= 0x20) atAttacker.push(new TextDecoder().decode(data));
    });
    const peer = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    peer.send(encodeText('frame'), client.relayed);
    await s.clock.advance(100);
    expect(atAlice).toEqual(['frame']);
    expect(atAttacker).toEqual([]);
  });

  it('a plain TURN client (no attribute) gets ChannelData as before, and a latch on its allocation is just data', async () => {
    const s = await setup();
    const { client } = await s.allocate();
    expect(client.rawRelay).toBeUndefined();
    await expect(s.clock.run(client.latch())).rejects.toThrow(/no raw relay/);
  });

  it('hands a latched allocation to the kernel path after the first peer datagram, and takes it back when the allocation ends', async () => {
    const offload = new RecordingOffload();
    const s = await setup({ offload });
    const { client } = await s.allocate(s.alice, 'alice', 'alice-pass', { rawRelay: true });
    expect(client.rawRelay).toBe('kernel');
    await s.clock.run(client.createPermission(['198.18.0.66']));
    await s.clock.run(client.latch());
    expect(offload.installs).toEqual([]); // nothing to forward yet
    const peer = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    const received: string[] = [];
    client.on('data', (data) => received.push(new TextDecoder().decode(data)));
    peer.send(encodeText('first'), client.relayed);
    peer.send(encodeText('second'), client.relayed);
    await s.clock.advance(100);
    // Userspace carries the first datagrams while the rules go in; one install, not one per datagram.
    expect(received).toEqual(['first', 'second']);
    expect(offload.installs).toEqual([
      {
        id: expect.any(Number),
        relayed: client.relayed,
        client: { address: '198.18.1.1', port: expect.any(Number) },
        peer: { address: '198.18.0.66', port: 4000 },
      },
    ]);
    const id = offload.installs[0]!.id;
    // What the kernel forwarded shows in the server's counters at the next sweep.
    offload.forwarded.set(id, { packets: 50, bytes: 5000 });
    await s.clock.advance(1100);
    expect(s.server.counters.kernelInstalls).toBe(1);
    expect(s.server.counters.kernelPackets).toBe(50);
    expect(s.server.counters.packetsToClients).toBe(52);
    expect(s.server.allocations()[0]!.bytes).toBe(5000 + 'first'.length + 'second'.length);
    // The peer's NAT moves it to a new port: userspace carries the new source at once, and the
    // kernel's rules follow it (one source per relayed port).
    const moved = await s.peer.bindUdp({ address: '198.18.0.66', port: 4002 });
    moved.send(encodeText('after the move'), client.relayed);
    await s.clock.advance(100);
    expect(received.at(-1)).toBe('after the move');
    expect(offload.installs.at(-1)!.peer).toEqual({ address: '198.18.0.66', port: 4002 });
    expect(offload.installs).toHaveLength(2);
    await s.clock.run(client.close());
    await s.clock.advance(100);
    expect(offload.removes).toEqual([id]);
  });
});
