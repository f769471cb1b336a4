/**
 * DESIGN-call: a call that closes in any state leaves no timer and no socket behind. Each case
 * stops a call at a different point (or lets it fail at one), closes both gateways and the server,
 * and counts what is still live on the virtual network.
 */
import { describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/gateway/gateway.ts';
import { createIdentity } from '../../src/protocol/dtls/certificate.ts';
import { exchange, setup, stream } from '../relay/call-world.ts';

const alice = { identity: createIdentity('alice') };
const bob = { identity: createIdentity('bob') };

type World = Awaited<ReturnType<typeof setup>>;

async function expectNothingLeft(s: World, gateways: Gateway[]): Promise<void> {
  for (const g of gateways) g.close();
  s.close();
  // Long enough for every retransmission, consent and keepalive timer to have fired if left set.
  await s.clock.advance(120_000);
  expect({
    timers: s.clock.pendingTimers(),
    alice: s.alice.openHandles(),
    bob: s.bob.openHandles(),
    server: s.serverHost.openHandles(),
  }).toEqual({ timers: 0, alice: 0, bob: 0, server: 0 });
}

describe('a call closed in any state leaves nothing behind', () => {
  it('established direct and encrypted, media flowing, hung up by the caller', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: { alice, bob } });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome.encryption).toMatch(/DTLS-SRTP/);
    await exchange(s.clock, outcome.path!, other.path!, 500);
    caller.hangup(outcome.callId);
    await s.clock.advance(1000);
    await expectNothingLeft(s, [caller, callee]);
  });

  it('on the relay (a pair that cannot punch), closed by closing the gateways mid-call', async () => {
    const s = await setup('symmetric-random', 'symmetric-random', { dtls: { alice, bob } });
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome.route).toBe('relay');
    await exchange(s.clock, outcome.path!, other.path!, 500);
    await expectNothingLeft(s, [caller, callee]);
  });

  it('after media moved to the relay and a direct retry ran', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: { alice, bob } });
    const { caller, callee, outcome, other } = await s.call();
    const there = stream(s.clock, outcome.path!, other.path!);
    const back = stream(s.clock, other.path!, outcome.path!);
    await s.clock.advance(1000);
    s.a.nat.flush('udp'); // the caller's NAT drops its mappings: media moves to the relay
    await s.clock.advance(8000);
    there.stop();
    back.stop();
    expect(outcome.routed!.switches).toBeGreaterThan(0);
    await expectNothingLeft(s, [caller, callee]);
  });

  it('failed in the DTLS handshake (a certificate that does not match its SDP)', async () => {
    const impostor = { identity: { ...createIdentity('x'), fingerprint: bob.identity.fingerprint } };
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: { alice, bob: impostor } });
    const { caller, callee, outcome } = await s.call();
    expect(outcome.ok).toBe(false);
    await s.clock.advance(1000);
    await expectNothingLeft(s, [caller, callee]);
  });

  it('closed while the punch runs (before any path confirmed)', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: { alice, bob } });
    const caller = await s.gateway(s.alice, 'alice');
    const callee = await s.gateway(s.bob, 'bob');
    const placed = caller.call('bob');
    // Long enough for the INVITE and the go, not for the checks to be answered.
    await s.clock.advance(150);
    caller.close();
    callee.close();
    await s.clock.run(placed);
    await expectNothingLeft(s, [caller, callee]);
  });

  it('plain RTP on both sides, ended by the callee', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-seq1');
    const { caller, callee, outcome, other } = await s.call();
    expect(outcome.encryption).toBe('none');
    await exchange(s.clock, outcome.path!, other.path!, 500);
    callee.hangup(other.callId);
    await s.clock.advance(1000);
    await expectNothingLeft(s, [caller, callee]);
  });
});
