/**
 * Issue 24: one compliance suite run against both signaling stores, the in-memory one and Redis
 * (a real redis-server on loopback), plus what only Redis must survive: a value someone else wrote
 * under our keys, and a TTL Redis itself enforces.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRedis, startRedis } from '../../src/lab/redis.ts';
import { SystemClock, VirtualClock } from '../../src/net/clock.ts';
import { RedisStore } from '../../src/signaling/redis-store.ts';
import { MemoryStore, type SignalingStore } from '../../src/signaling/store.ts';
import { freePort } from '../free-port.ts';

interface Harness {
  store: SignalingStore;
  /** Epoch ms now, as the store sees it. */
  now: () => number;
  /** Lets `ms` pass. */
  pass: (ms: number) => Promise<void>;
}

function suite(name: string, make: () => Promise<Harness>): void {
  describe(`${name} store`, () => {
    it('keeps a registration until it expires, and removes it only for the node that holds it', async () => {
      const { store, now, pass } = await make();
      await store.putRegistration({
        user: 'cam1',
        node: 'a',
        contact: '<sip:cam1@x>',
        expiresAtMs: now() + 400,
      });
      expect(await store.getRegistration('cam1')).toMatchObject({ node: 'a', contact: '<sip:cam1@x>' });
      // cam1 moved to node b; node a's late cleanup must not remove it.
      await store.putRegistration({
        user: 'cam1',
        node: 'b',
        contact: '<sip:cam1@y>',
        natClass: 'symmetric',
        rttMs: 12.5,
        expiresAtMs: now() + 400,
      });
      await store.removeRegistration('cam1', 'a');
      expect(await store.getRegistration('cam1')).toMatchObject({
        node: 'b',
        natClass: 'symmetric',
        rttMs: 12.5,
      });
      expect((await store.registrationsOf('a')).map((r) => r.user)).toEqual([]);
      expect((await store.registrationsOf('b')).map((r) => r.user)).toEqual(['cam1']);
      await store.removeRegistration('cam1', 'b');
      expect(await store.getRegistration('cam1')).toBeUndefined();
      await store.putRegistration({ user: 'cam2', node: 'a', contact: 'c', expiresAtMs: now() + 150 });
      await pass(300);
      expect(await store.getRegistration('cam2')).toBeUndefined();
      expect(await store.registrationsOf('a')).toEqual([]);
    });

    it('announces nodes for their TTL, keeps dialogs per node, and takes a record key once', async () => {
      const { store, pass } = await make();
      await store.putNode({ id: 'a', address: '198.18.0.10', port: 5060 }, 150);
      expect(await store.getNode('a')).toEqual({ id: 'a', address: '198.18.0.10', port: 5060 });
      await pass(300);
      expect(await store.getNode('a')).toBeUndefined();
      const dialog = {
        callId: 'c1',
        caller: { user: 'alice' },
        callee: { user: 'bob', node: 'b' },
        startedAtMs: 1,
      };
      await store.putDialog('a', dialog, 60_000);
      // A node whose id starts with another's keeps its own dialogs.
      await store.putDialog('ab', { ...dialog, callId: 'c*2' }, 60_000);
      expect(await store.dialogsOf('a')).toEqual([dialog]);
      expect((await store.dialogsOf('ab')).map((d) => d.callId)).toEqual(['c*2']);
      expect(await store.dialogsOf('b')).toEqual([]);
      await store.removeDialog('a', 'c1');
      expect(await store.dialogsOf('a')).toEqual([]);
      expect(await store.claimRecord('alice|caller|c1', 60_000)).toBe(true);
      expect(await store.claimRecord('alice|caller|c1', 60_000)).toBe(false);
      await store.releaseRecord('alice|caller|c1');
      expect(await store.claimRecord('alice|caller|c1', 60_000)).toBe(true);
      await store.close();
    });
  });
}

suite('memory', async () => {
  const clock = new VirtualClock();
  return { store: new MemoryStore(clock), now: () => clock.epochMs(), pass: (ms) => clock.advance(ms) };
});

describe('redis', () => {
  let redis: RunningRedis | undefined;
  const clients: Redis[] = [];
  beforeAll(async () => {
    redis = await startRedis({ address: '127.0.0.1', port: await freePort() });
  }, 20_000);
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await redis?.stop();
  });
  let serial = 0;
  const open = async (): Promise<{ client: Redis; store: RedisStore }> => {
    const client = new Redis(redis!.url, { lazyConnect: true });
    clients.push(client);
    await client.connect();
    // Each test its own key prefix: the same server, no test sees another's keys.
    return { client, store: new RedisStore(client, `t${++serial}:`) };
  };
  suite('redis', async () => {
    const { store } = await open();
    const clock = new SystemClock();
    return {
      store,
      now: () => clock.epochMs(),
      pass: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    };
  });

  it('reads back nothing from a key someone else wrote in another shape', async () => {
    const { client, store } = await open();
    const prefix = `t${serial}:`;
    await client.set(`${prefix}reg:eve`, '{"user":"eve","node":{"x":1},"contact":"c","expiresAtMs":1}');
    await client.set(`${prefix}reg:bad`, 'not json');
    await client.set(`${prefix}node:n1`, JSON.stringify({ id: 'n1', address: '198.18.0.1', port: 70_000 }));
    await client.set(`${prefix}dialog:a:ghost`, JSON.stringify({ callId: 'ghost', caller: 'alice' }));
    expect(await store.getRegistration('eve')).toBeUndefined();
    expect(await store.getRegistration('bad')).toBeUndefined();
    expect(await store.getNode('n1')).toBeUndefined();
    expect(await store.dialogsOf('a')).toEqual([]);
  });
});
