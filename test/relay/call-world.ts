/**
 * A small SC2C world on the virtual network for call tests: signaling, STUN and the embedded TURN
 * server on one server host (as `sc2c server` runs them), two NATed gateways with a relay
 * configured, and helpers that stream RTP-shaped packets over a call's path.
 */
import { type CallOutcome, Gateway } from '../../src/gateway/gateway.ts';
import type { DtlsInit } from '../../src/gateway/secure-call.ts';
import type { DirectTransport } from '../../src/gateway/types.ts';
import type { MediaPath } from '../../src/media/path.ts';
import { every, VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { formatTraceRecord, type TraceRecord } from '../../src/net/virtual/trace.ts';
import type { TraversalMode } from '../../src/protocol/sdp.ts';
import { TurnServer } from '../../src/relay/turn-server.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles } from '../net/world.ts';

export const USERS = { alice: 'alice-pass-1', bob: 'bob-pass-1' };
export const SIP = { address: '198.18.0.10', port: 5060 };
export const STUN = { address: '198.18.0.10', port: 3478 };
export const TURN_SECRET = 'path-policy-turn-secret';

/**
 * `issuedOnly`: the relay knows no users, only the secret the signaling server issues short-lived
 * credentials under (as a coturn with use-auth-secret), so a call relays only if they are used.
 * `tcpUsers` reach the TURN server over TCP; `udpBlockedA`: alice's network drops all UDP; `dtls`:
 * the users whose gateways encrypt media, with their identities; `rtcpMux: false`: a separate RTCP
 * pair (and then no relay, which needs mux); `transport`: the gateways' direct transport (issue 21);
 * `tcpReply`: what both NATs answer to an unsolicited TCP segment.
 */
export async function setup(
  natA: string,
  natB: string,
  {
    issuedOnly = false,
    tcpUsers = [] as string[],
    udpBlockedA = false,
    udpBlockedB = false,
    dtls = {} as Partial<Record<keyof typeof USERS, DtlsInit>>,
    rtcpMux = true,
    transport = undefined as DirectTransport | undefined,
    tcpReply = undefined as 'drop' | 'rst' | 'icmp-port-unreachable' | undefined,
    mode = undefined as TraversalMode | undefined,
  } = {},
) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({
    clock,
    seed: 5,
    ...(process.env.SC2C_TRACE
      ? {
          trace: (r: TraceRecord) => {
            if (r.packet.kind === 'tcp' && r.packet.dst.port !== 5060 && r.packet.src.port !== 5060)
              console.log(formatTraceRecord(r));
          },
        }
      : {}),
  });
  const ids = net.rng('ids');
  const transactionId = (): Uint8Array => Uint8Array.from({ length: 12 }, () => ids.int(0, 255));
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  const a = net.addNat('nat-a', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: { ...profiles.resolve(natA), ...(tcpReply ? { unsolicitedTcpReply: tcpReply } : {}) },
  });
  const b = net.addNat('nat-b', {
    publicAddress: '198.18.2.1',
    insideAddress: '10.0.2.1',
    behaviour: { ...profiles.resolve(natB), ...(tcpReply ? { unsolicitedTcpReply: tcpReply } : {}) },
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
  net.connect(bob, b, { latencyMs: 1, loss: udpBlockedB ? 1 : 0 });
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
        // Seeded IDs (and birthday probe ports, which come from them): the same call every run.
        { network, clock, transactionId },
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
          dtls: dtls[user],
          rtcpMux,
          transport,
          mode,
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
    serverHost,
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
export function stream(clock: VirtualClock, from: MediaPath, to: MediaPath) {
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
export async function exchange(clock: VirtualClock, a: MediaPath, b: MediaPath, ms = 2000) {
  const there = stream(clock, a, b);
  const back = stream(clock, b, a);
  await clock.advance(ms);
  there.stop();
  back.stop();
  return { there: there.arrivals.length, back: back.arrivals.length };
}
