/**
 * Relay shards as real processes on loopback (issue 23, many cores): `sc2c server` with
 * `turn.shards: 2` starts two shard processes; two UDP clients are each redirected to a shard (one
 * each, least-loaded first) and relay to each other; /metrics and /allocations count what the
 * shards did. A killed shard is started again and takes allocations; the server's exit takes the
 * shards with it.
 */
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import { TurnClient } from '../../src/relay/turn-client.ts';
import { freePort } from '../free-port.ts';
import { scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-shards-');

/** Two consecutive free UDP ports on loopback. */
async function twoFreeUdpPorts(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const base = await freePort();
    const ok = await Promise.all(
      [base, base + 1].map(
        (port) =>
          new Promise<boolean>((resolve) => {
            const probe = createSocket('udp4');
            probe.once('error', () => resolve(false));
            probe.bind(port, '127.0.0.1', () => probe.close(() => resolve(true)));
          }),
      ),
    );
    if (ok.every(Boolean) && base + 1 < 65_536) return base;
  }
  throw new Error('no two consecutive free ports');
}

/** The shard processes of `pid`: its children running the shard entry. */
function shardPids(pid: number): number[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(pid), '-f', 'relay-shard-entry'], { encoding: 'utf8' });
  } catch {
    return [];
  }
  return out.split('\n').filter(Boolean).map(Number);
}

describe('sc2c server with relay shards', () => {
  it('redirects UDP allocations to two shard processes that relay, counts them, restarts a killed one, and stops them with it', async () => {
    const [sip, stun, admin, shardPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await twoFreeUdpPorts(),
    ];
    const config = join(dir, 'server.yaml');
    writeFileSync(
      config,
      `sip:
  listen: { address: 127.0.0.1, port: ${sip} }
  realm: sc2c.test
  users: { alice: alice-shard-pass-1, bob: bob-shard-pass-1 }
stun:
  primary: { address: 127.0.0.1, port: ${stun} }
  alternate: { address: 127.0.0.2, port: ${stun + 1} }
turn:
  shards: 2
  shardPort: ${shardPort}
  allowedPeers: [127.0.0.0/8]
  kernelForwarding: off
admin:
  listen: { address: 127.0.0.1, port: ${admin} }
`,
    );
    const server = await startServer(sc2c, config);
    expect(server.err()).toMatch(new RegExp(`relay shards on ports ${shardPort} ${shardPort + 1}`));
    const pid = server.child.pid!;
    expect(shardPids(pid)).toHaveLength(2);

    const c = { clock: new SystemClock() };
    const network = new NodeNetwork();
    const front = { address: '127.0.0.1', port: stun };
    const sockets = [
      await network.bindUdp({ address: '127.0.0.1' }),
      await network.bindUdp({ address: '127.0.0.1' }),
    ];
    const alice = await TurnClient.allocate(c, sockets[0]!, {
      server: front,
      username: 'alice',
      password: 'alice-shard-pass-1',
    });
    const bob = await TurnClient.allocate(c, sockets[1]!, {
      server: front,
      username: 'bob',
      password: 'bob-shard-pass-1',
    });
    // Each on a shard, one each: the least-loaded takes the next.
    expect([alice.server.port, bob.server.port].sort()).toEqual([shardPort, shardPort + 1]);

    // Alice's peer is bob's relayed address; bob permits alice's relayed address.
    await bob.createPermission([alice.relayed.address]);
    await alice.bindChannel(bob.relayed);
    const got: string[] = [];
    bob.on('data', (data) => got.push(new TextDecoder().decode(data)));
    for (let i = 0; i < 20; i++) alice.send(new TextEncoder().encode(`frame ${i}`), bob.relayed);
    await until('relayed frames', () => got.length >= 18, 5000);

    const get = async (route: string) => (await fetch(`http://127.0.0.1:${admin}${route}`)).text();
    // The shards report every second.
    const counted = /sc2c_turn_relayed_to_peers_packets_total (1[89]|20)\b/;
    let metrics = '';
    const both = /sc2c_turn_allocations 2\b/;
    for (let i = 0; i < 30 && !(counted.test(metrics) && both.test(metrics)); i++) {
      await new Promise((r) => setTimeout(r, 200));
      metrics = await get('/metrics');
    }
    expect(metrics).toMatch(/sc2c_turn_redirected_total 2\b/);
    expect(metrics).toMatch(both);
    expect(metrics).toMatch(counted);
    const allocations = JSON.parse(await get('/allocations')) as { user: string }[];
    expect(allocations.map((a) => a.user).sort()).toEqual(['alice', 'bob']);

    // A shard killed: started again, and a new allocation lands on a shard that is up.
    const [first] = shardPids(pid);
    process.kill(first!, 'SIGKILL');
    await until('the restart', () => /died \(SIGKILL\); starting it again/.test(server.err()), 5000);
    await until('two shards again', () => shardPids(pid).length === 2, 10_000);
    const again = await network.bindUdp({ address: '127.0.0.1' });
    const carol = await TurnClient.allocate(c, again, {
      server: front,
      username: 'alice',
      password: 'alice-shard-pass-1',
    });
    expect([shardPort, shardPort + 1]).toContain(carol.server.port);

    for (const client of [alice, bob, carol]) await client.close();
    for (const socket of [...sockets, again]) socket.close();
    const shardsBefore = shardPids(pid);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    // No shard outlives its server.
    await until('the shards to exit', () => shardsBefore.every((p) => !existsPid(p)), 5000);
  }, 60_000);
});

function existsPid(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
