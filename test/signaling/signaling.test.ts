import { describe, expect, it } from 'vitest';
import { type CallOutcome, Gateway } from '../../src/gateway/gateway.ts';
import { type MediaRole, OPUS } from '../../src/media/negotiate.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { formatAuthParams } from '../../src/protocol/sip/headers.ts';
import type { SipRequest } from '../../src/protocol/sip/message.ts';
import { encodeSip, header } from '../../src/protocol/sip/message.ts';
import { restPassword } from '../../src/relay/credentials.ts';
import { accountsFrom } from '../../src/signaling/accounts.ts';
import { SignalingClient, SipRequestError } from '../../src/signaling/client.ts';
import { DigestAuthenticator } from '../../src/signaling/digest-auth.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { readCredential, TURN_CREDENTIAL_HEADER } from '../../src/signaling/turn-credentials.ts';
import { RecentBindings } from '../../src/traversal/recent-bindings.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles } from '../net/world.ts';

const USERS = { alice: 'alice-pass-1', bob: 'bob-pass-1' };
const SIP = { address: '198.18.0.10', port: 5060 };
const STUN = { address: '198.18.0.10', port: 3478 };

async function setup(
  natA = 'symmetric-seq1+pks',
  natB = 'symmetric-seq1+ips',
  oneWay: [number, number] = [10, 10],
  /** The server reads pins from its own STUN server's Bindings (issue 19). */
  observed = false,
) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 11 });
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
  const stray = net.addHost('stray', { addresses: ['198.18.0.66'] });
  const neighbour = net.addHost('neighbour', { addresses: ['10.0.1.3'] });
  net.connect(serverHost, internet, {});
  net.connect(stray, internet, { latencyMs: 5 });
  net.connect(a, internet, { latencyMs: oneWay[0] });
  net.connect(b, internet, { latencyMs: oneWay[1] });
  net.connect(alice, a, { latencyMs: 1 });
  net.connect(neighbour, a, { latencyMs: 1 });
  net.connect(bob, b, { latencyMs: 1 });
  const logs: string[] = [];
  const stun = await StunResponder.start(serverHost, {
    primary: STUN,
    alternate: { address: '198.18.0.11', port: 3479 },
  });
  if (observed) stun.bindings = new RecentBindings(clock);
  const server = await SignalingServer.start(
    { network: serverHost, clock },
    {
      listen: { port: 5060 },
      realm: 'sc2c.lab',
      users: USERS,
      log: (l) => logs.push(l),
      bindings: stun.bindings,
    },
  );
  const gateway = (
    network: typeof alice,
    user: keyof typeof USERS,
    password = USERS[user],
    rtcpMux = true,
    media?: MediaRole,
    pin = true,
  ) =>
    clock.run(
      Gateway.start(
        { network, clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user, password },
          stunServer: STUN,
          stunRtoMs: 100,
          rtcpMux,
          media,
          // Without pinning, the paper's prediction alone: no crossed ladders either.
          punch: { pin, ...(pin ? {} : { crossWindow: 1 }) },
        },
      ),
    );
  return {
    clock,
    net,
    server,
    serverHost,
    stun,
    alice,
    bob,
    stray,
    neighbour,
    gateway,
    logs,
    close: (): void => {
      server.close();
      stun.close();
    },
  };
}

