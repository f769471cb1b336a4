/**
 * The path policy on the virtual network: signaling, STUN and the embedded TURN server on one
 * server host (as `sc2c server` runs them), two gateways with a relay configured.
 */
import { describe, expect, it } from 'vitest';
import { type CallOutcome, Gateway } from '../../src/gateway/gateway.ts';
import { every, VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { encodeRelayMoved } from '../../src/protocol/rtcp.ts';
import type { TraversalMode } from '../../src/protocol/sdp.ts';
import { encodeSdp } from '../../src/protocol/sdp.ts';
import type { Route, RoutedPath } from '../../src/relay/routed-path.ts';
import { TurnClient } from '../../src/relay/turn-client.ts';
import { TurnServer } from '../../src/relay/turn-server.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles } from '../net/world.ts';

const USERS = { alice: 'alice-pass-1', bob: 'bob-pass-1' };
const SIP = { address: '198.18.0.10', port: 5060 };
const STUN = { address: '198.18.0.10', port: 3478 };
const TURN_SECRET = 'path-policy-turn-secret';

/**
 * `issuedOnly`: the relay knows no users, only the secret the signaling server issues short-lived
 * credentials under (as a coturn with use-auth-secret), so a call relays only if they are used.
 * `tcpUsers` reach the TURN server over TCP; `udpBlockedA`: alice's network drops all UDP.
 */
async function setup(
  natA: string,
  natB: string,
  { issuedOnly = false, tcpUsers = [] as string[], udpBlockedA = false } = {},
) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 5 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  const a = net.addNat('nat-a', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: profiles.resolve(natA),
  });
  const b = net.addNat('nat-b', {
    publicAddress: '198.18.2.1',
    insideAddress: '10.0.2.1',
    behaviour: profiles.resolve(natB),
  });
  const alice = net.addHost('alice', { addresses: ['10.0.1.2'] });
  const bob = net.addHost('bob', { addresses: ['10.0.2.2'] });
  // A host on the internet that an attacker would like to flood with someone's camera stream.
  const victim = net.addHost('victim', { addresses: ['198.18.0.66'] });
  net.connect(victim, internet, { latencyMs: 5 });
  net.connect(serverHost, internet, {});
  net.connect(a, internet, { latencyMs: 10 });
  net.connect(b, internet, { latencyMs: 10 });
  // A firewall that drops all UDP (and ICMP) between alice and her NAT; TCP passes.
  net.connect(alice, a, { latencyMs: 1, loss: udpBlockedA ? 1 : 0 });
  net.connect(bob, b, { latencyMs: 1 });
  const stun = await StunResponder.start(serverHost, {
    primary: STUN,
    alternate: { address: '198.18.0.11', port: 3479 },
  });
  const turn = TurnServer.attach(
    { network: serverHost, clock },
    issuedOnly
      ? { listen: STUN, realm: 'sc2c.lab', users: {}, secret: TURN_SECRET }
      : { listen: STUN, realm: 'sc2c.lab', users: USERS },
    stun.socketAt(STUN)!,
  );
  stun.delegate = (data, from) => turn.handle(data, from);
  await turn.listenTcp();
  const server = await SignalingServer.start(
    { network: serverHost, clock },
    {
      listen: { port: 5060 },
      realm: 'sc2c.lab',
      users: USERS,
      turnCredentials: issuedOnly ? { secret: TURN_SECRET, ttlS: 600 } : undefined,
    },
  );
  const gateway = (network: typeof alice, user: keyof typeof USERS, relay = true) =>
    clock.run(
      Gateway.start(
        { network, clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user, password: USERS[user] },
          stunServer: STUN,
          stunRtoMs: 100,
          relay: relay
            ? {
                server: STUN,
                transport: tcpUsers.includes(user) ? ('tcp' as const) : ('udp' as const),
                username: user,
                password: USERS[user],
                retryDirectMs: 2000,
              }
            : undefined,
        },
      ),
    );
  const call = async (mode: TraversalMode = 'sc2c') => {
    const caller = await gateway(alice, 'alice');
    const callee = await gateway(bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => callee.on('call', resolve));
    const outcome = await clock.run(caller.call('bob', { mode }));
    const other = await clock.run(answered);
    return { caller, callee, outcome, other };
  };
  return {
    clock,
    a,
    b,
    alice,
    bob,
    victim,
    turn,
    gateway,
    call,
    close: () => {
      server.close();
      turn.close();
      stun.close();
    },
  };
}

/** RTP-shaped packets, 50 per second each way, and who got what when. */
function stream(clock: VirtualClock, from: RoutedPath, to: RoutedPath) {
  const arrivals: number[] = [];
  to.socket.on('message', (data) => {
    if (data[1] === 96) arrivals.push(clock.now());
  });
  let seq = 0;
  const timer = every(clock, 20, () => {
    const packet = new Uint8Array(172);
    packet[0] = 0x80;
    packet[1] = 96;
    packet[2] = (seq >> 8) & 0xff;
    packet[3] = seq++ & 0xff;
    from.socket.send(packet, from.remote);
  });
  return { arrivals, stop: () => timer.clear() };
}

/** Media both ways for `ms`: how many packets arrived each way. */
async function exchange(clock: VirtualClock, a: RoutedPath, b: RoutedPath, ms = 2000) {
  const there = stream(clock, a, b);
  const back = stream(clock, b, a);
  await clock.advance(ms);
  there.stop();
  back.stop();
  return { there: there.arrivals.length, back: back.arrivals.length };
}

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
