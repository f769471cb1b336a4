/**
 * Issue 24 on the virtual network: two server nodes sharing one store. A call from a gateway on
 * node A to one on node B goes over the link between them; the coordinator at A times both go
 * messages with B's round trip to its party; links authenticate with the cluster secret; a node
 * killed mid-call loses its party until it registers on the other node; a restarted node gets its
 * dialogs back from the store.
 */
import { describe, expect, it } from 'vitest';
import { Gateway, onNode } from '../../src/gateway/gateway.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import type { SipRequest } from '../../src/protocol/sip/message.ts';
import { header } from '../../src/protocol/sip/message.ts';
import { SignalingClient, SipRequestError } from '../../src/signaling/client.ts';
import { HOP_RTT_HEADER, NODE_HEADER } from '../../src/signaling/cluster.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import type { SignalingServerInit } from '../../src/signaling/server-init.ts';
import { MemoryStore } from '../../src/signaling/store.ts';
import { TURN_CREDENTIAL_HEADER } from '../../src/signaling/turn-credentials.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';

const PASSWORDS = { alice: 'alice-pass-1', bob: 'bob-pass-1', carol: 'carol-pass-1' };
type User = keyof typeof PASSWORDS;
const SECRET = 'cluster-secret-0123456789';
const NODES = { a: '198.18.0.10', b: '198.18.0.20' } as const;
type Node = keyof typeof NODES;

async function setup(init: Partial<SignalingServerInit> = {}) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 7 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const store = new MemoryStore(clock);
  const serverHosts = new Map<Node, ReturnType<typeof net.addHost>>();
  for (const [node, address] of Object.entries(NODES) as [Node, string][]) {
    const host = net.addHost(node, { addresses: [address] });
    // The nodes share a data centre: 1 ms between them (2 ms round trip).
    net.connect(host, internet, { latencyMs: 0.5 });
    serverHosts.set(node, host);
  }
  const hosts = new Map<string, ReturnType<typeof net.addHost>>();
  // alice is 10 ms from the servers, bob 40 ms: their go messages must leave 30 ms apart.
  for (const [i, [name, latencyMs]] of [
    ['alice', 10],
    ['bob', 40],
    ['carol', 5],
    ['mallory', 5],
  ].entries()) {
    const host = net.addHost(name as string, { addresses: [`198.18.3.${i + 1}`] });
    net.connect(host, internet, { latencyMs: latencyMs as number });
    hosts.set(name as string, host);
  }
  const logs: string[] = [];
  const servers = new Map<Node, SignalingServer>();
  const start = async (node: Node, extra: Partial<SignalingServerInit> = {}) => {
    const server = await clock.run(
      SignalingServer.start(
        { network: serverHosts.get(node)!, clock, store },
        {
          listen: { address: NODES[node], port: 5060 },
          realm: 'sc2c.lab',
          users: PASSWORDS,
          node,
          cluster: { secret: SECRET },
          turnCredentials: { secret: `turn-${node}-secret-0123456789`, ttlS: 600 },
          log: (l) => logs.push(`${node}: ${l}`),
          limits: { partyGraceMs: 5000 },
          ...init,
          ...extra,
        },
      ),
    );
    servers.set(node, server);
    return server;
  };
  await start('a');
  await start('b');
  const client = (from: string, node: Node, user: string, password: string) =>
    clock.run(
      SignalingClient.connect(
        { network: hosts.get(from)!, clock },
        {
          server: { address: NODES[node], port: 5060 },
          domain: 'sc2c.lab',
          user,
          password,
          keepaliveMs: 600_000,
        },
      ),
    );
  const registered = async (user: User, node: Node) => {
    const c = await client(user, node, user, PASSWORDS[user]);
    await clock.run(c.register());
    return c;
  };
  return {
    clock,
    store,
    servers,
    start,
    node: (n: Node) => servers.get(n)!,
    host: (name: string) => hosts.get(name)!,
    serverHost: (n: Node) => serverHosts.get(n)!,
    client,
    registered,
    logs,
    close: () => {
      for (const s of servers.values()) s.close();
    },
  };
}

/** Collects the requests a client receives; answers each but ACK with 200. */
function answering(client: SignalingClient): SipRequest[] {
  const got: SipRequest[] = [];
  client.on('request', (request, respond) => {
    got.push(request);
    if (request.method !== 'ACK') respond(200, [], request.method === 'INVITE' ? 'v=0 answer' : '');
  });
  return got;
}

