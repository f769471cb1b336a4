/**
 * Issue 21's TCP prediction: STUN Binding over TCP (client and a bounded responder), the TCP probe
 * behind sequential and port-keeping NATs, and reading the allocation from samples.
 */
import { describe, expect, it } from 'vitest';
import { StunTcpResponder, splitStunStream, tcpBinding } from '../../src/traversal/stun-tcp.ts';
import { classifyTcpSamples, prepareTcpCandidate, probeTcp } from '../../src/traversal/tcp-predict.ts';
import { profiles, world } from '../net/world.ts';

const STUN = { address: '198.18.0.10', port: 3478 };

describe('TCP allocation from samples', () => {
  it('reads port keeping, a steady step, and anything else as random', () => {
    expect(
      classifyTcpSamples([
        { local: 40000, mapped: 40000 },
        { local: 41000, mapped: 41000 },
      ]),
    ).toEqual({
      allocation: 'preserving',
      delta: null,
    });
    expect(
      classifyTcpSamples([
        { local: 40000, mapped: 5000 },
        { local: 41000, mapped: 5002 },
        { local: 42000, mapped: 5004 },
      ]),
    ).toEqual({ allocation: 'sequential', delta: 2 });
    // Wrapping past 65535 is still one step.
    expect(
      classifyTcpSamples([
        { local: 1, mapped: 65535 },
        { local: 2, mapped: 0 },
      ]),
    ).toMatchObject({ delta: 1 });
    expect(
      classifyTcpSamples([
        { local: 40000, mapped: 5000 },
        { local: 41000, mapped: 5001 },
        { local: 42000, mapped: 5003 },
      ]),
    ).toEqual({ allocation: 'random', delta: null });
    expect(
      classifyTcpSamples([
        { local: 4, mapped: 5000 },
        { local: 5, mapped: 9000 },
      ]).allocation,
    ).toBe('random');
    expect(() => classifyTcpSamples([{ local: 1, mapped: 1 }])).toThrow(RangeError);
  });
});

describe('STUN Binding over TCP', () => {
  it('probes a sequential NAT and predicts the port its next TCP session takes', async () => {
    const w = world({ natA: profiles.resolve('symmetric-seq2') });
    const responder = await StunTcpResponder.start({ network: w.server, clock: w.clock }, { listen: STUN });
    const probe = await w.clock.run(probeTcp({ network: w.alice, clock: w.clock }, { server: STUN }));
    expect(probe).toMatchObject({ publicAddress: '198.18.1.1', allocation: 'sequential', delta: 2 });
    const candidate = await w.clock.run(
      prepareTcpCandidate({ network: w.alice, clock: w.clock }, probe!, { server: STUN }),
    );
    expect(candidate!.source).toBe('predicted');
    // The next TCP session through the NAT takes exactly the predicted port.
    const next = await w.clock.run(
      tcpBinding({ network: w.alice, clock: w.clock }, { server: STUN, localPort: candidate!.localPort }),
    );
    expect(next!.mapped).toEqual(candidate!.endpoint);
    responder.close();
  });

  it('sees a port-keeping NAT keep the local port', async () => {
    const w = world({ natA: profiles.resolve('full-cone') });
    const responder = await StunTcpResponder.start({ network: w.server, clock: w.clock }, { listen: STUN });
    const probe = await w.clock.run(probeTcp({ network: w.alice, clock: w.clock }, { server: STUN }));
    expect(probe?.allocation).toBe('preserving');
    const candidate = await w.clock.run(
      prepareTcpCandidate({ network: w.alice, clock: w.clock }, probe!, { server: STUN }),
    );
    expect(candidate).toMatchObject({ source: 'preserved', endpoint: { port: candidate!.localPort } });
    responder.close();
  });

  it('gives nothing to a random NAT, and nothing where no server answers over TCP', async () => {
    const w = world({ natA: profiles.resolve('symmetric-random') });
    const responder = await StunTcpResponder.start({ network: w.server, clock: w.clock }, { listen: STUN });
    const probe = await w.clock.run(probeTcp({ network: w.alice, clock: w.clock }, { server: STUN }));
    expect(probe?.allocation).toBe('random');
    expect(
      await w.clock.run(prepareTcpCandidate({ network: w.alice, clock: w.clock }, probe!, { server: STUN })),
    ).toBeUndefined();
    responder.close();
    expect(
      await w.clock.run(probeTcp({ network: w.bob, clock: w.clock }, { server: STUN, timeoutMs: 500 })),
    ).toBeUndefined();
  });

  it('cuts off a peer that is not speaking STUN, announces a huge message, idles or crowds in', async () => {
    const w = world();
    const responder = await StunTcpResponder.start(
      { network: w.server, clock: w.clock },
      { listen: STUN, maxConnections: 2, idleMs: 1000 },
    );
    const garbage = await w.clock.run(w.alice.connect(STUN));
    const closed = new Promise<void>((resolve) => garbage.on('close', () => resolve()));
    garbage.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await w.clock.run(closed);
    // A STUN header announcing 60 000 bytes of attributes.
    const huge = await w.clock.run(w.alice.connect(STUN));
    const hugeClosed = new Promise<void>((resolve) => huge.on('close', () => resolve()));
    huge.write(Uint8Array.of(0x00, 0x01, 0xea, 0x60, 0x21, 0x12, 0xa4, 0x42, ...new Uint8Array(12)));
    await w.clock.run(hugeClosed);
    expect(responder.counters.malformed).toBe(2);
    // Two silent connections fill it; a third is closed on arrival; the silent ones time out.
    const idle = [await w.clock.run(w.alice.connect(STUN)), await w.clock.run(w.bob.connect(STUN))];
    const third = await w.clock.run(w.alice2.connect(STUN));
    await w.clock.advance(100);
    expect(third.closed).toBe(true);
    expect(responder.counters.refused).toBe(1);
    await w.clock.advance(1500);
    expect(idle.every((c) => c.closed)).toBe(true);
    expect(responder.counters.idleClosed).toBe(2);
    expect(responder.openConnections).toBe(0);
    responder.close();
  });

  it('splits back-to-back STUN messages and refuses what is not STUN', () => {
    const message = (length: number) =>
      Uint8Array.of(0x00, 0x01, 0, length, 0x21, 0x12, 0xa4, 0x42, ...new Uint8Array(12 + length));
    const two = new Uint8Array([...message(4), ...message(0), 0x00]);
    const split = splitStunStream(two)!;
    expect(split.messages.map((m) => m.byteLength)).toEqual([24, 20]);
    expect(split.rest.byteLength).toBe(1);
    expect(splitStunStream(new Uint8Array(20).fill(0xff))).toBeUndefined();
  });
});
