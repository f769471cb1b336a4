import { describe, expect, it } from 'vitest';
import { inbound, nat, out, PUBLIC, udp } from './helpers.ts';

const A = '10.0.1.2:5000';
const A2 = '10.0.1.2:5001';
const B = '10.0.1.3:6000';
const R1 = '198.18.0.10:3478';
const R1b = '198.18.0.10:3479';
const R2 = '198.18.0.11:3478';

describe('mapping behaviour', () => {
  it('endpoint-independent: one public port for every destination', () => {
    const n = nat({ mapping: 'endpoint-independent' });
    expect(new Set([out(n, A, R1), out(n, A, R1b), out(n, A, R2)]).size).toBe(1);
  });

  it('address-dependent: same port per remote address, new port for a new address', () => {
    const n = nat({ mapping: 'address-dependent' });
    const p1 = out(n, A, R1);
    expect(out(n, A, R1b)).toBe(p1);
    expect(out(n, A, R2)).not.toBe(p1);
  });

  it('address-and-port-dependent: new port for every remote endpoint', () => {
    const n = nat({ mapping: 'address-and-port-dependent' });
    expect(new Set([out(n, A, R1), out(n, A, R1b), out(n, A, R2)]).size).toBe(3);
  });
});

describe('filtering behaviour', () => {
  it('endpoint-independent filtering accepts any remote once a mapping exists', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'endpoint-independent' });
    const port = out(n, A, R1);
    expect(inbound(n, '203.0.113.9:1', port)).toEqual({
      action: 'forward',
      dst: { address: '10.0.1.2', port: 5000 },
    });
  });

  it('address-dependent filtering accepts any port of an address we sent to, nothing else', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'address-dependent' });
    const port = out(n, A, R1);
    expect(inbound(n, R1b, port).action).toBe('forward');
    expect(inbound(n, R2, port)).toMatchObject({ action: 'drop', reason: 'filtered' });
  });

  it('address-and-port-dependent filtering accepts only the exact endpoint we sent to', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' });
    const port = out(n, A, R1);
    expect(inbound(n, R1, port).action).toBe('forward');
    expect(inbound(n, R1b, port)).toMatchObject({ action: 'drop', reason: 'filtered' });
    expect(inbound(n, R2, port)).toMatchObject({ action: 'drop', reason: 'filtered' });
  });

  it('a filtered packet to an active mapping is not a knock, even on a PKS NAT', () => {
    const n = nat({ mapping: 'endpoint-independent', pks: true });
    const port = out(n, A, R1);
    expect(inbound(n, R2, port)).toMatchObject({ action: 'drop', reason: 'filtered', knocked: false });
    expect(n.isBlocked('udp', port, 0)).toBe(false);
  });

  it('the reply to unsolicited traffic follows the profile', () => {
    expect(inbound(nat({ unsolicitedReply: 'icmp-port-unreachable' }), R1, 30_000)).toMatchObject({
      replyIcmp: true,
    });
    expect(inbound(nat({ unsolicitedReply: 'drop' }), R1, 30_000)).toMatchObject({ replyIcmp: false });
  });
});

