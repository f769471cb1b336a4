/**
 * Issue 21 with real processes and kernels: the TCP simultaneous open between two gateways in lab
 * namespaces, through the NAT model on TUN devices (PKS caller, IPS camera) with the viewer's UDP
 * blocked by nftables, and through the kernel's own NAT (masquerade: conntrack meets the two SYNs).
 */
import { describe, expect, it } from 'vitest';
import { blockedUdpPackets, blockUdp } from '../../src/lab/block-udp.ts';
import { runLabCalls } from '../../src/lab/calls.ts';
import { labUnavailable, probeIn } from './support.ts';

const unavailable = await labUnavailable();
const TCP_RELAY = ['--relay', 'turn:198.18.0.10:3478?transport=tcp'];

describe.skipIf(unavailable)('TCP hole punching in the kernel lab', () => {
  it('goes direct over TCP where the viewer network blocks UDP (PKS viewer, IPS camera), no byte relayed', async () => {
    let dropped = 0;
    let alice = '';
    let primeTtl: number | null | undefined;
    const runs = await runLabCalls({
      natA: 'symmetric-seq1+pks',
      natB: 'symmetric-seq1+ips',
      rttMs: 40,
      modes: ['sc2c'],
      callsPerMode: 2,
      name: `tcp${process.pid % 10_000}`,
      calleeArgs: ['--relay', '198.18.0.10:3478'],
      callArgs: () => ['--no-media', ...TCP_RELAY],
      beforeCalls: async (hosts) => {
        alice = hosts.alice!;
        // Before the block: the priming TTL read from the PKS NAT's counter (issue 21).
        const probe = (await probeIn(alice, '--prime-ttl')) as { primeTtl?: { ttl: number | null } };
        primeTtl = probe.primeTtl?.ttl;
        await blockUdp(alice);
      },
      inspect: async () => {
        dropped = await blockedUdpPackets(alice);
      },
    });
    for (const call of runs.sc2c!) {
      expect(call).toMatchObject({ ok: true, path: 'direct-tcp', route: 'direct' });
      expect((call as { bytes?: { relay: { bytes: number } } }).bytes?.relay.bytes).toBe(0);
      expect(call.local?.portSource).toBe('unpredictable');
      // The peer is where the camera predicted it would be.
      expect(call.pair?.remote.address).toBe('198.18.2.1');
    }
    // The block was real: the viewer's STUN and port-mapping requests died in its own host.
    expect(dropped).toBeGreaterThan(0);
    // Directly behind its NAT (a TUN router in the lab), the smallest TTL that crosses it is 2.
    expect(primeTtl).toBe(2);
  }, 180_000);

  it('meets in the kernel NAT too: two masquerade boxes, --transport tcp on both gateways', async () => {
    const runs = await runLabCalls({
      natA: 'kernel:masquerade',
      natB: 'kernel:masquerade',
      rttMs: 40,
      modes: ['sc2c'],
      callsPerMode: 2,
      name: `tcpk${process.pid % 10_000}`,
      calleeArgs: ['--no-relay', '--transport', 'tcp'],
      callArgs: () => ['--no-media', '--no-relay', '--transport', 'tcp'],
    });
    for (const call of runs.sc2c!) expect(call).toMatchObject({ ok: true, path: 'direct-tcp' });
  }, 180_000);
});
