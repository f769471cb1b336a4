/**
 * The path policy on the virtual network: signaling, STUN and the embedded TURN server on one
 * server host (as `sc2c server` runs them), two gateways with a relay configured.
 */
import { describe, expect, it } from 'vitest';
import type { CallOutcome } from '../../src/gateway/gateway.ts';
import { every } from '../../src/net/clock.ts';
import type { Route } from '../../src/path/routed-path.ts';
import { encodeRelayMoved } from '../../src/protocol/rtcp.ts';
import { encodeSdp } from '../../src/protocol/sdp.ts';
import { TurnClient } from '../../src/relay/turn-client.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { exchange, SIP, STUN, setup, stream, USERS } from './call-world.ts';

const maxGap = (times: number[]): number => times.slice(1).reduce((m, t, i) => Math.max(m, t - times[i]!), 0);

describe('path policy: direct when SC2C can, the relay when it cannot', () => {
  it('sends a random-allocation pair straight to the relay, and media flows both ways through it', async () => {
    const s = await setup('symmetric-random', 'symmetric-random');
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay', checksSent: 0 });
    expect(outcome.directReason).toMatch(/random/);
    expect(other).toMatchObject({ ok: true, route: 'relay' });
    const { there, back } = await exchange(s.clock, outcome.routed!, other.routed!);
    expect(there).toBeGreaterThanOrEqual(95);
    expect(back).toBeGreaterThanOrEqual(95);
    // What went before the peer's relayed address answered a check was held back, counted.
    const { relay } = outcome.routed!.counters;
    expect(relay.packetsSent + outcome.routed!.drops.unconfirmedRelay).toBe(100);
    expect(outcome.routed!.drops.unconfirmedRelay).toBeLessThanOrEqual(3);
    expect(outcome.routed!.relayConfirmed).toBe(true);
    expect(outcome.routed!.counters.direct.packetsSent).toBe(0);
    expect(s.turn.counters.packetsToClients).toBeGreaterThanOrEqual(190);
    caller.close();
    callee.close();
    s.close();
  });

  it('relays with the short-lived credentials the signaling server issued, caller and callee each its own', async () => {
    const s = await setup('symmetric-random', 'symmetric-random', { issuedOnly: true });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(other).toMatchObject({ ok: true, route: 'relay' });
    const users = s.turn.allocations().map((a) => a.user);
    expect(users).toHaveLength(2);
    expect(users).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\d{10}:alice$/),
        expect.stringMatching(/^\d{10}:bob$/),
      ]),
    );
    const there = stream(s.clock, outcome.routed!, other.routed!);
    await s.clock.advance(1000);
    there.stop();
    expect(there.arrivals.length).toBeGreaterThanOrEqual(45);
    caller.close();
    callee.close();
    s.close();
  });

  it('relays a caller that reaches the TURN server over TCP to a callee on UDP, both ways', async () => {
    const s = await setup('symmetric-random', 'symmetric-random', { tcpUsers: ['alice'] });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(other).toMatchObject({ ok: true, route: 'relay' });
    expect(s.turn.counters.tcpConnections).toBe(1);
    const { there, back } = await exchange(s.clock, outcome.routed!, other.routed!);
    expect(there).toBeGreaterThanOrEqual(95);
    expect(back).toBeGreaterThanOrEqual(95);
    // Over TCP the caller's media leaves through its own allocation: the server relays it to a peer
    // (the callee's relayed address), which a UDP client's media never needs.
    expect(s.turn.counters.packetsToPeers).toBeGreaterThanOrEqual(95);
    caller.close();
    callee.close();
    s.close();
  });

  it('allocates again at once when the TURN connection of a relay-only call is lost, and media resumes', async () => {
    const s = await setup('symmetric-random', 'symmetric-random', { tcpUsers: ['alice'] });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    const errors: string[] = [];
    caller.on('relay-error', (why) => errors.push(why));
    const there = stream(s.clock, outcome.routed!, other.routed!);
    const back = stream(s.clock, other.routed!, outcome.routed!);
    await s.clock.advance(1000);
    const relayedBefore = other.routed!.peerRelayed; // the caller's relayed address, as the callee has it
    const lostAt = s.clock.now();
    s.a.nat.flush('tcp'); // the caller's NAT forgets its TCP mappings: the TURN connection (and SIP's) die
    await s.clock.advance(4000);
    there.stop();
    back.stop();
    expect(errors).toEqual([expect.stringMatching(/allocating again/)]);
    expect(s.turn.counters.tcpConnections).toBe(2);
    // Both directions resume: the callee learned the caller's new relayed address.
    expect(other.routed!.peerRelayed).not.toEqual(relayedBefore);
    expect(there.arrivals.filter((t) => t > lostAt + 3000).length).toBeGreaterThanOrEqual(45);
    expect(back.arrivals.filter((t) => t > lostAt + 3000).length).toBeGreaterThanOrEqual(45);
    caller.close();
    callee.close();
    s.close();
  });

  it('relays a caller whose network blocks UDP: STUN fails, TURN over TCP carries the call', async () => {
    const s = await setup('port-restricted-cone', 'symmetric-random', {
      tcpUsers: ['alice'],
      udpBlockedA: true,
    });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(other).toMatchObject({ ok: true, route: 'relay' });
    const { there, back } = await exchange(s.clock, outcome.routed!, other.routed!);
    expect(there).toBeGreaterThanOrEqual(95);
    expect(back).toBeGreaterThanOrEqual(95);
    caller.close();
    callee.close();
    s.close();
  });

  it('keeps a PKS caller and an IPS callee direct, with the relay standing by', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips');
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'direct' });
    expect(other).toMatchObject({ ok: true, route: 'direct' });
    const there = stream(s.clock, outcome.routed!, other.routed!);
    await s.clock.advance(1000);
    there.stop();
    expect(there.arrivals.length).toBeGreaterThanOrEqual(45);
    expect(outcome.routed!.counters.relay.packetsSent).toBe(0);
    caller.close();
    callee.close();
    s.close();
  });

  it('starts media on the relay when the punch fails within the budget (C2C from a PKS caller)', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips');
    const { caller, callee, outcome, other } = await s.call('c2c');
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(outcome.directReason).toMatch(/no direct path/);
    expect(other.route).toBe('relay');
    caller.close();
    callee.close();
    s.close();
  });

  it('counts the checks of a punch still running when media went to the relay (checksSent is not 0)', async () => {
    // A random-port NAT facing an IPS port-restricted cone (no birthday punching: its probes would
    // draw the ICMP that closes the cone's mapping): nothing answers, the punch runs its 3 s while
    // the 1 s budget sends media to the relay.
    const s = await setup('symmetric-random', 'port-restricted-cone+ips');
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(outcome.directReason).toMatch(/no direct path confirmed within 1000 ms/);
    // The punch was still running when media went to the relay: the checks it had sent by then
    // count, at both ends (a second at 20 ms: about 50).
    expect(outcome.checksSent).toBeGreaterThan(10);
    expect(other.checksSent).toBeGreaterThan(10);
    caller.close();
    callee.close();
    s.close();
  });

  it('moves to the relay within a second when the NAT drops its mappings, then back to direct', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips');
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome.route).toBe('direct');
    const routes: [string, Route, string][] = [];
    caller.on('route', (_id, route, why) => routes.push(['caller', route, why]));
    callee.on('route', (_id, route, why) => routes.push(['callee', route, why]));
    const there = stream(s.clock, outcome.routed!, other.routed!);
    const back = stream(s.clock, other.routed!, outcome.routed!);
    await s.clock.advance(1000);
    const flushedAt = s.clock.now();
    s.a.nat.flush('udp'); // the caller's NAT forgets every UDP mapping: direct path and relay allocation
    await s.clock.advance(1500);
    expect(outcome.routed!.route).toBe('relay');
    expect(other.routed!.route).toBe('relay');
    // Both directions resume through the relay within a second.
    const afterThere = there.arrivals.filter((t) => t >= flushedAt - 20);
    const afterBack = back.arrivals.filter((t) => t >= flushedAt - 20);
    expect(maxGap(afterThere)).toBeLessThan(1000);
    expect(maxGap(afterBack)).toBeLessThan(1000);
    expect(afterThere.at(-1)!).toBeGreaterThan(s.clock.now() - 100);
    expect(afterBack.at(-1)!).toBeGreaterThan(s.clock.now() - 100);
    // The caller tries a fresh direct path in the background and media moves back to it.
    await s.clock.advance(6000);
    expect(outcome.routed!.route).toBe('direct');
    expect(other.routed!.route).toBe('direct');
    const sentDirectBefore = outcome.routed!.counters.direct.packetsSent;
    await s.clock.advance(1000);
    expect(outcome.routed!.counters.direct.packetsSent).toBeGreaterThan(sentDirectBefore + 40);
    expect(maxGap(there.arrivals.filter((t) => t >= flushedAt))).toBeLessThan(1000);
    there.stop();
    back.stop();
    expect(routes.map(([who, route]) => `${who}:${route}`)).toEqual(
      expect.arrayContaining(['caller:relay', 'callee:relay', 'caller:direct', 'callee:direct']),
    );
    caller.close();
    callee.close();
    s.close();
  });

  it("sends no media to an address an INVITE's relay candidate names until it answers a check with the call's credentials", async () => {
    const s = await setup('symmetric-random', 'symmetric-random');
    const sink = await s.victim.bindUdp({ address: '198.18.0.66', port: 4000 });
    const atSink = { rtp: 0, other: 0 };
    sink.on('message', (data) => {
      if (data[1] === 96) atSink.rtp++;
      else atSink.other++;
    });
    const callee = await s.gateway(s.bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => callee.on('call', resolve));
    // An attacker registered as alice offers the victim's address as its relayed address.
    const attacker = await s.clock.run(
      SignalingClient.connect(
        { network: s.alice, clock: s.clock },
        { server: SIP, domain: 'sc2c.lab', user: 'alice', password: USERS.alice },
      ),
    );
    await s.clock.run(attacker.register());
    const offer = encodeSdp(
      {
        publicEndpoint: { address: '198.18.1.1', port: 20_000 },
        relayEndpoint: { address: '198.18.0.66', port: 4000 },
        ufrag: 'evil',
        pwd: 'e'.repeat(24),
        nat: 'symmetric-random',
        mode: 'sc2c',
        portSource: 'unpredictable',
        rtcpMux: true,
      },
      1,
    );
    const answer = await s.clock.run(
      attacker.request('INVITE', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sdp']], {
        callId: 'aimed-1',
        body: offer,
      }),
    );
    expect(answer.status).toBe(200);
    await s.clock.run(attacker.request('ACK', 'sip:bob@sc2c.lab', [], { callId: 'aimed-1' }));
    const outcome = await s.clock.run(answered);
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    // The camera streams for 12 s: longer than the consent checks' 10 s of patience.
    const timer = every(s.clock, 20, () => {
      const packet = new Uint8Array(172);
      packet[0] = 0x80;
      packet[1] = 96;
      outcome.routed!.socket.send(packet, outcome.routed!.remote);
    });
    await s.clock.advance(12_000);
    timer.clear();
    expect(atSink.rtp).toBe(0);
    expect(outcome.routed!.drops.unconfirmedRelay).toBeGreaterThanOrEqual(590);
    // Only the paced checks reached the victim: 10 a second for 10 s at most.
    expect(atSink.other).toBeGreaterThan(0);
    expect(atSink.other).toBeLessThanOrEqual(102);
    attacker.close();
    callee.close();
    s.close();
  });

  it('drops a route change (SC2R) that another user of the same TURN server forged', async () => {
    const s = await setup('symmetric-random', 'symmetric-random');
    const { caller, callee, outcome, other } = await s.call();
    await exchange(s.clock, outcome.routed!, other.routed!, 500);
    const peerRelayed = other.routed!.peerRelayed!;
    // Mallory allocates on the same server: her relayed address shares the relay's IP, which the
    // callee's allocation permits, so her packets reach the callee's relayed address.
    const socket = await s.victim.bindUdp();
    const mallory = await s.clock.run(
      TurnClient.allocate({ clock: s.clock }, socket, {
        server: STUN,
        username: 'bob',
        password: USERS.bob,
        rtoMs: 100,
      }),
    );
    await s.clock.run(mallory.createPermission([outcome.routed!.peerRelayed!.address]));
    const forged = encodeRelayMoved(1, mallory.relayed, new TextEncoder().encode('not-the-call-password-xx'));
    for (let i = 0; i < 3; i++) mallory.send(forged, outcome.routed!.peerRelayed!);
    await s.clock.advance(200);
    expect(other.routed!.drops.forgedRouteChanges).toBe(3);
    expect(other.routed!.peerRelayed).toEqual(peerRelayed);
    const { there } = await exchange(s.clock, outcome.routed!, other.routed!, 1000);
    expect(there).toBeGreaterThanOrEqual(45);
    await s.clock.run(mallory.close());
    caller.close();
    callee.close();
    s.close();
  });
});