describe('port allocation', () => {
  it('sequential +1 and +2 step from the first port', () => {
    const one = nat({ allocation: { type: 'sequential', delta: 1 } });
    expect([out(one, A, R1), out(one, A, R2), out(one, A2, R1)]).toEqual([20_000, 20_001, 20_002]);
    const two = nat({ allocation: { type: 'sequential', delta: 2 } });
    expect([out(two, A, R1), out(two, A, R2), out(two, A2, R1)]).toEqual([20_000, 20_002, 20_004]);
  });

  it("another internal host's sessions move the shared counter", () => {
    const n = nat();
    const first = out(n, A, R1);
    out(n, B, R1);
    out(n, B, R2);
    expect(out(n, A, R2)).toBe(first + 3);
  });

  it('TCP sessions move the same counter but live in their own port space', () => {
    const n = nat();
    expect(out(n, A, R1)).toBe(20_000);
    const tcp = n.outbound({ ...udp(A, R2), proto: 'tcp' }, 0);
    expect(tcp).toMatchObject({ action: 'forward', src: { port: 20_001 } });
    expect(inbound(n, R2, 20_001).action).toBe('drop');
    expect(n.inbound({ ...udp(R2, `${PUBLIC}:20001`), proto: 'tcp' }, 0).action).toBe('forward');
  });

  it('preserve-if-free keeps the internal port, and moves on when it is taken', () => {
    const n = nat({ allocation: { type: 'preserve-if-free' }, mapping: 'endpoint-independent' });
    expect(out(n, A, R1)).toBe(5000);
    expect(out(n, '10.0.1.9:5000', R1)).toBe(5001);
  });

  it('random allocation stays in range and differs between sessions', () => {
    const n = nat({ allocation: { type: 'random' }, portRange: { min: 40_000, max: 40_999 } });
    const ports = Array.from({ length: 50 }, (_, i) => out(n, `10.0.1.2:${7000 + i}`, R1));
    expect(ports.every((p) => p >= 40_000 && p <= 40_999)).toBe(true);
    expect(new Set(ports).size).toBe(50);
  });

  it('wraps at the end of the range and drops when every port is taken', () => {
    const n = nat({ portRange: { min: 30_000, max: 30_002 } }, 30_002);
    expect([out(n, A, R1), out(n, A, R2), out(n, A, R1b)]).toEqual([30_002, 30_000, 30_001]);
    expect(n.outbound(udp(A2, R1), 0)).toEqual({ action: 'drop', reason: 'ports-exhausted' });
  });
});

describe('PKS: port knocking sensitivity', () => {
  it('a knock on the next port makes the next session skip it (paper Fig. 2, case 1)', () => {
    const n = nat({ pks: true });
    const p1 = out(n, A, R1);
    expect(inbound(n, R2, p1 + 1)).toMatchObject({ action: 'drop', reason: 'knocked', knocked: true });
    expect(out(n, A2, R1)).toBe(p1 + 2);
  });

  it('without PKS the same knock changes nothing', () => {
    const n = nat({ pks: false });
    const p1 = out(n, A, R1);
    expect(inbound(n, R2, p1 + 1)).toMatchObject({ reason: 'no-mapping', knocked: false });
    expect(out(n, A2, R1)).toBe(p1 + 1);
  });

  it('a knocked port stays blocked for pksBlockMs, then is usable again', () => {
    const n = nat({ pks: true, pksBlockMs: 1000, allocation: { type: 'preserve-if-free' } });
    inbound(n, R2, 5000, 0);
    expect(n.isBlocked('udp', 5000, 999)).toBe(true);
    expect(out(n, A, R1, 999)).toBe(5001);
    expect(n.isBlocked('udp', 5000, 1000)).toBe(false);
    expect(out(n, '10.0.1.7:5000', R1, 1000)).toBe(5000);
  });

  it('a knock on a delta-2 NAT skips two ports', () => {
    const n = nat({ pks: true, allocation: { type: 'sequential', delta: 2 } });
    const p1 = out(n, A, R1);
    inbound(n, R2, p1 + 2);
    expect(out(n, A2, R1)).toBe(p1 + 4);
  });
});

describe('IPS: ICMP packet sensitivity', () => {
  it('an ICMP error for an active mapping closes it and burns the port (paper Fig. 2, case 2)', () => {
    const n = nat({ ips: true, ipsBurnMs: 5000, allocation: { type: 'preserve-if-free' } });
    const port = out(n, A, R1);
    const icmp = n.inboundIcmp(udp(`${PUBLIC}:${port}`, R1), 10);
    expect(icmp).toEqual({
      action: 'forward',
      internal: { address: '10.0.1.2', port: 5000 },
      closedMapping: true,
    });
    expect(inbound(n, R1, port, 11)).toMatchObject({ action: 'drop', reason: 'no-mapping' });
    expect(n.isBlocked('udp', port, 4999)).toBe(true);
    expect(out(n, A, R1, 20)).not.toBe(port);
    expect(n.isBlocked('udp', port, 5010)).toBe(false);
  });

  it('a non-IPS NAT forwards the error and keeps the mapping', () => {
    const n = nat({ ips: false });
    const port = out(n, A, R1);
    expect(n.inboundIcmp(udp(`${PUBLIC}:${port}`, R1), 10)).toMatchObject({ closedMapping: false });
    expect(inbound(n, R1, port, 11).action).toBe('forward');
  });

  it('ignores an ICMP error quoting a remote the mapping never sent to', () => {
    const n = nat({ ips: true });
    const port = out(n, A, R1);
    expect(n.inboundIcmp(udp(`${PUBLIC}:${port}`, R2), 10)).toEqual({
      action: 'drop',
      reason: 'icmp-no-mapping',
    });
    expect(inbound(n, R1, port, 11).action).toBe('forward');
  });

  it('translates an ICMP error from inside to quote the public endpoint', () => {
    const n = nat();
    const port = out(n, A, R1);
    expect(n.outboundIcmp(udp(R1, A), 1)).toEqual({ action: 'forward', external: { address: PUBLIC, port } });
    expect(n.outboundIcmp(udp(R2, A), 1)).toMatchObject({ action: 'drop' });
  });
});

