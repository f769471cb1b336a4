/**
 * The embedded TURN server and our TURN client on the virtual network: alice behind a symmetric
 * NAT allocates on the server, bob (behind another) is the peer. Each RFC 8656 error the issue
 * names is provoked on purpose.
 */
import { describe, expect, it } from 'vitest';
import type { VirtualClock } from '../../src/net/clock.ts';
import type { UdpSocket } from '../../src/net/types.ts';
import { decodeErrorCode, encodeText, encodeXorAddress } from '../../src/protocol/stun/attributes.ts';
import { addFingerprint, addMessageIntegrity } from '../../src/protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  findAttribute,
  type StunAttribute,
  StunClass,
} from '../../src/protocol/stun/message.ts';
import {
  decodeChannelData,
  encodeChannelData,
  encodeRequestedTransport,
  encodeU32,
  longTermKey,
  TurnAttribute,
  TurnMethod,
} from '../../src/protocol/stun/turn.ts';
import { issueCredentials, passwordFor } from '../../src/relay/credentials.ts';
import { TurnClient, TurnError } from '../../src/relay/turn-client.ts';

import { setup, TURN, USERS } from './turn-world.ts';

/** A raw request from `socket`, for the cases a well-behaved client never produces. */
function raw(
  method: number,
  attributes: StunAttribute[],
  sign?: { user: string; password: string; nonce: string },
) {
  const transactionId = crypto.getRandomValues(new Uint8Array(12));
  const all = sign
    ? [
        ...attributes,
        { type: AttributeType.USERNAME, value: encodeText(sign.user) },
        { type: TurnAttribute.REALM, value: encodeText('sc2c.lab') },
        { type: TurnAttribute.NONCE, value: encodeText(sign.nonce) },
      ]
    : attributes;
  let encoded = encodeStun({ method, cls: StunClass.request, transactionId, attributes: all });
  if (sign) encoded = addMessageIntegrity(encoded, longTermKey(sign.user, 'sc2c.lab', sign.password));
  return addFingerprint(encoded);
}

const UDP = { type: TurnAttribute.REQUESTED_TRANSPORT, value: encodeRequestedTransport(17) };

/** A socket that sent an unsigned Allocate and got its 401: the answers it collects, and alice's signature. */
async function challenged(clock: VirtualClock, socket: UdpSocket) {
  const answers: ReturnType<typeof decodeStun>[] = [];
  socket.on('message', (d) => answers.push(decodeStun(d)));
  socket.send(raw(TurnMethod.allocate, [UDP]), TURN);
  await clock.advance(100);
  const nonce = new TextDecoder().decode(findAttribute(answers[0]!, TurnAttribute.NONCE)!.value);
  return { socket, answers, sign: { user: 'alice', password: USERS.alice, nonce } };
}