describe('signaling server', () => {
  it('challenges, accepts the right password, and refuses a wrong one or an unknown user with 403', async () => {
    const s = await setup();
    const ok = await s.clock.run(
      SignalingClient.connect(
        { network: s.alice, clock: s.clock },
        { server: SIP, domain: 'sc2c.lab', ...{ user: 'alice', password: USERS.alice } },
      ),
    );
    expect(await s.clock.run(ok.register())).toBe(3600);
    expect(s.server.registrations().map((r) => r.user)).toEqual(['alice']);
    for (const [user, password] of [
      ['bob', 'wrong'],
      ['mallory', 'x'],
    ]) {
      const bad = await s.clock.run(
        SignalingClient.connect(
          { network: s.bob, clock: s.clock },
          { server: SIP, domain: 'sc2c.lab', user: user!, password: password! },
        ),
      );
      const error = await s.clock.run(bad.register().catch((e: unknown) => e));
      expect(error).toBeInstanceOf(SipRequestError);
      expect((error as SipRequestError).status).toBe(403);
      bad.close();
    }
    expect(s.server.counters.authFailures).toBe(2);
    ok.close();
    s.close();
  });

  it('issues short-lived TURN credentials with each registration and in each forwarded INVITE', async () => {
    const s = await setup();
    const secret = 'signaling-turn-secret';
    const issuing = await SignalingServer.start(
      { network: s.serverHost, clock: s.clock },
      { listen: { port: 5061 }, realm: 'sc2c.lab', users: USERS, turnCredentials: { secret, ttlS: 120 } },
    );
    const connect = (network: typeof s.alice, user: 'alice' | 'bob', port = 5061) =>
      s.clock.run(
        SignalingClient.connect(
          { network, clock: s.clock },
          { server: { ...SIP, port }, domain: 'sc2c.lab', user, password: USERS[user] },
        ),
      );
    // A server without a secret issues none.
    const plain = await connect(s.alice, 'alice', 5060);
    await s.clock.run(plain.register());
    expect(plain.turnCredential).toBeUndefined();
    plain.close();

    const alice = await connect(s.alice, 'alice');
    const bob = await connect(s.bob, 'bob');
    await s.clock.run(alice.register());
    await s.clock.run(bob.register());
    const nowS = s.clock.epochMs() / 1000;
    const first = alice.turnCredential!;
    expect(first.username).toMatch(/^\d{10}:alice$/);
    expect(first.password).toBe(restPassword(secret, first.username));
    expect(first.expiresAtS).toBeCloseTo(nowS + 120, -1);

    // The callee gets its own credential in the INVITE; one the caller slipped in is dropped.
    const invites: SipRequest[] = [];
    bob.on('request', (request, respond) => {
      invites.push(request);
      respond(486);
    });
    const forged = formatAuthParams(
      'REST',
      { username: '9999999999:bob', password: 'x', expires: '9999999999' },
      ['expires'],
    );
    await s.clock.run(
      alice.request('INVITE', alice.uri('bob'), [[TURN_CREDENTIAL_HEADER, forged]], { body: 'v=0' }),
    );
    expect(invites).toHaveLength(1);
    const carried = invites[0]!.headers.filter(([n]) => n === TURN_CREDENTIAL_HEADER);
    expect(carried).toHaveLength(1);
    const forBob = readCredential(invites[0]!)!;
    expect(forBob.username).toMatch(/^\d{10}:bob$/);
    expect(forBob.password).toBe(restPassword(secret, forBob.username));

    // The gateway re-registers before its credential runs out, and gets a new one.
    await s.clock.advance(100_000);
    expect(alice.turnCredential!.expiresAtS).toBeGreaterThan(first.expiresAtS + 60);
    alice.close();
    bob.close();
    issuing.close();
    s.close();
  });

  it('answers an unauthenticated REGISTER with 401 and a SHA-256 digest challenge', async () => {
    const s = await setup();
    const client = await s.clock.run(
      SignalingClient.connect(
        { network: s.alice, clock: s.clock },
        { server: SIP, domain: 'sc2c.lab', user: 'alice', password: 'x' },
      ),
    );
    const response = await s.clock.run(
      client.request('REGISTER', 'sip:sc2c.lab', [], { to: 'sip:alice@sc2c.lab' }),
    );
    expect(response.status).toBe(401);
    expect(header(response, 'WWW-Authenticate')).toMatch(
      /^Digest realm="sc2c\.lab", nonce="[^"]+", algorithm=SHA-256, qop="auth"$/,
    );
    client.close();
    s.close();
  });

  it('marks an old nonce stale', () => {
    let now = 0;
    const auth = new DigestAuthenticator('sc2c.lab', accountsFrom(USERS), () => now);
    const nonce = /nonce="([^"]+)"/.exec(auth.challenge('client-1'))![1]!;
    now = 301_000;
    const request = {
      kind: 'request' as const,
      method: 'REGISTER',
      uri: 'sip:sc2c.lab',
      headers: [
        [
          'Authorization',
          `Digest username="alice", realm="sc2c.lab", nonce="${nonce}", uri="sip:sc2c.lab", response="00", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"`,
        ] as const,
      ],
      body: '',
    };
    expect(auth.check(request, 'client-1')).toMatchObject({ ok: false, status: 401, reason: 'stale nonce' });
    expect((auth.check(request, 'client-1') as { challenge: string }).challenge).toMatch(/stale=true/);
  });

  it('answers keepalive pings with pongs (RFC 5626)', async () => {
    const s = await setup();
    const client = await s.clock.run(
      SignalingClient.connect(
        { network: s.alice, clock: s.clock },
        { server: SIP, domain: 'sc2c.lab', user: 'alice', password: USERS.alice, keepaliveMs: 1000 },
      ),
    );
    let pongs = 0;
    client.connection.on('pong', () => pongs++);
    await s.clock.advance(3500);
    expect(pongs).toBe(3);
    client.close();
    s.close();
  });

  it('closes a connection that sends garbage, oversized or truncated SIP, counts it, and keeps serving', async () => {
    const s = await setup();
    for (const bytes of [
      new Uint8Array([0, 1, 2, 3, 13, 10, 13, 10]),
      new TextEncoder().encode(`INVITE sip:bob@sc2c.lab SIP/2.0\r\nContent-Length: 9999999\r\n\r\n`),
      new Uint8Array(20_000).fill(65),
    ]) {
      const conn = await s.clock.run(s.stray.connect(SIP));
      let closed = false;
      conn.on('close', () => {
        closed = true;
      });
      conn.write(bytes);
      await s.clock.advance(200);
      expect(closed).toBe(true);
    }
    expect(s.server.counters.malformed).toBe(3);
    expect(s.logs.filter((l) => l.startsWith('malformed SIP'))).toHaveLength(3);
    const fine = await s.gateway(s.alice, 'alice');
    expect(s.server.registrations()).toHaveLength(1);
    fine.close();
    s.close();
  });

  it('drops garbage on the STUN ports and counts it', async () => {
    const s = await setup();
    const socket = await s.stray.bindUdp();
    socket.send(new Uint8Array([1, 2, 3]), STUN);
    const bad = encodeSip({ kind: 'request', method: 'OPTIONS', uri: 'sip:x@y', headers: [], body: '' });
    socket.send(bad, STUN);
    const truncatedStun = new Uint8Array(20);
    new DataView(truncatedStun.buffer).setUint32(4, 0x2112a442);
    new DataView(truncatedStun.buffer).setUint16(2, 8);
    socket.send(truncatedStun, STUN);
    await s.clock.advance(100);
    expect(s.stun.counters).toMatchObject({ ignored: 2, malformed: 1, responses: 0 });
    s.close();
  });
});