describe('mapping lifetime', () => {
  it('expires after mappingLifetimeMs without outbound traffic', () => {
    const n = nat({ mappingLifetimeMs: 1000 });
    const port = out(n, A, R1, 0);
    expect(inbound(n, R1, port, 999).action).toBe('forward');
    expect(inbound(n, R1, port, 1000).action).toBe('drop');
    expect(n.mappings(1000)).toHaveLength(0);
  });

  it('outbound traffic refreshes the mapping', () => {
    const n = nat({ mappingLifetimeMs: 1000 });
    const port = out(n, A, R1, 0);
    expect(out(n, A, R1, 900)).toBe(port);
    expect(inbound(n, R1, port, 1899).action).toBe('forward');
  });

  it('inbound traffic refreshes only when refreshOnInbound is set', () => {
    for (const refreshOnInbound of [false, true]) {
      const n = nat({ mappingLifetimeMs: 1000, refreshOnInbound });
      const port = out(n, A, R1, 0);
      inbound(n, R1, port, 900);
      expect(inbound(n, R1, port, 1500).action).toBe(refreshOnInbound ? 'forward' : 'drop');
    }
  });

  it('an expired mapping frees its port and a new session gets a new mapping', () => {
    const n = nat({ mappingLifetimeMs: 1000, allocation: { type: 'preserve-if-free' } });
    expect(out(n, A, R1, 0)).toBe(5000);
    expect(out(n, '10.0.1.8:5000', R1, 1000)).toBe(5000);
  });

  it('flush expires every mapping at once', () => {
    const n = nat();
    const port = out(n, A, R1);
    n.flush();
    expect(inbound(n, R1, port).action).toBe('drop');
  });
});

describe('hairpinning', () => {
  it('loops back traffic to our own public address, with the sender translated', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'endpoint-independent' });
    const pa = out(n, A, R1);
    const pb = out(n, B, R1);
    const result = n.hairpin(udp(B, `${PUBLIC}:${pa}`), 0);
    expect(result).toEqual({
      action: 'forward',
      src: { address: PUBLIC, port: pb },
      dst: { address: '10.0.1.2', port: 5000 },
    });
  });

  it('applies filtering to hairpinned traffic', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' });
    const pa = out(n, A, R1);
    const pb = out(n, B, R1);
    expect(n.hairpin(udp(B, `${PUBLIC}:${pa}`), 0)).toMatchObject({ action: 'drop', reason: 'filtered' });
    expect(n.hairpin(udp(A, `${PUBLIC}:${pb}`), 0)).toMatchObject({ action: 'forward' });
  });

  it('never knocks a port, even on a PKS NAT', () => {
    const n = nat({ pks: true });
    expect(n.hairpin(udp(A, `${PUBLIC}:40000`), 0)).toMatchObject({ action: 'drop', reason: 'no-mapping' });
    expect(n.isBlocked('udp', 40_000, 1)).toBe(false);
  });

  it('drops everything when hairpin is off', () => {
    const n = nat({ mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpin: false });
    const pa = out(n, A, R1);
    expect(n.hairpin(udp(B, `${PUBLIC}:${pa}`), 0)).toMatchObject({
      action: 'drop',
      reason: 'hairpin-disabled',
    });
  });
});
