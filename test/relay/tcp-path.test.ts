/**
 * Issue 21 on whole calls (virtual network): a TCP simultaneous open between two NATed gateways,
 * synchronized by the server's go, authenticated with the call's credentials over RFC 4571 frames,
 * then DTLS-SRTP over it, where UDP is blocked on one side or TCP is asked for.
 */
import { describe, expect, it } from 'vitest';
import { createIdentity } from '../../src/protocol/dtls/certificate.ts';
import { exchange, setup } from './call-world.ts';

const both = { alice: { identity: createIdentity('alice') }, bob: { identity: createIdentity('bob') } };

describe('TCP direct path', () => {
  it('connects a caller whose network blocks UDP straight to the camera over TCP, encrypted, instead of relaying', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', {
      tcpUsers: ['alice'],
      udpBlockedA: true,
      transport: 'auto',
      dtls: both,
    });
    const { caller, callee, outcome, other } = await s.call();
    expect(caller.probe.udpBlocked).toBe(true);
    expect(caller.tcpProbe).toMatchObject({ allocation: 'sequential', delta: 1 });
    expect(outcome.local!.udpBlocked).toBe(true);
    expect(outcome.local!.tcp!.source).toBe('predicted');
    expect(other.local!.tcp!.source).toBe('predicted');
    expect(outcome).toMatchObject({
      ok: true,
      transport: 'tcp',
      route: 'direct',
      encryption: 'DTLS-SRTP AEAD_AES_128_GCM',
    });
    expect(other).toMatchObject({ ok: true, transport: 'tcp', route: 'direct' });
    // The connection is the one each side predicted: the peer is where its SDP said it would be.
    expect(outcome.path!.remote).toEqual(outcome.remote!.tcp!.endpoint);
    expect(other.path!.remote).toEqual(other.remote!.tcp!.endpoint);
    const { there, back } = await exchange(s.clock, outcome.path!, other.path!);
    expect(there).toBeGreaterThanOrEqual(95);
    expect(back).toBeGreaterThanOrEqual(95);
    expect(outcome.routed!.counters.relay.packetsSent).toBe(0);
    caller.close();
    callee.close();
    await s.clock.advance(5000);
    // Nothing of the call outlives the gateways: no connection, connect or socket left.
    expect(s.alice.openHandles()).toBe(0);
    expect(s.bob.openHandles()).toBe(0);
    s.close();
  });

  it('moves a call to a camera whose UDP is blocked from the relay to TCP on a retry at once', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', {
      tcpUsers: ['bob'],
      udpBlockedB: true,
      transport: 'auto',
      dtls: both,
    });
    const { caller, callee, outcome, other } = await s.call();
    // The viewer could not know: its offer had no TCP candidate, so the call starts relayed.
    expect(outcome.local!.tcp).toBeUndefined();
    expect(outcome.remote!.udpBlocked).toBe(true);
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(outcome.directReason).toMatch(/must be TCP \(UDP is blocked\) and our side has no TCP candidate/);
    // The first retry goes at once (not after relay.retryDirectMs, 2 s here), offering TCP.
    await s.clock.advance(1000);
    expect(outcome.routed!.switches).toBe(1);
    expect(outcome.routed!.route).toBe('direct');
    expect(outcome.routed!.directTransport).toBe('tcp');
    expect(other.routed!.directTransport).toBe('tcp');
    const { there, back } = await exchange(s.clock, outcome.routed!, other.routed!);
    expect(there).toBeGreaterThanOrEqual(95);
    expect(back).toBeGreaterThanOrEqual(95);
    caller.close();
    callee.close();
    s.close();
  });

  it('relays, as before, when UDP is blocked and the gateways keep to UDP (transport udp)', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', {
      tcpUsers: ['alice'],
      udpBlockedA: true,
    });
    const { caller, callee, outcome } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    expect(outcome.transport).toBeUndefined();
    expect(outcome.local!.tcp).toBeUndefined();
    caller.close();
    callee.close();
    s.close();
  });

  it.each([
    ['drop', 'drop'],
    ['rst', 'rst'],
    ['icmp-port-unreachable', 'icmp-port-unreachable'],
  ] as const)(
    'opens TCP between two sequential NATs that answer an early SYN with %s (transport tcp)',
    async (_, reply) => {
      const s = await setup('symmetric-seq1', 'symmetric-seq2', {
        transport: 'tcp',
        tcpReply: reply,
        dtls: both,
      });
      const { caller, callee, outcome, other } = await s.call();
      expect(outcome).toMatchObject({ ok: true, transport: 'tcp', route: 'direct' });
      expect(other).toMatchObject({ ok: true, transport: 'tcp' });
      const { there } = await exchange(s.clock, outcome.path!, other.path!, 1000);
      expect(there).toBeGreaterThanOrEqual(45);
      caller.close();
      callee.close();
      s.close();
    },
  );

  it('has no TCP path to a NAT that allocates TCP ports at random, and says why', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-random', { transport: 'tcp' });
    const { caller, callee, outcome } = await s.call();
    expect(callee.tcpProbe?.allocation).toBe('random');
    expect(outcome.remote!.tcp).toBeUndefined();
    // Both sides have a relay: the pair goes straight to it.
    expect(outcome).toMatchObject({ ok: true, route: 'relay' });
    caller.close();
    callee.close();
    s.close();
  });
});