describe('gateway calls on the virtual network', () => {
  it('SC2C opens a direct path from a PKS caller to an IPS callee, confirmed on both sides', async () => {
    const s = await setup();
    const alice = await s.gateway(s.alice, 'alice');
    const bob = await s.gateway(s.bob, 'bob');
    expect(alice.probe).toMatchObject({
      mapping: 'address-and-port-dependent',
      allocation: 'sequential',
      delta: 1,
    });
    const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob', { mode: 'sc2c' }));
    const callee = await s.clock.run(answered);
    // Issue 19: the caller (PKS, not IPS) pins its mapping after the answer; the callee predicted.
    expect(outcome).toMatchObject({
      ok: true,
      mode: 'sc2c',
      local: { portSource: 'pinned', pin: 16 },
      pinned: 'local',
      pinVerified: true,
      predictionAgeMs: 0,
    });
    expect(callee).toMatchObject({ ok: true, local: { portSource: 'predicted' }, pinned: 'remote' });
    // The ports were the real ones: the caller's confirmed peer is the callee's prediction moved by
    // the callee's own drift samples while it waited for the go (a quiet NAT: exactly those).
    expect(callee.drift!.ratePerSecond ?? 0).toBe(0);
    expect(callee.drift!.atLeast).toBe(callee.drift!.samples);
    // Its first check, to rung m = that drift, landed: each side confirmed the other's port + m.
    const m = callee.drift!.atLeast;
    expect(outcome.path!.remote).toEqual({
      address: callee.local!.publicEndpoint.address,
      port: callee.local!.publicEndpoint.port + m,
    });
    expect(callee.path!.remote).toEqual({
      address: outcome.local!.publicEndpoint.address,
      port: outcome.local!.publicEndpoint.port + m,
    });
    alice.hangup(outcome.callId);
    bob.hangup(callee.callId);
    alice.close();
    bob.close();
    s.close();
    await s.clock.advance(60_000);
    expect(s.clock.pendingTimers()).toBe(0);
    expect(s.alice.openHandles() + s.bob.openHandles()).toBe(0);
  });

  it('with a server that reads pins from its own STUN Bindings, the sync leaves with the rungs', async () => {
    // Issue 19: the caller's sync names the Binding sent right after its rungs; the server reads the
    // pinned port from it, so the go no longer waits for the caller to learn its port first.
    const run = async (observed: boolean) => {
      const s = await setup(undefined, undefined, undefined, observed);
      const alice = await s.gateway(s.alice, 'alice');
      const bob = await s.gateway(s.bob, 'bob');
      const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
      const outcome = await s.clock.run(alice.call('bob', { mode: 'sc2c' }));
      const callee = await s.clock.run(answered);
      const counters = { ...s.server.counters };
      alice.close();
      bob.close();
      s.close();
      return { outcome, callee, counters };
    };
    const classic = await run(false);
    const observed = await run(true);
    for (const { outcome, callee } of [classic, observed]) {
      expect(outcome).toMatchObject({ ok: true, attempts: 1, pinned: 'local', pinVerified: true });
      expect(callee).toMatchObject({ ok: true, pinned: 'remote' });
      // The port the callee checked is the caller's pinned one, whoever read it.
      expect(callee.remote!.publicEndpoint).toEqual(outcome.local!.publicEndpoint);
    }
    expect(classic.counters).toMatchObject({ pinsObserved: 0, pinsUnresolved: 0 });
    expect(observed.counters).toMatchObject({ pinsObserved: 1, pinsUnresolved: 0 });
    const setupMs = (o: CallOutcome) => o.confirmedAtMs! - o.startedAtMs;
    expect(setupMs(observed.outcome)).toBeLessThan(setupMs(classic.outcome));
  });

  for (const [callerMux, calleeMux] of [
    [false, false],
    [true, false],
  ] as const) {
    it(`punches a separate RTCP pair when rtcp-mux is declined (caller mux ${callerMux}, callee mux ${calleeMux})`, async () => {
      const s = await setup();
      const alice = await s.gateway(s.alice, 'alice', USERS.alice, callerMux);
      const bob = await s.gateway(s.bob, 'bob', USERS.bob, calleeMux);
      const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
      const outcome = await s.clock.run(alice.call('bob'));
      const callee = await s.clock.run(answered);
      expect(outcome.ok && callee.ok).toBe(true);
      expect(outcome.local!.rtcpEndpoint!.port).toBe(outcome.local!.publicEndpoint.port + 1);
      expect(callee.local!.rtcpMux).toBe(false);
      // Each side's RTCP check was answered from the RTCP port the other predicted.
      expect(outcome.path!.rtcp!.remote).toEqual(callee.local!.rtcpEndpoint);
      expect(callee.path!.rtcp!.remote).toEqual(outcome.local!.rtcpEndpoint);
      expect(outcome.path!.rtcp!.socket.local.port).not.toBe(outcome.path!.socket.local.port);
      alice.close();
      bob.close();
      s.close();
    });
  }

  it('uses one muxed pair when both sides can mux, leaving the offered RTCP port unused', async () => {
    const s = await setup();
    const alice = await s.gateway(s.alice, 'alice');
    const bob = await s.gateway(s.bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob'));
    await s.clock.run(answered);
    expect(outcome.local!.rtcpEndpoint).toBeDefined();
    expect(outcome.remote!.rtcpMux).toBe(true);
    expect(outcome.path!.rtcp).toBeUndefined();
    alice.close();
    bob.close();
    s.close();
  });

  /**
   * A call during which a neighbour behind Alice's NAT opens one session while the INVITE is in
   * flight: the NAT's counter moves past the port Alice predicted.
   */
  const callPastNeighbour = async (pin: boolean) => {
    const s = await setup();
    const alice = await s.gateway(s.alice, 'alice', USERS.alice, true, undefined, pin);
    const bob = await s.gateway(s.bob, 'bob', USERS.bob, true, undefined, pin);
    const outcomes: CallOutcome[] = [];
    bob.on('call', (o) => outcomes.push(o));
    const calling = alice.call('bob');
    s.clock.setTimeout(() => {
      void s.neighbour
        .bindUdp()
        .then((socket) => socket.send(new Uint8Array([1]), { address: '198.18.0.10', port: 7 }));
    }, 30);
    const outcome = await s.clock.run(calling);
    await s.clock.runUntil(() => outcomes.length >= (outcome.attempts ?? 1), 10_000);
    return {
      outcome,
      outcomes,
      close: () => {
        alice.close();
        bob.close();
        s.close();
      },
    };
  };

  it('retries with a fresh prediction when another host moves the port between prediction and punch', async () => {
    // Without pinning: the paper's prediction alone.
    const { outcome, outcomes, close } = await callPastNeighbour(false);
    expect(outcome).toMatchObject({ ok: true, attempts: 2 });
    expect(outcomes.map((o) => [o.attempts, o.ok])).toEqual([
      [1, false],
      [2, true],
    ]);
    close();
  });

  it('pinning: the same neighbour session cannot take the pinned port, and the first attempt connects', async () => {
    const { outcome, outcomes, close } = await callPastNeighbour(true);
    expect(outcome).toMatchObject({ ok: true, attempts: 1, pinned: 'local', pinVerified: true });
    // Both confirmed the same rung m: Alice's pinned port + m, Bob's advertised port + m (both NATs
    // step by 1), m at least as far as Bob's drift samples moved his counter.
    const bob = outcomes[0]!;
    const rung = outcome.path!.remote.port - bob.local!.publicEndpoint.port;
    expect(bob.path!.remote).toEqual({
      address: outcome.local!.publicEndpoint.address,
      port: outcome.local!.publicEndpoint.port + rung,
    });
    expect(rung).toBeGreaterThanOrEqual(bob.drift!.atLeast);
    expect(rung).toBeLessThan(31);
    expect(outcomes.map((o) => [o.attempts, o.ok])).toEqual([[1, true]]);
    close();
  });

  it('C2C from a PKS caller fails with a clear reason on both sides', async () => {
    const s = await setup();
    const alice = await s.gateway(s.alice, 'alice');
    const bob = await s.gateway(s.bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob', { mode: 'c2c' }));
    const callee = await s.clock.run(answered);
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/^no direct path: no answer from 198\.18\.2\.1:\d+ after \d+ checks/);
    expect(callee.ok).toBe(false);
    expect(callee.reason).toMatch(/^no direct path/);
    alice.close();
    bob.close();
    s.close();
  });

  it('a call offering a video codec the camera lacks ends with 488 and the reason at both ends', async () => {
    const s = await setup();
    const VP8 = { payloadType: 97, name: 'VP8', clockRate: 90_000 };
    const alice = await s.gateway(s.alice, 'alice', undefined, true, {
      send: false,
      receive: true,
      audio: [OPUS],
      video: [VP8],
    });
    const bob = await s.gateway(s.bob, 'bob', undefined, true, { send: true, receive: false, audio: [OPUS] });
    const refused = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob'));
    const callee = await s.clock.run(refused);
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/488/);
    expect(outcome.reason).toMatch(/no common video codec: the offer has VP8, we do H264/);
    expect(callee).toMatchObject({ ok: false, role: 'callee' });
    expect(callee.reason).toMatch(/no common video codec/);
    // Nothing was punched for a refused call: no media sockets stay open on either side.
    alice.close();
    bob.close();
    s.close();
    await s.clock.advance(60_000);
    expect(s.alice.openHandles() + s.bob.openHandles()).toBe(0);
  });

  it('a call to an unknown user ends with 404', async () => {
    const s = await setup();
    const alice = await s.gateway(s.alice, 'alice');
    const outcome = await s.clock.run(alice.call('carol'));
    expect(outcome).toMatchObject({ ok: false, reason: 'call refused: 404 Not Found (no such user)' });
    expect(s.server.counters.notFound).toBe(1);
    alice.close();
    s.close();
  });

  it('times the go messages from measured round trips (10 ms vs 150 ms one-way)', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-seq1', [10, 150]);
    const alice = await s.gateway(s.alice, 'alice');
    const bob = await s.gateway(s.bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob'));
    await s.clock.run(answered);
    expect(outcome.ok).toBe(true);
    const [schedule] = s.server.schedules;
    // Round trips include the 1 ms LAN hop each way: 2 * (10 + 1) and 2 * (150 + 1).
    expect(schedule!.rttMs).toEqual({ caller: 22, callee: 302 });
    expect(schedule!.delayMs).toEqual({ caller: 140, callee: 0 });
    alice.close();
    bob.close();
    s.close();
  });

  it('ignores punch checks from a host without the call credentials', async () => {
    const s = await setup('full-cone', 'full-cone');
    const alice = await s.gateway(s.alice, 'alice');
    const bob = await s.gateway(s.bob, 'bob');
    const answered = new Promise<CallOutcome>((resolve) => bob.on('call', resolve));
    const outcome = await s.clock.run(alice.call('bob', { mode: 'c2c' }));
    const callee = await s.clock.run(answered);
    expect(outcome.ok && callee.ok).toBe(true);
    // A stray host sends a well-formed check with made-up credentials to Alice's media port.
    const { Puncher } = await import('../../src/traversal/punch.ts');
    const straySocket = await s.stray.bindUdp();
    const fake = new Puncher(
      { socket: straySocket, clock: s.clock },
      {
        local: { ufrag: 'evil', pwd: 'x'.repeat(24) },
        remote: { ufrag: outcome.local!.ufrag, pwd: 'y'.repeat(24) },
        timeoutMs: 200,
      },
    );
    const attempt = await s.clock.run(fake.punch([outcome.local!.publicEndpoint]).catch((e: Error) => e));
    expect(attempt).toBeInstanceOf(Error);
    fake.close();
    alice.close();
    bob.close();
    s.close();
  });
});

