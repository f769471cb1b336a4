import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket, SrtcpSession, SrtpSession as WeriftSrtp } from 'werift-rtp';
import { deriveKey, type SrtpProfile } from '../../src/protocol/srtp/keys.ts';
import { estimateIndex, ReplayWindow } from '../../src/protocol/srtp/replay.ts';
import { SrtpSession } from '../../src/protocol/srtp/srtp.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function rtp(seq: number, ssrc = 0x1234, payload = randomBytes(100)): Buffer {
  return new RtpPacket(
    new RtpHeader({ payloadType: 96, sequenceNumber: seq, timestamp: 90 * seq, ssrc }),
    payload,
  ).serialize();
}

function pair(profile: SrtpProfile) {
  const saltLength = profile === 7 ? 12 : 14;
  const a = { key: randomBytes(16), salt: randomBytes(saltLength) };
  const b = { key: randomBytes(16), salt: randomBytes(saltLength) };
  return { alice: new SrtpSession(profile, a, b), bob: new SrtpSession(profile, b, a), a, b };
}

describe('SRTP key derivation (RFC 3711 Appendix B.3)', () => {
  const master = { key: hex('E1F97A0D3E018BE0D64FA32C06DE4139'), salt: hex('0EC675AD498AFEEBB6960B3AABE6') };
  it('derives the RFC cipher key, salt and the start of the auth key', () => {
    expect(Buffer.from(deriveKey(master, 0, 16)).toString('hex')).toBe('c61e7a93744f39ee10734afe3ff7a087');
    expect(Buffer.from(deriveKey(master, 2, 14)).toString('hex')).toBe('30cbbc08863d8c85d49db34a9ae1');
    expect(Buffer.from(deriveKey(master, 1, 20)).toString('hex')).toBe(
      'cebe321f6ff7716b6fd4ab49af256a156d38baa4',
    );
  });
});

describe.each([1, 7] as const)('SRTP profile %i', (profile) => {
  it('round-trips RTP and RTCP across a sequence-number wrap', () => {
    const { alice, bob } = pair(profile);
    for (let i = 0; i < 10; i++) {
      const packet = rtp((65530 + i) % 65536);
      const wire = alice.protectRtp(packet);
      expect(Buffer.from(wire).includes(packet.subarray(12, 40))).toBe(false);
      expect(Buffer.from(bob.unprotectRtp(wire)!)).toEqual(packet);
    }
    const rtcp = Buffer.concat([Buffer.from([0x80, 200, 0, 6, 0, 0, 0x12, 0x34]), randomBytes(20)]);
    expect(Buffer.from(bob.unprotectRtcp(alice.protectRtcp(rtcp))!)).toEqual(rtcp);
    expect(bob.counters).toEqual({ authFailures: 0, replayed: 0, malformed: 0 });
  });

  it('interoperates with werift-rtp both ways', () => {
    const { alice, a, b } = pair(profile);
    const keys = {
      localMasterKey: b.key,
      localMasterSalt: b.salt,
      remoteMasterKey: a.key,
      remoteMasterSalt: a.salt,
    };
    const theirs = new WeriftSrtp({ keys, profile });
    const theirsRtcp = new SrtcpSession({ keys, profile });
    const packet = rtp(7);
    expect(theirs.decrypt(Buffer.from(alice.protectRtp(packet)))).toEqual(packet);
    const parsed = RtpPacket.deSerialize(rtp(8));
    expect(Buffer.from(alice.unprotectRtp(theirs.encrypt(parsed.payload, parsed.header))!)).toEqual(
      parsed.serialize(),
    );
    const rtcp = Buffer.concat([Buffer.from([0x80, 201, 0, 1, 0, 0, 0x12, 0x34])]);
    expect(theirsRtcp.decrypt(Buffer.from(alice.protectRtcp(rtcp)))).toEqual(rtcp);
    expect(Buffer.from(alice.unprotectRtcp(theirsRtcp.encrypt(rtcp))!)).toEqual(rtcp);
  });

  it('drops and counts a flipped payload bit, a replay and a truncated packet', () => {
    const { alice, bob } = pair(profile);
    const wire = Buffer.from(alice.protectRtp(rtp(100)));
    const tampered = Buffer.from(wire);
    tampered[20]! ^= 0x01;
    expect(bob.unprotectRtp(tampered)).toBeUndefined();
    expect(bob.counters.authFailures).toBe(1);
    expect(bob.unprotectRtp(wire)).toBeDefined();
    expect(bob.unprotectRtp(wire)).toBeUndefined();
    expect(bob.counters.replayed).toBe(1);
    expect(bob.unprotectRtp(wire.subarray(0, 14))).toBeUndefined();
    expect(bob.counters.malformed).toBe(1);
    const rtcp = Buffer.from(alice.protectRtcp(Buffer.from([0x80, 201, 0, 1, 0, 0, 0x12, 0x34])));
    const badRtcp = Buffer.from(rtcp);
    badRtcp[9]! ^= 0x80;
    expect(bob.unprotectRtcp(badRtcp)).toBeUndefined();
    expect(bob.unprotectRtcp(rtcp)).toBeDefined();
    expect(bob.unprotectRtcp(rtcp)).toBeUndefined();
    expect(bob.counters).toEqual({ authFailures: 2, replayed: 2, malformed: 1 });
  });

  it('never throws on random bytes, and accepts none of them', () => {
    const { bob } = pair(profile);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(bob.unprotectRtp(bytes)).toBeUndefined();
        expect(bob.unprotectRtcp(bytes)).toBeUndefined();
      }),
    );
  });
});

describe('replay window and index estimation', () => {
  it('accepts late packets once inside the window, none behind it', () => {
    const w = new ReplayWindow();
    for (const i of [10, 12, 11, 200]) {
      expect(w.check(i)).toBe(true);
      w.commit(i);
    }
    expect(w.check(11)).toBe(false);
    expect(w.check(199)).toBe(true);
    expect(w.check(72)).toBe(false); // 128 behind
    expect(w.check(73)).toBe(true);
  });

  it('follows RFC 3711 Appendix A around the rollover', () => {
    expect(estimateIndex(-1, 5)).toBe(5);
    expect(estimateIndex(65535, 2)).toBe(65538);
    expect(estimateIndex(65538, 65534)).toBe(65534);
    expect(estimateIndex(10, 65534)).toBe(-1);
  });
});
