/**
 * Relay shards (issue 23, many cores) on the virtual network: the front answers an authenticated
 * Allocate with a signed 300 (Try Alternate) naming a shard, and the client allocates there. The
 * attacks: an unsigned 300 is not followed, nor a second redirection, and the front holds the
 * user's quota across shards. The processes themselves are tested in test/cli/turn-shards.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { encodeAddress, encodeErrorCode, encodeText } from '../../src/protocol/stun/attributes.ts';
import { addFingerprint } from '../../src/protocol/stun/integrity.ts';
import { AttributeType, decodeStun, encodeStun, StunClass } from '../../src/protocol/stun/message.ts';
import { TurnAttribute } from '../../src/protocol/stun/turn.ts';
import { TurnError } from '../../src/relay/turn-client.ts';
import { TurnServer } from '../../src/relay/turn-server.ts';
import type { TurnShardPicker } from '../../src/relay/turn-types.ts';
import { setup, TURN, USERS } from './turn-world.ts';

const SHARD = { address: TURN.address, port: 3578 };

/** A picker whose answer the test sets. */
function picker(answer: ReturnType<TurnShardPicker['pick']>) {
  const asked: string[] = [];
  return {
    asked,
    answer,
    pick(user: string) {
      asked.push(user);
      return this.answer;
    },
  };
}

describe('relay shards: Allocate redirected with a signed 300', () => {
  it('sends a UDP client to the shard, which relays for it; the front holds nothing', async () => {
    const shards = picker(SHARD);
    const s = await setup({ shards });
    const shard = await TurnServer.start(
      { network: s.network, clock: s.clock },
      { listen: SHARD, realm: 'sc2c.lab', users: USERS },
    );
    const { client, socket } = await s.allocate();
    expect(client.server).toEqual(SHARD);
    expect(shards.asked).toEqual(['alice']);
    expect(s.server.counters.redirected).toBe(1);
    expect(s.server.allocations()).toEqual([]);
    expect(shard.allocations()).toHaveLength(1);
    // The shard relays: a permitted peer reaches alice through it.
    const peer = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    await s.clock.run(client.createPermission(['198.18.0.66']));
    const got: string[] = [];
    client.on('data', (data) => got.push(new TextDecoder().decode(data)));
    peer.send(encodeText('frame'), client.relayed);
    await s.clock.advance(100);
    expect(got).toEqual(['frame']);
    expect(client.relayed.address).toBe(TURN.address);
    socket.close();
    shard.close();
    s.server.close();
  });

  it("refuses with the picker's 486 when the user holds its quota across the shards", async () => {
    const s = await setup({ shards: picker({ code: 486, why: 'alice already holds 10 allocations' }) });
    const error = await s.allocate().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TurnError);
    expect((error as TurnError).code).toBe(486);
    expect(s.server.counters.quotaExceeded).toBe(1);
    expect(s.server.counters.redirected).toBe(0);
    s.server.close();
  });

  it('does not follow a 300 that is not signed with the allocation key, nor a second redirection', async () => {
    const s = await setup();
    // A server on the path that challenges, then answers the signed Allocate with an unsigned 300.
    const fake = await s.peer.bindUdp({ address: '198.18.0.66', port: 3478 });
    const lured = await s.peer.bindUdp({ address: '198.18.0.66', port: 9999 });
    let luredGot = 0;
    lured.on('message', () => luredGot++);
    fake.on('message', (data, from) => {
      const request = decodeStun(data);
      const signed = request.attributes.some((a) => a.type === AttributeType.MESSAGE_INTEGRITY);
      const attributes = signed
        ? [
            {
              type: AttributeType.ERROR_CODE,
              value: encodeErrorCode({ code: 300, reason: 'Try Alternate' }),
            },
            {
              type: AttributeType.ALTERNATE_SERVER,
              value: encodeAddress({ address: '198.18.0.66', port: 9999 }),
            },
          ]
        : [
            { type: AttributeType.ERROR_CODE, value: encodeErrorCode({ code: 401, reason: 'Unauthorized' }) },
            { type: TurnAttribute.REALM, value: encodeText('sc2c.lab') },
            { type: TurnAttribute.NONCE, value: encodeText('nonce-1') },
          ];
      fake.send(
        addFingerprint(
          encodeStun({
            method: request.method,
            cls: StunClass.error,
            transactionId: request.transactionId,
            attributes,
          }),
        ),
        from,
      );
    });
    const unsigned = await s
      .allocate(s.alice, 'alice', USERS.alice, { server: { address: '198.18.0.66', port: 3478 } })
      .catch((e: unknown) => e);
    expect((unsigned as TurnError).message).toMatch(/not signed; not followed/);
    expect((unsigned as TurnError).alternate).toBeUndefined();
    await s.clock.advance(2000);
    expect(luredGot).toBe(0);

    // Front and "shard" both redirect: the client follows once, then stops.
    const loop = await setup({ shards: picker(SHARD) });
    const again = await TurnServer.start(
      { network: loop.network, clock: loop.clock },
      { listen: SHARD, realm: 'sc2c.lab', users: USERS, shards: picker(TURN) },
    );
    const twice = await loop.allocate().catch((e: unknown) => e);
    expect((twice as TurnError).message).toMatch(/redirected again: not followed/);
    expect(again.counters.redirected).toBe(1);
    again.close();
    loop.server.close();
    s.server.close();
  });
});
