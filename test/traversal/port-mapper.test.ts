/**
 * The gateway's port mappings (issue 20) against the NAT model's PCP / NAT-PMP server
 * (nat/port-mapping-server.ts) on the virtual network: detection, a lease that lets anyone in,
 * renewal at half the lifetime, recovery after the router reboots (its epoch goes back), the
 * delete when the lease is released, and the bound on leases held.
 */
import { describe, expect, it } from 'vitest';
import { PortMapper, renewalDelayMs } from '../../src/traversal/port-mapper.ts';
import { epochConsistent } from '../../src/traversal/port-mapping.ts';
import { bytes, profiles, world } from '../net/world.ts';

function setup(spec: string) {
  const w = world({ natB: profiles.resolve(spec) });
  const c = { network: w.bob, clock: w.clock };
  const init = { gateway: '10.0.2.1', clientAddress: '10.0.2.2', lifetimeS: 60 };
  return { w, c, init };
}

describe('port mapper against the NAT model', () => {
  it('detects PCP, and a lease lets the public side in from anywhere until it is released', async () => {
    const { w, c, init } = setup('symmetric-random+pcp');
    const detected = await w.clock.run(PortMapper.detect(c, init));
    expect(detected.status).toMatchObject({ protocol: 'pcp', externalAddress: '198.18.2.1', lifetimeS: 120 });
    // Detection deletes what it asked for.
    expect(w.natB.nat.leases(w.clock.now())).toEqual([]);
    const mapper = detected.mapper!;
    const socket = await w.bob.bindUdp();
    const got = await w.clock.run(mapper.map(socket.local.port));
    if (!got.ok) throw new Error(got.reason);
    expect(got.lease.mapping).toMatchObject({
      protocol: 'pcp',
      externalAddress: '198.18.2.1',
      lifetimeS: 60,
    });
    const received: string[] = [];
    socket.on('message', (d, from) => received.push(`${from.address}:${new TextDecoder().decode(d)}`));
    const server = await w.server.bindUdp({ port: 9000 });
    server.send(bytes('unsolicited'), { address: '198.18.2.1', port: got.lease.mapping.externalPort });
    await w.clock.advance(50);
    expect(received).toEqual(['198.18.0.10:unsolicited']);
    // The same internal port's own traffic leaves from the leased port (RFC 6887 §11.1).
    const seen: number[] = [];
    server.on('message', (_d, from) => seen.push(from.port));
    socket.send(bytes('out'), { address: '198.18.0.10', port: 9000 });
    await w.clock.advance(50);
    expect(seen).toEqual([got.lease.mapping.externalPort]);
    await w.clock.run(got.lease.release());
    expect(w.natB.nat.leases(w.clock.now())).toEqual([]);
    expect(mapper.counters).toMatchObject({ granted: 1, released: 1 });
    server.send(bytes('after'), { address: '198.18.2.1', port: got.lease.mapping.externalPort });
    await w.clock.advance(50);
    expect(received).toEqual(['198.18.0.10:unsolicited']);
  });

  it('renews at half the lifetime, so the lease outlives it', async () => {
    const { w, c, init } = setup('symmetric-random+pcp');
    const { mapper } = await w.clock.run(PortMapper.detect(c, init));
    const got = await w.clock.run(mapper!.map(40_000));
    if (!got.ok) throw new Error(got.reason);
    const port = got.lease.mapping.externalPort;
    await w.clock.advance(151_000);
    expect(mapper!.counters.renewed).toBe(5); // at 30, 60, 90, 120 and 150 s
    expect(w.natB.nat.leases(w.clock.now()).map((l) => l.external.port)).toEqual([port]);
    await w.clock.run(mapper!.close());
    expect(w.natB.nat.leases(w.clock.now())).toEqual([]);
  });

  it('a rebooted router (its epoch went back) gets every lease asked for again at the next renewal', async () => {
    const { w, c, init } = setup('symmetric-random+pcp');
    const { mapper } = await w.clock.run(PortMapper.detect(c, init));
    const first = await w.clock.run(mapper!.map(40_000));
    await w.clock.advance(10_000);
    const second = await w.clock.run(mapper!.map(40_002));
    if (!first.ok || !second.ok) throw new Error('no lease');
    let resets = 0;
    mapper!.on('reset', () => resets++);
    await w.clock.advance(5_000);
    w.natB.reboot();
    expect(w.natB.nat.leases(w.clock.now())).toEqual([]);
    // The first lease renews at 30 s, sees the epoch start over, and asks for the other at once.
    await w.clock.advance(16_000);
    expect(resets).toBe(1);
    expect(
      w.natB.nat
        .leases(w.clock.now())
        .map((l) => l.internal.port)
        .sort(),
    ).toEqual([40_000, 40_002]);
    await w.clock.run(mapper!.close());
  });

  it('speaks NAT-PMP to a NAT-PMP-only router, and gives up on a router that maps nothing', async () => {
    const pmp = setup('symmetric-random+natpmp');
    const detected = await pmp.w.clock.run(PortMapper.detect(pmp.c, pmp.init));
    expect(detected.status).toMatchObject({ protocol: 'nat-pmp', externalAddress: '198.18.2.1' });
    expect(detected.mapper!.init.protocols).toEqual(['nat-pmp']);
    const none = setup('symmetric-random');
    const started = none.w.clock.now();
    const silent = await none.w.clock.run(PortMapper.detect(none.c, none.init));
    expect(silent.mapper).toBeUndefined();
    expect(silent.status).toEqual({
      protocol: null,
      reason:
        'PCP: no answer from 10.0.2.1:5351; NAT-PMP: no answer from 10.0.2.1:5351; UPnP: no answer to SSDP from 10.0.2.1',
    });
    // Three tries per protocol, 250 ms doubling: bounded.
    expect(none.w.clock.now() - started).toBeLessThan(5500);
  });

  it('UPnP IGD (+upnp): SSDP, the description and SOAP; a port another host holds is a conflict, so another is taken', async () => {
    const { w, c, init } = setup('symmetric-random+upnp');
    const detected = await w.clock.run(PortMapper.detect(c, init));
    expect(detected.status).toMatchObject({ protocol: 'upnp', externalAddress: '198.18.2.1' });
    expect(w.natB.nat.leases(w.clock.now())).toEqual([]);
    // Another host on the LAN holds external port 40000 (what we would ask for first).
    w.natB.nat.lease('udp', { address: '10.0.2.9', port: 40_000 }, 40_000, 600_000, w.clock.now());
    const mapper = detected.mapper!;
    const got = await w.clock.run(mapper.map(40_000));
    if (!got.ok) throw new Error(got.reason);
    expect(got.lease.mapping.protocol).toBe('upnp');
    expect(got.lease.mapping.externalPort).not.toBe(40_000);
    const ours = w.natB.nat.leases(w.clock.now()).filter((l) => l.internal.address === '10.0.2.2');
    expect(ours.map((l) => l.external.port)).toEqual([got.lease.mapping.externalPort]);
    // Renewed at half the lifetime (a UPnP renewal adds the same mapping again).
    await w.clock.advance(31_000);
    expect(mapper.counters.renewed).toBe(1);
    await w.clock.run(mapper.close());
    expect(w.natB.nat.leases(w.clock.now()).map((l) => l.internal.address)).toEqual(['10.0.2.9']);
  });

  it('a router that speaks only UPnP is found without waiting out PCP and NAT-PMP silence', async () => {
    const { w, c, init } = setup('symmetric-random+upnp');
    const started = w.clock.now();
    const detected = await w.clock.run(PortMapper.detect(c, init));
    expect(detected.status.protocol).toBe('upnp');
    // Every protocol is asked at once: the UPnP grant ends detection after a few LAN round trips.
    expect(w.clock.now() - started).toBeLessThan(200);
  });

  it('holds no more leases than it is allowed, and none for a port already mapped', async () => {
    const { w, c, init } = setup('symmetric-random+pcp');
    const mapper = new PortMapper(c, { ...init, maxLeases: 2 });
    expect((await w.clock.run(mapper.map(40_000))).ok).toBe(true);
    expect(await w.clock.run(mapper.map(40_000))).toEqual({
      ok: false,
      reason: 'port 40000 is already mapped',
    });
    expect((await w.clock.run(mapper.map(40_001))).ok).toBe(true);
    expect(await w.clock.run(mapper.map(40_002))).toEqual({
      ok: false,
      reason: 'already 2 port mappings held',
    });
    await w.clock.run(mapper.close());
    expect(await w.clock.run(mapper.map(40_003))).toEqual({ ok: false, reason: 'port mapping stopped' });
  });
});

