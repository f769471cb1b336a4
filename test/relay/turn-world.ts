/** The TURN tests' world: a server, alice and bob behind symmetric NATs, a public peer. */
import { sleep, VirtualClock } from '../../src/net/clock.ts';
import type { Network } from '../../src/net/types.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { TurnClient, type TurnClientInit } from '../../src/relay/turn-client.ts';
import { TurnServer, type TurnServerInit } from '../../src/relay/turn-server.ts';
import { profiles } from '../net/world.ts';

export const TURN = { address: '198.18.0.10', port: 3478 };
export const USERS = { alice: 'alice-pass', bob: 'bob-pass' };

export async function setup(init: Partial<TurnServerInit> = {}, slowBindMs = 0) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 3 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10'] });
  const natA = net.addNat('nat-a', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: profiles.resolve('symmetric-random'),
  });
  const natB = net.addNat('nat-b', {
    publicAddress: '198.18.2.1',
    insideAddress: '10.0.2.1',
    behaviour: profiles.resolve('symmetric-random'),
  });
  const alice = net.addHost('alice', { addresses: ['10.0.1.2'] });
  const bob = net.addHost('bob', { addresses: ['10.0.2.2'] });
  const peer = net.addHost('peer', { addresses: ['198.18.0.66'] });
  net.connect(serverHost, internet, { latencyMs: 5 });
  net.connect(peer, internet, { latencyMs: 5 });
  net.connect(natA, internet, { latencyMs: 10 });
  net.connect(natB, internet, { latencyMs: 10 });
  net.connect(alice, natA, { latencyMs: 1 });
  net.connect(bob, natB, { latencyMs: 1 });
  // Relay sockets that take a while to bind, as a busy kernel's can: Allocates then overlap.
  let bindDelayMs = 0;
  const network: Network = {
    bindUdp: async (bind) => {
      if (bindDelayMs > 0) await sleep(clock, bindDelayMs);
      return serverHost.bindUdp(bind);
    },
    connect: (to, connect) => serverHost.connect(to, connect),
    listen: (listen) => serverHost.listen(listen),
  };
  const server = await TurnServer.start(
    { network, clock },
    { listen: TURN, realm: 'sc2c.lab', users: USERS, secret: 'per-call-secret', ...init },
  );
  bindDelayMs = slowBindMs;
  const allocate = async (
    host = alice,
    username = 'alice',
    password = USERS.alice,
    more: Partial<TurnClientInit> = {},
  ) => {
    const socket = await host.bindUdp();
    const client = await clock.run(
      TurnClient.allocate({ clock }, socket, { server: TURN, username, password, rtoMs: 100, ...more }),
    );
    return { socket, client };
  };
  return { clock, net, network, server, alice, bob, peer, allocate };
}
