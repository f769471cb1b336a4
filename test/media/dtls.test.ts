import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/net/clock.ts';
import { DtlsEndpoint, type DtlsEndpointInit, type DtlsKeys } from '../../src/path/dtls-endpoint.ts';
import { createIdentity, identityFromPem, identityToPem } from '../../src/protocol/dtls/certificate.ts';
import { decodeRecords } from '../../src/protocol/dtls/record.ts';
import { SrtpSession } from '../../src/protocol/srtp/srtp.ts';

const camera = createIdentity('camera');
const viewer = createIdentity('viewer');

interface Link {
  /** Drop the n-th datagram in each direction (1-based) when it returns true. */
  drop?: (direction: 'c2s' | 's2c', n: number) => boolean;
  /** Rewrite a datagram in flight. */
  tamper?: (direction: 'c2s' | 's2c', data: Uint8Array) => Uint8Array;
  delayMs?: number;
}

function connect(
  link: Link = {},
  client: Partial<DtlsEndpointInit> = {},
  server: Partial<DtlsEndpointInit> = {},
) {
  const clock = new VirtualClock();
  const counts = { c2s: 0, s2c: 0 };
  const results: { client?: DtlsKeys | string; server?: DtlsKeys | string } = {};
  let a!: DtlsEndpoint;
  let b!: DtlsEndpoint;
  const carry = (direction: 'c2s' | 's2c') => (data: Uint8Array) => {
    const n = ++counts[direction];
    if (link.drop?.(direction, n)) return;
    const out = link.tamper ? link.tamper(direction, data) : data;
    clock.setTimeout(() => (direction === 'c2s' ? b : a).handle(out), link.delayMs ?? 20);
  };
  a = new DtlsEndpoint(
    { clock },
    { role: 'client', identity: viewer, remoteFingerprint: camera.fingerprint, ...client },
    carry('c2s'),
  );
  b = new DtlsEndpoint(
    { clock },
    { role: 'server', identity: camera, remoteFingerprint: viewer.fingerprint, ...server },
    carry('s2c'),
  );
  a.on('connected', (k) => (results.client = k));
  b.on('connected', (k) => (results.server = k));
  a.on('failed', (r) => (results.client = r));
  b.on('failed', (r) => (results.server = r));
  b.start();
  a.start();
  return { clock, a, b, results, counts };
}

describe('DTLS certificates', () => {
  it('every new identity reads back from its PEM and parses as X.509 (minimal DER serial)', () => {
    // About one serial in 256 used to carry a redundant leading zero, which OpenSSL refuses: 1500
    // identities meet one with near certainty.
    for (let i = 0; i < 1500; i++) {
      const identity = createIdentity('roundtrip');
      expect(identityFromPem(identityToPem(identity)).fingerprint).toBe(identity.fingerprint);
    }
  });
});

describe('DTLS-SRTP handshake', () => {
  it('agrees on GCM keys in two round trips, each side keyed for the other', async () => {
    const { clock, results, counts, a, b } = connect();
    await clock.advance(100);
    const client = results.client as DtlsKeys;
    const server = results.server as DtlsKeys;
    expect(client.profile).toBe(7);
    expect(Buffer.from(client.local.key)).toEqual(Buffer.from(server.remote.key));
    expect(Buffer.from(client.remote.salt)).toEqual(Buffer.from(server.local.salt));
    expect(counts).toEqual({ c2s: 2, s2c: 2 });
    // The keys work: SRTP from the server decrypts at the client.
    const s = new SrtpSession(server.profile, server.local, server.remote);
    const c = new SrtpSession(client.profile, client.local, client.remote);
    const rtp = Buffer.from([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3]);
    expect(Buffer.from(c.unprotectRtp(s.protectRtp(rtp))!)).toEqual(rtp);
    expect(clock.pendingTimers()).toBe(0);
    a.close();
    b.close();
  });

  it('falls back to AES-CM when the peer offers only that', async () => {
    const { clock, results } = connect({}, { profiles: [1] });
    await clock.advance(100);
    expect((results.server as DtlsKeys).profile).toBe(1);
  });

  it('survives the loss of every first flight in both directions', async () => {
    const { clock, results, a } = connect({ drop: (_d, n) => n === 1 });
    await clock.advance(3000);
    expect((results.client as DtlsKeys).profile).toBe(7);
    expect((results.server as DtlsKeys).profile).toBe(7);
    expect(a.counters.retransmits).toBeGreaterThan(0);
  });

  it('recovers when the last flight is lost (the client retransmits, the server answers again)', async () => {
    const { clock, results } = connect({ drop: (d, n) => d === 's2c' && n === 2 });
    await clock.advance(2000);
    expect(typeof results.client).toBe('object');
  });

  it('fails at the client when the server certificate does not match the SDP fingerprint', async () => {
    const other = createIdentity('impostor');
    const { clock, results } = connect({}, { remoteFingerprint: other.fingerprint });
    await clock.advance(100);
    expect(results.client).toMatch(/does not match the fingerprint in its SDP/);
    // The server only sees an unauthenticated alert: it keeps waiting, then gives up with a hint.
    await clock.advance(10_000);
    expect(results.server).toMatch(/not complete .*alert 42/);
  });

  it('fails at the server when the client certificate does not match', async () => {
    const other = createIdentity('impostor');
    const { clock, results } = connect({}, {}, { remoteFingerprint: other.fingerprint });
    await clock.advance(100);
    expect(results.server).toMatch(/does not match the fingerprint/);
  });

  it('refuses a man in the middle who replays the real certificate with his own key exchange', async () => {
    // The relay swaps the server's ECDHE public key: the signature no longer verifies.
    const { clock, results } = connect({
      tamper: (d, data) => {
        if (d !== 's2c') return data;
        const out = Buffer.from(data);
        const records = decodeRecords(out);
        if (records.length < 3) return data;
        // Third record is ServerKeyExchange: flip a byte of the public point.
        let at = 0;
        for (let i = 0; i < 2; i++) at += 13 + records[i]!.fragment.byteLength;
        out[at + 13 + 12 + 10]! ^= 0x01;
        return out;
      },
    });
    await clock.advance(200);
    expect(results.client).toMatch(/signature does not verify|not on the curve|Public key/i);
  });

  it('ignores garbage and stays quiet after close', async () => {
    const { clock, a, b, results } = connect({ delayMs: 50 });
    b.handle(new Uint8Array([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200]));
    b.handle(new Uint8Array([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0]));
    await clock.advance(300);
    expect([a.state, b.state]).toEqual(['connected', 'connected']);
    expect(typeof results.server).toBe('object');
    let closedByPeer = 0;
    b.on('closed', () => closedByPeer++);
    a.close();
    a.close();
    await clock.advance(100); // the close_notify in flight
    expect(closedByPeer).toBe(1);
    expect(b.state).toBe('closed');
    expect(clock.pendingTimers()).toBe(0);
  });

  it('reports a handshake cut short by close()', async () => {
    const { clock, a, results } = connect({ drop: () => true });
    await clock.advance(50);
    a.close();
    expect(results.client).toMatch(/ended before the DTLS handshake/);
    await clock.advance(20_000);
    expect(results.server).toMatch(/not complete/);
    expect(clock.pendingTimers()).toBe(0);
  });
});