describe('embedded TURN server with our TURN client', () => {
  it('allocates behind a symmetric NAT and relays both ways: Send/Data indications, then ChannelData', async () => {
    const s = await setup();
    const { client } = await s.allocate();
    expect(client.relayed).toEqual({ address: '198.18.0.10', port: expect.any(Number) });
    expect(client.mapped.address).toBe('198.18.1.1');
    expect(client.lifetimeS).toBe(600);
    const peerSocket = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    const atPeer: string[] = [];
    peerSocket.on('message', (data, from) => {
      atPeer.push(`${new TextDecoder().decode(data)} from ${from.address}:${from.port}`);
    });
    const atClient: string[] = [];
    client.on('data', (data, from) =>
      atClient.push(`${new TextDecoder().decode(data)} from ${from.address}`),
    );

    // Without a permission the relay drops both directions.
    client.send(encodeText('too early'), peerSocket.local);
    peerSocket.send(encodeText('knock'), client.relayed);
    await s.clock.advance(100);
    expect(atPeer).toEqual([]);
    expect(atClient).toEqual([]);
    expect(s.server.counters.unpermitted).toBe(2);

    await s.clock.run(client.createPermission(['198.18.0.66']));
    client.send(encodeText('hello'), peerSocket.local);
    peerSocket.send(encodeText('hi'), client.relayed);
    await s.clock.advance(100);
    expect(atPeer).toEqual([`hello from 198.18.0.10:${client.relayed.port}`]);
    expect(atClient).toEqual(['hi from 198.18.0.66']);

    const channel = await s.clock.run(client.bindChannel(peerSocket.local));
    expect(channel).toBe(0x4000);
    client.send(encodeText('over a channel'), peerSocket.local);
    peerSocket.send(encodeText('back on it'), client.relayed);
    await s.clock.advance(100);
    expect(atPeer.at(-1)).toBe(`over a channel from 198.18.0.10:${client.relayed.port}`);
    expect(atClient.at(-1)).toBe('back on it from 198.18.0.66');
    expect(s.server.counters).toMatchObject({ packetsToPeers: 2, packetsToClients: 2, unauthorized: 1 });
    expect(s.server.allocations()).toEqual([
      expect.objectContaining({ user: 'alice', channels: 1, relayed: `198.18.0.10:${client.relayed.port}` }),
    ]);
    await s.clock.run(client.close());
    expect(s.server.allocations()).toEqual([]);
    s.server.close();
  });

  it('two clients behind symmetric-random NATs reach each other through their relayed addresses', async () => {
    const s = await setup({ allowedPeers: [] });
    const a = await s.allocate(s.alice, 'alice', USERS.alice);
    const b = await s.allocate(s.bob, 'bob', USERS.bob);
    // Each lets the other's relayed address (the server's own IP) in, and binds a channel to it.
    await s.clock.run(a.client.bindChannel(b.client.relayed));
    await s.clock.run(b.client.bindChannel(a.client.relayed));
    const got: string[] = [];
    b.client.on('data', (d) => got.push(new TextDecoder().decode(d)));
    for (let i = 0; i < 5; i++) a.client.send(encodeText(`frame ${i}`), b.client.relayed);
    await s.clock.advance(200);
    expect(got).toEqual(['frame 0', 'frame 1', 'frame 2', 'frame 3', 'frame 4']);
    s.server.close();
  });

  it('answers a stale nonce with 438 and the client retries with the fresh one', async () => {
    const s = await setup({ nonceLifetimeMs: 30_000 });
    const { client } = await s.allocate();
    await s.clock.advance(31_000);
    await s.clock.run(client.createPermission(['198.18.0.66']));
    expect(s.server.counters.staleNonce).toBe(1);
    s.server.close();
  });

  it('refuses an unauthenticated Allocate with 401 and a nonce, and a wrong password with 401', async () => {
    const s = await setup();
    const socket = await s.alice.bindUdp();
    const answers: ReturnType<typeof decodeStun>[] = [];
    socket.on('message', (d) => answers.push(decodeStun(d)));
    socket.send(raw(TurnMethod.allocate, [UDP]), TURN);
    await s.clock.advance(100);
    const challenge = answers[0]!;
    expect(challenge.cls).toBe(StunClass.error);
    expect(decodeErrorCode(findAttribute(challenge, AttributeType.ERROR_CODE)!.value).code).toBe(401);
    expect(new TextDecoder().decode(findAttribute(challenge, TurnAttribute.REALM)!.value)).toBe('sc2c.lab');
    expect(findAttribute(challenge, TurnAttribute.NONCE)!.value.byteLength).toBeGreaterThan(8);
    const wrong = s.clock.run(
      TurnClient.allocate({ clock: s.clock }, await s.alice.bindUdp(), {
        server: TURN,
        username: 'alice',
        password: 'not-it',
        rtoMs: 100,
      }),
    );
    await expect(wrong).rejects.toThrow(/TURN 401/);
    s.server.close();
  });

  it('binds one relay socket for Allocates racing on one 5-tuple, and caps allocations per source address', async () => {
    const s = await setup({ perSourceQuota: 2, userQuota: 10 }, 50);
    const { socket, answers, sign } = await challenged(s.clock, await s.alice.bindUdp());
    answers.length = 0;
    // Ten different Allocate transactions back to back, while the first is binding its socket.
    for (let i = 0; i < 10; i++) socket.send(raw(TurnMethod.allocate, [UDP], sign), TURN);
    await s.clock.advance(500);
    expect(s.server.allocations()).toHaveLength(1);
    expect(answers.filter((a) => a.cls === StunClass.success)).toHaveLength(1);
    expect(s.server.counters.allocateInFlight + s.server.counters.mismatch).toBeGreaterThanOrEqual(9);
    // A second 5-tuple from the same NAT address gets one more; the third is over the source's cap.
    await s.allocate();
    await expect(s.allocate()).rejects.toThrow(/TURN 486/);
    expect(s.server.allocations()).toHaveLength(2);
    s.server.close();
  });

  it('refuses peers in denied ranges with 403: loopback, 0.0.0.0/8, private, link-local, multicast', async () => {
    const s = await setup();
    const { client } = await s.allocate();
    for (const peer of [
      '127.0.0.1',
      '0.0.0.1',
      '10.0.2.2',
      '192.168.1.1',
      '172.20.0.1',
      '169.254.1.1',
      '224.0.0.251',
    ]) {
      const error = await s.clock.run(client.createPermission([peer])).catch((e: unknown) => e);
      expect(error, peer).toBeInstanceOf(TurnError);
      expect((error as TurnError).code, peer).toBe(403);
    }
    // A denied peer is refused for channels too, and one bad peer fails the whole request.
    await expect(s.clock.run(client.bindChannel({ address: '127.0.0.1', port: 9 }))).rejects.toThrow(
      /TURN 403/,
    );
    await expect(s.clock.run(client.createPermission(['198.18.0.66', '10.1.1.1']))).rejects.toThrow(
      /TURN 403/,
    );
    expect(s.server.counters.forbidden).toBe(9);
    s.server.close();
    // The lab can allow its own private ranges.
    const lab = await setup({ allowedPeers: ['10.0.0.0/8'] });
    const { client: labClient } = await lab.allocate();
    await lab.clock.run(labClient.createPermission(['10.0.2.2']));
    lab.server.close();
  });

  it('enforces the per-user quota with 486, and 437 for a second Allocate on one 5-tuple', async () => {
    const s = await setup({ userQuota: 1 });
    const first = await s.allocate();
    await expect(s.allocate()).rejects.toThrow(/TURN 486/);
    expect(s.server.counters.quotaExceeded).toBe(1);
    // A short-lived username of the same user counts against the same quota.
    const issued = issueCredentials('per-call-secret', 'alice', s.clock.epochMs() / 1000, 600);
    await expect(s.allocate(s.alice, issued.username, issued.password)).rejects.toThrow(/TURN 486/);
    // Another user still gets one.
    await s.allocate(s.bob, 'bob', USERS.bob);
    // A new Allocate transaction from the same socket: 437 Allocation Mismatch.
    const again = TurnClient.allocate({ clock: s.clock }, first.socket, {
      server: TURN,
      username: 'alice',
      password: USERS.alice,
      rtoMs: 100,
    });
    await expect(s.clock.run(again)).rejects.toThrow(/TURN 437/);
    s.server.close();
  });

  it('accepts short-lived per-call credentials until they expire', async () => {
    const s = await setup();
    // REST usernames carry a Unix time: the server must read the wall clock, not the monotonic one.
    const nowS = s.clock.epochMs() / 1000;
    expect(nowS).toBeGreaterThan(1.7e9);
    const fresh = issueCredentials('per-call-secret', 'alice', nowS, 60);
    const { client } = await s.allocate(s.alice, fresh.username, fresh.password);
    expect(client.relayed.port).toBeGreaterThan(0);
    const expired = issueCredentials('per-call-secret', 'alice', nowS, -1);
    expect(expired.username).toMatch(/^\d{10}:alice$/);
    await expect(s.allocate(s.alice, expired.username, expired.password)).rejects.toThrow(/TURN 401/);
    // The fresh one runs out 60 s later.
    await s.clock.advance(61_000);
    await expect(s.allocate(s.alice, fresh.username, fresh.password)).rejects.toThrow(/TURN 401/);
    const forged = issueCredentials('wrong-secret', 'alice', nowS, 60);
    await expect(s.allocate(s.alice, forged.username, forged.password)).rejects.toThrow(/TURN 401/);
    s.server.close();
  });

  it('refuses REST credentials that claim to expire further ahead than any we issue (the quota dodge)', async () => {
    const s = await setup({ maxCredentialTtlS: 3600 });
    const nowS = s.clock.epochMs() / 1000;
    const year2286 = issueCredentials('per-call-secret', 'alice', 9_999_999_999, 0);
    await expect(s.allocate(s.alice, year2286.username, year2286.password)).rejects.toThrow(/TURN 401/);
    const tooLong = issueCredentials('per-call-secret', 'alice', nowS, 7200);
    await expect(s.allocate(s.alice, tooLong.username, tooLong.password)).rejects.toThrow(/TURN 401/);
    const fits = issueCredentials('per-call-secret', 'alice', nowS, 3600);
    await s.allocate(s.alice, fits.username, fits.password);
    s.server.close();
  });

  it('no name from Object.prototype is a TURN user, whether users come as a record or a Map', () => {
    const names = [...Object.getOwnPropertyNames(Object.prototype), '__proto__'];
    for (const users of [{ alice: 'alice-pass-1' }, new Map([['alice', 'alice-pass-1']])])
      for (const name of names) expect(passwordFor({ users }, name, 0), name).toBeUndefined();
    expect(passwordFor({ users: { alice: 'alice-pass-1' } }, 'alice', 0)).toBe('alice-pass-1');
  });

  it('expires allocations, permissions and channels at the RFC lifetimes unless refreshed', async () => {
    const s = await setup();
    const { socket, answers, sign } = await challenged(s.clock, await s.alice.bindUdp());
    socket.send(
      raw(TurnMethod.allocate, [UDP, { type: TurnAttribute.LIFETIME, value: encodeU32(30) }], sign),
      TURN,
    );
    await s.clock.advance(100);
    // Asking for 30 s gets the 600 s default (RFC 8656 §7.2).
    expect(answers[1]!.cls).toBe(StunClass.success);
    const lifetime = findAttribute(answers[1]!, TurnAttribute.LIFETIME)!.value;
    expect(new DataView(lifetime.buffer, lifetime.byteOffset).getUint32(0)).toBe(600);
    socket.send(
      raw(
        TurnMethod.createPermission,
        [
          {
            type: TurnAttribute.XOR_PEER_ADDRESS,
            value: encodeXorAddress({ address: '198.18.0.66', port: 0 }),
          },
        ],
        sign,
      ),
      TURN,
    );
    await s.clock.advance(100);
    expect(answers[2]!.cls).toBe(StunClass.success);
    const relayedPort = s.server.allocations()[0]!.relayed.split(':')[1];
    const peer = await s.peer.bindUdp();
    const relayed = { address: '198.18.0.10', port: Number(relayedPort) };
    peer.send(encodeText('within 300 s'), relayed);
    await s.clock.advance(100);
    expect(answers).toHaveLength(4);
    await s.clock.advance(300_000);
    peer.send(encodeText('after the permission expired'), relayed);
    await s.clock.advance(100);
    expect(answers).toHaveLength(4);
    expect(s.server.allocations()).toHaveLength(1);
    // The sweep runs each second: by 2 s past the 600 s lifetime the allocation is gone.
    await s.clock.advance(302_000);
    expect(s.server.allocations()).toEqual([]);
    s.server.close();
  });

  it('drops malformed, oversized and unbound traffic, counts it, and keeps serving', async () => {
    const s = await setup({ unauthenticatedPerSecond: 1000 });
    const socket = await s.peer.bindUdp();
    const before = { ...s.server.counters };
    socket.send(new Uint8Array(3000), TURN); // oversized
    socket.send(Uint8Array.of(0x40, 0x00, 0x00, 0x20, 1, 2), TURN); // ChannelData shorter than its length
    socket.send(encodeChannelData(0x4001, encodeText('no allocation')), TURN);
    socket.send(Uint8Array.of(0x00, 0x01, 0x00, 0x05, 0x21, 0x12, 0xa4, 0x42), TURN); // broken STUN
    socket.send(encodeText('plain garbage'), TURN);
    const bad = raw(TurnMethod.allocate, [UDP]);
    bad[3] = 0xff; // header length past the datagram
    socket.send(bad, TURN);
    await s.clock.advance(100);
    expect(s.server.counters.oversized - before.oversized).toBe(1);
    expect(s.server.counters.malformed - before.malformed).toBe(4);
    expect(s.server.counters.unpermitted - before.unpermitted).toBe(1);
    expect(() => decodeChannelData(Uint8Array.of(0x40, 0x00, 0x00, 0x20, 1, 2))).toThrow(/runs past/);
    // Still serving.
    const { client } = await s.allocate();
    expect(client.relayed.port).toBeGreaterThan(0);
    s.server.close();
  });

  it('rate-limits unauthenticated requests per source address', async () => {
    const s = await setup({ unauthenticatedPerSecond: 10 });
    const socket = await s.peer.bindUdp();
    let answered = 0;
    socket.on('message', () => answered++);
    for (let i = 0; i < 100; i++) socket.send(raw(TurnMethod.allocate, [UDP]), TURN);
    await s.clock.advance(100);
    // A burst of twice the rate is answered, the rest dropped.
    expect(answered).toBe(20);
    expect(s.server.counters.rateLimited).toBe(80);
    // Another source is not affected.
    const { client } = await s.allocate();
    expect(client.relayed.port).toBeGreaterThan(0);
    s.server.close();
  });
});

