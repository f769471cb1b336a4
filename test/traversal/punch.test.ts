import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Puncher } from '../../src/traversal/punch.ts';
import { world } from '../net/world.ts';

const pwd = (c: string): string => c.repeat(24);

/** Two public hosts, each with a Puncher that knows the other's credentials. */
async function twoPublicPunchers() {
  const w = world();
  const a = await w.server.bindUdp({ address: '198.18.0.10', port: 7000 });
  const b = await w.server.bindUdp({ address: '198.18.0.11', port: 7001 });
  const pa = new Puncher(
    { socket: a, clock: w.clock },
    { local: { ufrag: 'aaaa', pwd: pwd('a') }, remote: { ufrag: 'bbbb', pwd: pwd('b') } },
  );
  const pb = new Puncher(
    { socket: b, clock: w.clock },
    { local: { ufrag: 'bbbb', pwd: pwd('b') }, remote: { ufrag: 'aaaa', pwd: pwd('a') } },
  );
  return { w, a, b, pa, pb };
}

describe('punch (authenticated connectivity checks)', () => {
  it('confirms a pair between two public hosts and answers only checks with the right credentials', async () => {
    const { w, b, pa, pb } = await twoPublicPunchers();
    const result = await w.clock.run(pa.punch([b.local]));
    expect(result.remote).toEqual(b.local);
    expect(pb.counters.checksAnswered).toBeGreaterThanOrEqual(1);
    pa.close();
    pb.close();
  });

  it('confirms when the answer arrives, not at the next round of checks', async () => {
    // Both hosts sit on the same server link here: a check's round trip is a few ms, far below a
    // 1 s interval between rounds. Waiting for the round's turn cost up to an interval per call.
    const { w, a, b, pa, pb } = await twoPublicPunchers();
    const slow = new Puncher(
      { socket: a, clock: w.clock },
      { local: { ufrag: 'aaaa', pwd: pwd('a') }, remote: { ufrag: 'bbbb', pwd: pwd('b') }, intervalMs: 1000 },
    );
    pa.close();
    const result = await w.clock.run(slow.punch([b.local]));
    expect(result.checksSent).toBe(1);
    expect(result.elapsedMs).toBeLessThan(1000);
    slow.close();
    pb.close();
  });

  it('checks a peer-reflexive endpoint at once when a valid check comes from one it did not know', async () => {
    const { w, a, b, pa, pb } = await twoPublicPunchers();
    // A was told a wrong port for B (as for a NAT that allocates at random); B knows A's.
    const wrong = { address: '198.18.0.11', port: 7999 };
    const [ra, rb] = await w.clock.run(Promise.all([pa.punch([wrong]), pb.punch([a.local])]));
    expect(ra.remote).toEqual(b.local);
    expect(rb.remote).toEqual(a.local);
    expect(pa.counters.peerReflexive).toBe(1);
    // A stranger with the wrong credentials adds nothing.
    const stray = await w.server.bindUdp({ address: '198.18.0.11', port: 7002 });
    const pc = new Puncher(
      { socket: stray, clock: w.clock },
      { local: { ufrag: 'cccc', pwd: pwd('c') }, remote: { ufrag: 'aaaa', pwd: pwd('x') } },
    );
    const late = pa.punch([wrong]).catch(() => undefined);
    void pc.punch([a.local]).catch(() => undefined);
    await w.clock.advance(4000);
    await late;
    expect(pa.counters.peerReflexive).toBe(1);
    pa.close();
    pb.close();
    pc.close();
  });

  it('drops garbage, truncated and oversized datagrams on the media port, counting the STUN-looking ones', async () => {
    const w = world();
    const media = await w.server.bindUdp({ address: '198.18.0.10', port: 7000 });
    const stray = await w.alice.bindUdp();
    const puncher = new Puncher(
      { socket: media, clock: w.clock },
      { local: { ufrag: 'aaaa', pwd: pwd('a') }, remote: { ufrag: 'bbbb', pwd: pwd('b') } },
    );
    let answers = 0;
    stray.on('message', () => answers++);
    const samples = fc.sample(fc.uint8Array({ maxLength: 1500 }), { numRuns: 300, seed: 7 });
    // Random bytes behind a valid STUN header: they pass the sniff and must fail decoding or integrity.
    for (const body of samples) {
      const packet = new Uint8Array(20 + (body.byteLength & ~3));
      new DataView(packet.buffer).setUint16(0, 0x0001);
      new DataView(packet.buffer).setUint16(2, body.byteLength & ~3);
      new DataView(packet.buffer).setUint32(4, 0x2112a442);
      packet.set(body.subarray(0, body.byteLength & ~3), 20);
      stray.send(packet, media.local);
      stray.send(body, media.local);
    }
    stray.send(new Uint8Array(65_000), media.local);
    await w.clock.advance(500);
    expect(answers).toBe(0);
    expect(puncher.counters.checksAnswered).toBe(0);
    expect(puncher.counters.rejected).toBeGreaterThan(250);
    puncher.close();
  });
});
