/**
 * The TCP punch alone (gateway/tcp-punch.ts) between two sequential NATs on the virtual network:
 * in step, with one side late (its NAT resets or drops the early SYN), primed with a low TTL, and
 * against someone who connects without the call's credentials.
 */
import { describe, expect, it } from 'vitest';
import { punchTcp, type TcpPunchInit } from '../../src/gateway/tcp-punch.ts';
import type { UnsolicitedTcpReply } from '../../src/nat/behaviour.ts';
import type { CallDescription } from '../../src/protocol/sdp.ts';
import { profiles, world } from '../net/world.ts';

const description = (ufrag: string, pwd: string): CallDescription => ({
  publicEndpoint: { address: '0.0.0.0', port: 9 },
  ufrag,
  pwd,
  nat: 'test',
  mode: 'sc2c',
  portSource: 'predicted',
  rtcpMux: true,
});
const A = description('alice', 'a'.repeat(24));
const B = description('bob', 'b'.repeat(24));

/** World NATs start at 20 000 (A) and 30 000 (B): each side's first TCP session takes that port. */
function pair(reply: UnsolicitedTcpReply, lateMs = 0, pks = false) {
  const behaviour = { ...profiles.resolve('symmetric-seq1'), unsolicitedTcpReply: reply, pks };
  const w = world({ natA: behaviour, natB: behaviour });
  const alice = (extra: Partial<TcpPunchInit> = {}) =>
    punchTcp(
      { network: w.alice, clock: w.clock },
      {
        localPort: 40_001,
        remote: { address: '198.18.2.1', port: 30_000 },
        local: A,
        remoteDescription: B,
        timeoutMs: 4000,
        ...extra,
      },
    );
  const bob = (extra: Partial<TcpPunchInit> = {}) =>
    punchTcp(
      { network: w.bob, clock: w.clock },
      {
        localPort: 40_002,
        remote: { address: '198.18.1.1', port: 20_000 },
        local: B,
        remoteDescription: A,
        timeoutMs: 4000,
        ...extra,
      },
    );
  const run = (late: boolean, prime?: { ttl: number; waitMs: number }) =>
    Promise.all([
      alice({ prime }),
      (late ? w.clock.advance(lateMs) : Promise.resolve()).then(() => bob({ prime })),
    ]);
  return { w, run, alice, bob };
}

describe('TCP punch', () => {
  it('meets in a simultaneous open when both SYNs leave together, and proves the credentials', async () => {
    const { w, run } = pair('rst');
    const [a, b] = await w.clock.run(run(false));
    expect(a).toMatchObject({ ok: true, connects: 1, remote: { address: '198.18.2.1', port: 30_000 } });
    expect(b).toMatchObject({ ok: true, connects: 1, remote: { address: '198.18.1.1', port: 20_000 } });
    if (a.ok && b.ok) {
      const got: number[] = [];
      b.socket.on('message', (d) => got.push(d.byteLength));
      a.socket.send(new Uint8Array(1200), a.remote);
      await w.clock.advance(100);
      expect(got).toEqual([1200]);
      a.puncher.close();
      b.puncher.close();
      a.socket.close();
      b.socket.close();
    }
  });

  it.each(['rst', 'drop'] as const)(
    'connects anyway when one side is 300 ms late and its NAT answers %s',
    async (reply) => {
      const { w, run } = pair(reply, 300);
      const [a, b] = await w.clock.run(run(true));
      expect(a.ok && b.ok).toBe(true);
      // A reset SYN is tried again from the same port; a dropped one waits for Linux's retransmission.
      if (reply === 'rst') expect(a.connects).toBeGreaterThan(1);
      else expect(a.connects).toBe(1);
    },
  );

  it('fails against a PKS NAT that the early SYN knocked on, which is what the go is for', async () => {
    const { w, run } = pair('drop', 300, true);
    const [a, b] = await w.clock.run(run(true));
    expect(a.ok || b.ok).toBe(false);
    expect(a.ok ? '' : a.reason).toMatch(/no direct TCP connection/);
  });

  it('primes past a PKS NAT with a low-TTL SYN (virtual network only), where the late side alone would knock', async () => {
    const { w, run } = pair('drop', 50, true);
    const [a, b] = await w.clock.run(run(true, { ttl: 2, waitMs: 100 }));
    expect(a.ok && b.ok).toBe(true);
  });

  it('does not take a connection that does not prove the call credentials', async () => {
    const { w, alice, bob } = pair('rst');
    const wrong = description('mallory', 'm'.repeat(24));
    const [a, m] = await w.clock.run(
      Promise.all([alice({ timeoutMs: 2000 }), bob({ local: wrong, timeoutMs: 2000 })]),
    );
    expect(a.ok).toBe(false);
    expect(m.ok).toBe(false);
    expect(a.ok ? '' : a.reason).toMatch(/did not prove the call's credentials/);
    await w.clock.advance(100);
    expect(w.alice.openHandles()).toBe(0);
  });
});