describe('TURN over TCP (RFC 8656 §3.1)', () => {
  const text = (data: Uint8Array): string => new TextDecoder().decode(data);

  async function tcpSetup() {
    const s = await setup();
    await s.server.listenTcp();
    const allocateOverTcp = (host = s.alice, username = 'alice', password = USERS.alice) =>
      s.clock.run(
        TurnClient.allocateOverTcp(
          { clock: s.clock, network: host },
          { server: TURN, username, password, rtoMs: 100 },
        ),
      );
    return { ...s, allocateOverTcp };
  }

  it('allocates over TCP behind a symmetric NAT and relays both ways, odd-sized ChannelData padded on the stream', async () => {
    const s = await tcpSetup();
    const client = await s.allocateOverTcp();
    expect(client.overTcp).toBe(true);
    expect(client.relayed).toEqual({ address: '198.18.0.10', port: expect.any(Number) });
    expect(client.mapped.address).toBe('198.18.1.1');
    expect(s.server.counters.tcpConnections).toBe(1);
    const peerSocket = await s.peer.bindUdp({ address: '198.18.0.66', port: 4000 });
    const atPeer: string[] = [];
    peerSocket.on('message', (data) => atPeer.push(text(data)));
    const atClient: string[] = [];
    client.on('data', (data, from) => atClient.push(`${text(data)} from ${from.address}`));

    await s.clock.run(client.createPermission(['198.18.0.66']));
    client.send(encodeText('send indication'), peerSocket.local);
    peerSocket.send(encodeText('data indication'), client.relayed);
    await s.clock.advance(100);
    await s.clock.run(client.bindChannel(peerSocket.local));
    // 1, 5 and 7 bytes: each ChannelData needs padding on a stream, and frames follow each other.
    for (const payload of ['a', 'hello', 'channel']) {
      client.send(encodeText(payload), peerSocket.local);
      peerSocket.send(encodeText(payload.toUpperCase()), client.relayed);
    }
    await s.clock.advance(100);
    expect(atPeer).toEqual(['send indication', 'a', 'hello', 'channel']);
    expect(atClient).toEqual([
      'data indication from 198.18.0.66',
      'A from 198.18.0.66',
      'HELLO from 198.18.0.66',
      'CHANNEL from 198.18.0.66',
    ]);
    expect(s.server.counters.malformed).toBe(0);
    s.server.close();
  });

  it('ends the allocation with the connection, and the client reports a connection the server closed', async () => {
    const s = await tcpSetup();
    const first = await s.allocateOverTcp();
    expect(s.server.allocations()).toHaveLength(1);
    await s.clock.run(first.close());
    await s.clock.advance(100);
    expect(s.server.allocations()).toHaveLength(0);
    expect(s.server.tcpClients).toBe(0);

    const second = await s.allocateOverTcp();
    const failed: string[] = [];
    second.on('failed', (why) => failed.push(why));
    s.server.close();
    await s.clock.advance(100);
    expect(failed).toEqual([expect.stringMatching(/TURN connection closed/)]);
    await expect(s.clock.run(second.refresh())).rejects.toThrow(/closed/);
  });

  it('closes TCP clients that hold no allocation after the idle timeout, and keeps those that do', async () => {
    const s = await tcpSetup();
    const idle = await Promise.all(Array.from({ length: 50 }, () => s.clock.run(s.peer.connect(TURN))));
    const client = await s.allocateOverTcp();
    await s.clock.advance(10_500);
    expect(idle.every((stream) => stream.closed)).toBe(true);
    expect(s.server.counters.tcpIdleClosed).toBe(50);
    expect(s.server.tcpClients).toBe(1);
    expect(client.relayed.port).toBeGreaterThan(0);
    s.server.close();
  });

  it('answers on the stream, and closes a stream that carries a bad or oversized frame, counting it', async () => {
    const s = await tcpSetup();
    const frames: Uint8Array[] = [];
    const open = async () => {
      const stream = await s.clock.run(s.peer.connect(TURN));
      stream.on('data', (chunk) => frames.push(chunk));
      return stream;
    };
    const good = await open();
    // One request split across two writes still reaches the server whole.
    const request = raw(TurnMethod.allocate, [UDP]);
    good.write(request.subarray(0, 7));
    await s.clock.advance(10);
    good.write(request.subarray(7));
    await s.clock.advance(100);
    const answer = decodeStun(Buffer.concat(frames.splice(0)));
    expect(decodeErrorCode(findAttribute(answer, AttributeType.ERROR_CODE)!.value).code).toBe(401);

    good.write(Uint8Array.of(0xc0, 0, 0, 0));
    await s.clock.advance(100);
    expect(good.closed).toBe(true);
    expect(s.server.counters.malformed).toBe(1);

    const big = await open();
    big.write(Uint8Array.of(0x40, 0x00, 0xff, 0x00)); // ChannelData announcing 65 280 bytes
    await s.clock.advance(100);
    expect(big.closed).toBe(true);
    expect(s.server.counters.oversized).toBe(1);
    // Still serving.
    const client = await s.allocateOverTcp();
    expect(client.relayed.port).toBeGreaterThan(0);
    s.server.close();
  });
});