describe('renewalDelayMs', () => {
  it('is half the lifetime, from 1 s to half a day whatever a router grants', () => {
    expect(renewalDelayMs({ lifetimeS: 7200 })).toBe(3_600_000);
    expect(renewalDelayMs({ lifetimeS: 0 })).toBe(1000);
    expect(renewalDelayMs({ lifetimeS: 0xffff_ffff })).toBe(43_200_000);
  });
});

describe('epochConsistent (RFC 6887 §8.5)', () => {
  it.each([
    ['time moved alike', { epochS: 100, atMs: 0 }, { epochS: 130, atMs: 30_000 }, true],
    ['the epoch went back (a reboot)', { epochS: 100, atMs: 0 }, { epochS: 5, atMs: 30_000 }, false],
    ['one second back is tolerated', { epochS: 100, atMs: 0 }, { epochS: 99, atMs: 0 }, true],
    ['the server ran far slower than us', { epochS: 100, atMs: 0 }, { epochS: 101, atMs: 60_000 }, false],
    ['the server ran far faster than us', { epochS: 100, atMs: 0 }, { epochS: 400, atMs: 60_000 }, false],
    ['within 1/16 plus 2 s', { epochS: 100, atMs: 0 }, { epochS: 162, atMs: 60_000 }, true],
  ])('%s', (_name, previous, current, expected) => {
    expect(epochConsistent(previous, current)).toBe(expected);
  });
});