describe('two nodes, one service (issue 24)', () => {
  it('forwards a call to the node its callee is on, and times both go messages from both nodes’ round trips', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const bob = await s.registered('bob', 'b');
    expect((await s.store.getRegistration('bob'))?.node).toBe('b');
    const aliceGot = answering(alice);
    const bobGot = answering(bob);
    // Both nodes measure their party's round trip (OPTIONS) before the call.
    await s.clock.advance(500);
    const answer = await s.clock.run(
      alice.request('INVITE', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sdp']], {
        callId: 'x-1',
        body: 'v=0 offer',
      }),
    );
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('v=0 answer');
    expect(s.node('a').counters.forwardedCalls).toBe(1);
    expect(s.node('a').linkCount).toBeGreaterThanOrEqual(1);
    const invite = bobGot.find((r) => r.method === 'INVITE')!;
    expect(header(invite, 'P-Asserted-Identity')).toBe('<sip:alice@sc2c.lab>');
    // bob's TURN credential is node b's (its relay), issued once.
    expect(invite.headers.filter(([n]) => n === TURN_CREDENTIAL_HEADER)).toHaveLength(1);
    await s.clock.run(alice.request('ACK', 'sip:bob@sc2c.lab', [], { callId: 'x-1' }));
    await s.clock.advance(100);
    expect(bobGot.map((r) => r.method)).toContain('ACK');
    // Both nodes keep the dialog in the store once confirmed.
    expect((await s.store.dialogsOf('a')).map((d) => d.callee)).toEqual([{ user: 'bob', node: 'b' }]);
    expect((await s.store.dialogsOf('b')).map((d) => d.caller)).toEqual([{ user: 'alice', node: 'a' }]);

    // bob's sync goes through b to a, which coordinates.
    const sync = await s.clock.run(
      bob.request('INFO', 'sip:alice@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
        callId: 'x-1',
        body: JSON.stringify({ type: 'sync' }),
      }),
    );
    expect(sync.status).toBe(200);
    await s.clock.advance(500);
    const [schedule] = s.node('a').schedules;
    expect(schedule).toBeDefined();
    expect(s.node('b').schedules).toEqual([]);
    // alice: 21 ms; bob: the link's 2 ms plus b's 81 ms to bob. The nearer waits for the farther.
    expect(schedule!.rttMs.caller).toBeCloseTo(21, 0);
    expect(schedule!.rttMs.callee).toBeCloseTo(83, 0);
    expect(schedule!.delayMs.caller).toBeCloseTo(31, 0);
    expect(schedule!.delayMs.callee).toBe(0);
    const goTo = (got: SipRequest[]) => got.filter((r) => r.method === 'INFO' && /"go"/.test(r.body));
    expect(goTo(aliceGot)).toHaveLength(1);
    expect(goTo(bobGot)).toHaveLength(1);

    const bye = await s.clock.run(bob.request('BYE', 'sip:alice@sc2c.lab', [], { callId: 'x-1' }));
    expect(bye.status).toBe(200);
    expect(aliceGot.map((r) => r.method)).toContain('BYE');
    expect(s.node('a').calls()).toEqual([]);
    expect(s.node('b').calls()).toEqual([]);
    expect(await s.store.dialogsOf('a')).toEqual([]);
    expect(await s.store.dialogsOf('b')).toEqual([]);
    s.close();
  });

  it('refuses a link with the wrong secret, one naming another node, and any link to a server outside a cluster', async () => {
    const s = await setup();
    const link = (secret: string, claimed: string, user = claimed) =>
      s.clock.run(
        SignalingClient.connect(
          { network: s.serverHost('b'), clock: s.clock },
          {
            server: { address: NODES.a, port: 5060 },
            domain: 'sc2c.lab',
            user,
            password: secret,
            registerHeaders: [[NODE_HEADER, claimed]],
          },
        ),
      );
    const status = async (c: SignalingClient) =>
      s.clock.run(
        c
          .register()
          .then(() => 200)
          .catch((e: unknown) => (e instanceof SipRequestError ? e.status : 0)),
      );
    expect(await status(await link('wrong-secret-0123456789', 'b'))).toBe(403);
    expect(await status(await link(SECRET, 'c', 'b'))).toBe(403);
    // A node cannot claim to be the node it links to.
    expect(await status(await link(SECRET, 'a'))).toBe(403);
    expect(await status(await link(SECRET, 'b'))).toBe(200);
    const single = await s.clock.run(
      SignalingServer.start(
        { network: s.serverHost('a'), clock: s.clock },
        { listen: { port: 5070 }, realm: 'sc2c.lab', users: PASSWORDS },
      ),
    );
    const outside = await s.clock.run(
      SignalingClient.connect(
        { network: s.serverHost('b'), clock: s.clock },
        {
          server: { address: NODES.a, port: 5070 },
          domain: 'sc2c.lab',
          user: 'b',
          password: SECRET,
          registerHeaders: [[NODE_HEADER, 'b']],
        },
      ),
    );
    expect(await status(outside)).toBe(403);
    single.close();
    s.close();
  });

  it('a gateway cannot pass for a link: a forged hop round trip and INVITE identity are ignored', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const bob = await s.registered('bob', 'b');
    const mallory = await s.client('mallory', 'b', 'carol', PASSWORDS.carol);
    await s.clock.run(mallory.register());
    const bobGot = answering(bob);
    answering(alice);
    await s.clock.advance(500);
    // carol (mallory's host) claims alice's identity and a huge hop round trip toward b.
    const forged = await s.clock.run(
      mallory.request('INVITE', 'sip:bob@sc2c.lab', [
        ['P-Asserted-Identity', '<sip:alice@sc2c.lab>'],
        [HOP_RTT_HEADER, '5000'],
      ]),
    );
    expect(forged.status).toBe(200);
    const invite = bobGot.find((r) => r.method === 'INVITE')!;
    expect(header(invite, 'P-Asserted-Identity')).toBe('<sip:carol@sc2c.lab>');
    expect(header(invite, HOP_RTT_HEADER)).toBeUndefined();
    // alice's call to bob: a client's hop header on its way to a link is replaced by the node's own.
    const answer = await s.clock.run(
      alice.request('INVITE', 'sip:bob@sc2c.lab', [[HOP_RTT_HEADER, '9999']], { callId: 'x-2' }),
    );
    expect(answer.status).toBe(200);
    const second = bobGot.filter((r) => r.method === 'INVITE')[1]!;
    expect(header(second, HOP_RTT_HEADER)).toBeUndefined();
    s.close();
  });

  it('a killed node: calls to its users get 480; its gateway registers on the other node and the call goes on', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const bob = await s.registered('bob', 'b');
    const carol = await s.registered('carol', 'a');
    const aliceGot = answering(alice);
    answering(bob);
    answering(carol);
    const answer = await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'x-3' }));
    expect(answer.status).toBe(200);
    await s.clock.run(alice.request('ACK', 'sip:bob@sc2c.lab', [], { callId: 'x-3' }));
    await s.clock.advance(100);
    s.node('b').close();
    await s.clock.advance(100);
    // Node b's announcement has not expired yet, but its link is gone: 480, not a hang.
    const meanwhile = await s.clock.run(carol.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'x-4' }));
    expect(meanwhile.status).toBe(480);
    // bob's gateway fails over to node a within the grace: the call is re-bound there.
    const bobAgain = await s.registered('bob', 'a');
    const bobAgainGot = answering(bobAgain);
    expect((await s.store.getRegistration('bob'))?.node).toBe('a');
    await s.clock.advance(6000);
    expect(aliceGot.map((r) => r.method)).not.toContain('BYE');
    const bye = await s.clock.run(alice.request('BYE', 'sip:bob@sc2c.lab', [], { callId: 'x-3' }));
    expect(bye.status).toBe(200);
    expect(bobAgainGot.map((r) => r.method)).toEqual(['BYE']);
    // And bob is callable again, on node a.
    const again = await s.clock.run(carol.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'x-5' }));
    expect(again.status).toBe(200);
    s.close();
  });

  it('a restarted node gets its confirmed dialogs back: after both gateways return, a BYE still reaches the other party', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const carol = await s.registered('carol', 'a');
    answering(alice);
    answering(carol);
    expect(
      (await s.clock.run(alice.request('INVITE', 'sip:carol@sc2c.lab', [], { callId: 'x-6' }))).status,
    ).toBe(200);
    await s.clock.run(alice.request('ACK', 'sip:carol@sc2c.lab', [], { callId: 'x-6' }));
    await s.clock.advance(100);
    s.node('a').close();
    await s.clock.advance(100);
    const restarted = await s.start('a');
    expect(restarted.calls().map((c) => [c.caller, c.callee, c.state])).toEqual([
      ['alice', 'carol', 'confirmed'],
    ]);
    // Its registrations are stale until the gateways return: a call to carol now gets 480, not 404.
    expect((await s.store.getRegistration('carol'))?.stale).toBe(true);
    const bob = await s.registered('bob', 'b');
    const early = await s.clock.run(bob.request('INVITE', 'sip:carol@sc2c.lab', [], { callId: 'x-7' }));
    expect(early.status).toBe(480);
    const alice2 = await s.registered('alice', 'a');
    const carol2 = await s.registered('carol', 'a');
    const carolGot = answering(carol2);
    expect((await s.store.getRegistration('carol'))?.stale).toBeUndefined();
    const bye = await s.clock.run(alice2.request('BYE', 'sip:carol@sc2c.lab', [], { callId: 'x-6' }));
    expect(bye.status).toBe(200);
    expect(carolGot.map((r) => r.method)).toEqual(['BYE']);
    expect(await s.store.dialogsOf('a')).toEqual([]);
    s.close();
  });

  it('a restored dialog whose parties never return is dropped after the grace, and leaves the store', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const carol = await s.registered('carol', 'a');
    answering(carol);
    await s.clock.run(alice.request('INVITE', 'sip:carol@sc2c.lab', [], { callId: 'x-8' }));
    await s.clock.run(alice.request('ACK', 'sip:carol@sc2c.lab', [], { callId: 'x-8' }));
    await s.clock.advance(100);
    s.node('a').close();
    const restarted = await s.start('a');
    expect(restarted.calls()).toHaveLength(1);
    await s.clock.advance(6000);
    expect(restarted.calls()).toEqual([]);
    expect(await s.store.dialogsOf('a')).toEqual([]);
    s.close();
  });

  it('STUN and the relay on the first node follow a gateway to the node in use; others stay', () => {
    const init = {
      sip: { server: { address: NODES.b, port: 5060 }, domain: 'sc2c.lab', user: 'bob', password: 'x' },
      failover: [{ address: NODES.a, port: 5070 }],
      stunServer: { address: NODES.b, port: 3478 },
      relay: { server: { address: '198.18.0.99', port: 3478 }, username: 'bob', password: 'x' },
    };
    const there = onNode(init, { address: NODES.a, port: 5070 });
    expect(there.stunServer).toEqual({ address: NODES.a, port: 3478 });
    expect(there.relay?.server).toEqual({ address: '198.18.0.99', port: 3478 });
    expect(onNode(init, init.sip.server)).toBe(init);
  });

  it('a gateway given both nodes registers on the other at once when its node dies, and is callable there', async () => {
    const s = await setup();
    // Each node runs its own STUN server.
    const stuns = await Promise.all(
      (['a', 'b'] as const).map((n) =>
        StunResponder.start(s.serverHost(n), {
          primary: { address: NODES[n], port: 3478 },
          alternate: { address: NODES[n], port: 3479 },
        }),
      ),
    );
    const bob = await s.clock.run(
      Gateway.start(
        { network: s.host('bob'), clock: s.clock },
        {
          sip: {
            server: { address: NODES.b, port: 5060 },
            domain: 'sc2c.lab',
            user: 'bob',
            password: PASSWORDS.bob,
          },
          failover: [{ address: NODES.a, port: 5060 }],
          // On its first node's host: it follows the gateway to the node in use.
          stunServer: { address: NODES.b, port: 3478 },
          stunRtoMs: 100,
        },
      ),
    );
    expect((await s.store.getRegistration('bob'))?.node).toBe('b');
    const waits: number[] = [];
    const registeredWith: string[] = [];
    bob.on('disconnected', (_reason, retryInMs) => waits.push(retryInMs));
    bob.on('reconnected', (server) => registeredWith.push(server.address));
    s.node('b').close();
    await s.clock.advance(1000);
    expect(waits[0]).toBe(0);
    expect(registeredWith).toEqual([NODES.a]);
    expect(bob.init.stunServer).toEqual({ address: NODES.a, port: 3478 });
    expect(bob.configured.stunServer).toEqual({ address: NODES.b, port: 3478 });
    expect((await s.store.getRegistration('bob'))?.node).toBe('a');
    const carol = await s.registered('carol', 'a');
    const answer = await s.clock.run(carol.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'x-9' }));
    // bob's gateway itself answered (an INVITE without an offer is not acceptable): reached through node a.
    expect(answer.status).toBe(488);
    bob.close();
    for (const stun of stuns) stun.close();
    s.close();
  });

  it('a store that fails: a call to another node gets 503 with Retry-After, calls within a node go on, writes are counted', async () => {
    const s = await setup();
    const alice = await s.registered('alice', 'a');
    const carol = await s.registered('carol', 'a');
    await s.registered('bob', 'b');
    answering(carol);
    const down = new Error('connection refused');
    const { getRegistration, putRegistration } = s.store;
    s.store.getRegistration = () => Promise.reject(down);
    s.store.putRegistration = () => Promise.reject(down);
    const remote = await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'x-10' }));
    expect(remote.status).toBe(503);
    expect(header(remote, 'Retry-After')).toBe('5');
    const local = await s.clock.run(alice.request('INVITE', 'sip:carol@sc2c.lab', [], { callId: 'x-11' }));
    expect(local.status).toBe(200);
    const errors = s.node('a').counters.storeErrors;
    await s.registered('carol', 'a');
    await s.clock.advance(10);
    expect(s.node('a').counters.storeErrors).toBe(errors + 1);
    // /healthz says so until a write goes through again.
    expect(s.node('a').store).toBe(false);
    s.store.getRegistration = getRegistration;
    s.store.putRegistration = putRegistration;
    await s.registered('carol', 'a');
    await s.clock.advance(10);
    expect(s.node('a').store).toBe(true);
    s.close();
  });
});