describe('gateway resilience', () => {
  it('reconnects with backoff and re-registers after the server goes away and comes back', async () => {
    const s = await setup();
    const alice = await s.clock.run(
      Gateway.start(
        { network: s.alice, clock: s.clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user: 'alice', password: USERS.alice },
          stunServer: STUN,
          stunRtoMs: 100,
          reconnect: { initialMs: 1000, maxMs: 4000 },
        },
      ),
    );
    const delays: number[] = [];
    alice.on('disconnected', (_reason, retryInMs) => delays.push(retryInMs));
    let reconnected = false;
    alice.on('reconnected', () => {
      reconnected = true;
    });
    s.server.close();
    await s.clock.advance(8000);
    // Connection refused three times: 1 s, then 2 s, then 4 s (the maximum).
    expect(delays.slice(0, 4)).toEqual([1000, 2000, 4000, 4000]);
    const revived = await SignalingServer.start(
      { network: s.net.node('server') as typeof s.alice, clock: s.clock },
      { listen: { port: 5060 }, realm: 'sc2c.lab', users: USERS },
    );
    await s.clock.advance(5000);
    expect(reconnected).toBe(true);
    expect(revived.registrations().map((r) => r.user)).toEqual(['alice']);
    alice.close();
    revived.close();
    s.stun.close();
  });
});
