/**
 * Issue 21's TCP on the virtual network: simultaneous open, Linux's SYN retransmission, a primed
 * SYN's TTL, and what the NAT model answers to an unsolicited segment (RST, ICMP, nothing), with
 * TCP ports from the shared counter or their own.
 */
import { describe, expect, it } from 'vitest';
import type { StreamConnection } from '../../src/net/types.ts';
import type { TraceRecord } from '../../src/net/virtual/trace.ts';
import { bytes, profiles, text, world } from './world.ts';

const seq1 = profiles.resolve('symmetric-seq1');

describe('virtual TCP: simultaneous open', () => {
  it('opens a connection when two SYNs cross, with no listener on either side', async () => {
    // Port-keeping NATs: each side knows the other's public port in advance.
    const cone = profiles.resolve('full-cone');
    const w = world({ natA: cone, natB: cone });
    const [a, b] = await w.clock.run(
      Promise.all([
        w.alice.connect({ address: '198.18.2.1', port: 40_002 }, { localPort: 40_001 }),
        w.bob.connect({ address: '198.18.1.1', port: 40_001 }, { localPort: 40_002 }),
      ]),
    );
    const got: string[] = [];
    b.on('data', (d) => got.push(text(d)));
    a.write(bytes('hello'));
    await w.clock.advance(100);
    expect(got).toEqual(['hello']);
    expect(a.remote).toEqual({ address: '198.18.2.1', port: 40_002 });
    a.close();
    b.close();
    await w.clock.advance(100);
    expect(w.alice.openHandles()).toBe(0);
    expect(w.bob.openHandles()).toBe(0);
  });

  it('retransmits the SYN after 1 s, then 2 s later, as Linux does, until the connect gives up', async () => {
    const syns: number[] = [];
    const w = world({
      natB: { ...seq1, unsolicitedTcpReply: 'drop' },
      trace: (r: TraceRecord) => {
        if (r.event === 'send' && r.packet.kind === 'tcp' && r.packet.flag === 'syn') syns.push(r.timeMs);
      },
    });
    await expect(
      w.clock.run(w.alice.connect({ address: '198.18.2.1', port: 4000 }, { timeoutMs: 3500 })),
    ).rejects.toThrow(/timed out after 3500 ms/);
    expect(syns).toEqual([0, 1000, 3000]);
    expect(w.alice.openHandles()).toBe(0);
  });

  it("sends a primed connect's SYN with its TTL: it expires past our NAT, short of the peer's", async () => {
    const expired: string[] = [];
    const w = world({
      trace: (r: TraceRecord) => {
        if (r.event === 'ttl-exceeded') expired.push(r.node);
      },
    });
    await expect(
      w.clock.run(w.alice.connect({ address: '198.18.2.1', port: 4000 }, { ttl: 2, timeoutMs: 200 })),
    ).rejects.toThrow(/timed out/);
    // Host -> NAT A (TTL 2 -> 1) -> internet router: expired past our NAT, before the peer's.
    expect(expired).toEqual(['internet']);
    // The mapping it opened is there.
    expect(w.natA.nat.mappings(w.clock.now()).some((m) => m.proto === 'tcp')).toBe(true);
    await expect(w.alice.connect({ address: '198.18.2.1', port: 4000 }, { ttl: 0 })).rejects.toThrow(
      RangeError,
    );
  });

  it('lets one local port connect to two peers at once (SO_REUSEADDR), but not twice to the same', async () => {
    const w = world();
    const l1 = await w.server.listen({ port: 5060 });
    const l2 = await w.server.listen({ port: 5061 });
    const [c1, c2] = await w.clock.run(
      Promise.all([
        w.alice.connect({ address: '198.18.0.10', port: 5060 }, { localPort: 45_000 }),
        w.alice.connect({ address: '198.18.0.10', port: 5061 }, { localPort: 45_000 }),
      ]),
    );
    expect(c1.local.port).toBe(45_000);
    expect(c2.local.port).toBe(45_000);
    await expect(
      w.alice.connect({ address: '198.18.0.10', port: 5060 }, { localPort: 45_000 }),
    ).rejects.toThrow(/in use/);
    l1.close();
    l2.close();
  });
});

describe('NAT model: unsolicited TCP', () => {
  const knock = async (reply: 'drop' | 'rst' | 'icmp-port-unreachable') => {
    const w = world({ natB: { ...seq1, unsolicitedTcpReply: reply } });
    const started = w.clock.now();
    const result = await w.clock
      .run(w.alice.connect({ address: '198.18.2.1', port: 4000 }, { timeoutMs: 2500 }))
      .then(
        () => 'connected',
        (error: Error) => error.message,
      );
    return { result, ms: w.clock.now() - started };
  };

  it('resets, drops or answers ICMP, per the profile', async () => {
    const rst = await knock('rst');
    expect(rst.result).toMatch(/refused/);
    expect(rst.ms).toBeLessThan(100);
    expect((await knock('drop')).result).toMatch(/timed out/);
    // Our host does not report ICMP to a TCP connect (Linux retries on a soft error): it times out.
    expect((await knock('icmp-port-unreachable')).result).toMatch(/timed out/);
  });

  it('takes TCP ports from the UDP counter, or from its own with tcpCounter: separate', async () => {
    for (const [tcpCounter, expected] of [
      ['shared', 20_001],
      ['separate', undefined],
    ] as const) {
      const w = world({ natA: { ...seq1, tcpCounter } });
      const listener = await w.server.listen({ port: 5060 });
      const remotes: number[] = [];
      listener.on('connection', (c: StreamConnection) => remotes.push(c.remote.port));
      const udp = await w.alice.bindUdp();
      udp.send(bytes('x'), { address: '198.18.0.10', port: 9 });
      await w.clock.run(w.alice.connect({ address: '198.18.0.10', port: 5060 }));
      if (expected) expect(remotes).toEqual([expected]);
      else expect(remotes[0]).not.toBe(20_001);
      listener.close();
    }
  });
});
