/**
 * Issue 24, restart without loss, as real processes on loopback: `sc2c server` with a Redis store
 * (Debian's redis-server) carries a confirmed call between two SIP clients, then crashes (SIGKILL:
 * no cleanup at all) and is started again. Its registrations are stale until the clients register
 * again; the call is back, and the caller's BYE after the restart reaches the callee.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type RunningRedis, startRedis } from '../../src/lab/redis.ts';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import type { SipRequest } from '../../src/protocol/sip/message.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { freePort } from '../free-port.ts';
import { loopbackConfigs, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-restart-');
let redis: RunningRedis | undefined;
afterAll(async () => {
  await redis?.stop();
});

const PASSWORDS = { alice: 'alice-restart-pass-1', bob: 'bob-restart-pass-1' } as const;

describe('sc2c server restarted with a Redis store (issue 24)', () => {
  it('a call confirmed before a crash is back after the restart: the BYE reaches the other party', async () => {
    redis = await startRedis({ address: '127.0.0.1', port: await freePort() });
    const [sip, stun] = [await freePort(), await freePort()];
    const { server: config } = loopbackConfigs(
      dir,
      { sip, stun },
      `    alice: { password: ${PASSWORDS.alice}, callers: any }\n    bob: { password: ${PASSWORDS.bob}, callers: any }`,
      { server: `store: ${redis.url}\nnode: solo\n`, gateway: '' },
    );
    const c = { network: new NodeNetwork(), clock: new SystemClock() };
    const client = async (user: keyof typeof PASSWORDS) => {
      const signaling = await SignalingClient.connect(c, {
        server: { address: '127.0.0.1', port: sip },
        domain: 'sc2c.test',
        user,
        password: PASSWORDS[user],
      });
      await signaling.register();
      return signaling;
    };
    const answering = (signaling: SignalingClient): SipRequest[] => {
      const got: SipRequest[] = [];
      signaling.on('request', (request, respond) => {
        got.push(request);
        if (request.method !== 'ACK') respond(200);
      });
      return got;
    };
    let server = await startServer(sc2c, config);
    const clients: SignalingClient[] = [];
    try {
      const alice = await client('alice');
      const bob = await client('bob');
      clients.push(alice, bob);
      const bobGot = answering(bob);
      const ok = await alice.request('INVITE', alice.uri('bob'), [], { callId: 'restart-1' });
      expect(ok.status).toBe(200);
      await alice.request('ACK', alice.uri('bob'), [], { callId: 'restart-1' });
      await until('the ACK at bob', () => bobGot.some((r) => r.method === 'ACK'));
      // The dialog is written at the ACK; give the write its moment before the crash.
      await new Promise((r) => setTimeout(r, 200));

      server.child.kill('SIGKILL');
      await server.exited;
      server = await startServer(sc2c, config);
      expect(server.err()).toMatch(/node solo: 1 dialogs restored, 2 registrations marked stale/);

      // The clients' connections died with the old process: they register again, as gateways do.
      const alice2 = await client('alice');
      const bob2 = await client('bob');
      clients.push(alice2, bob2);
      const bob2Got = answering(bob2);
      const bye = await alice2.request('BYE', alice2.uri('bob'), [], { callId: 'restart-1' });
      expect(bye.status).toBe(200);
      expect(bob2Got.map((r) => r.method)).toEqual(['BYE']);
      // A Call-ID the server never saw is still refused: the restart restored, it did not invent.
      const stranger = await alice2.request('BYE', alice2.uri('bob'), [], { callId: 'never-seen' });
      expect(stranger.status).toBe(481);
    } finally {
      for (const signaling of clients) signaling.close();
      server.child.kill('SIGKILL');
    }
  }, 60_000);
});
