/**
 * DTLS-SRTP on whole calls on the virtual network (issue 17): the handshake on the punched path and
 * on the relay, one SRTP session across a route change, a certificate that does not match its SDP,
 * and a gateway that will not fall back to plain RTP.
 */
import { describe, expect, it } from 'vitest';
import type { ActiveCall } from '../../src/gateway/active-call.ts';
import type { CallOutcome } from '../../src/gateway/gateway.ts';
import { startEarlyDtls } from '../../src/gateway/secure-call.ts';
import { DtlsEndpoint } from '../../src/path/dtls-endpoint.ts';
import { createIdentity, type DtlsIdentity } from '../../src/protocol/dtls/certificate.ts';
import { Puncher } from '../../src/traversal/punch.ts';
import { world } from '../net/world.ts';
import { exchange, setup, stream } from '../relay/call-world.ts';

const alice = { identity: createIdentity('alice') };
const bob = { identity: createIdentity('bob') };
const both = { alice, bob };

/** Packets as they arrive from the wire, under any encryption: what an eavesdropper would see. */
function wire(path: { socket: { on(e: 'message', l: (d: Uint8Array) => void): unknown } }) {
  const seen: Uint8Array[] = [];
  path.socket.on('message', (data) => {
    if (data[0]! >= 128 && data[1] === 96) seen.push(data);
  });
  return seen;
}

/** The stream helper sends 160 zero bytes of payload: on the wire they stay zero only in clear. */
const clearPayloads = (packets: Uint8Array[]) =>
  packets.filter((p) => p.subarray(12).every((b) => b === 0)).length;

describe('DTLS-SRTP on calls', () => {
  it('encrypts a birthday-punched call (random-port NAT to a port-restricted cone) on the socket that won', async () => {
    const s = await setup('symmetric-random', 'port-restricted-cone', { dtls: both });
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'direct', encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    expect(other).toMatchObject({ ok: true, route: 'direct', encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    expect(outcome.local!.birthday).toBe(256);
    const { there, back } = await exchange(s.clock, outcome.path!, other.path!);
    expect(there).toBeGreaterThan(90);
    expect(back).toBeGreaterThan(90);
    s.close();
  });

  it('encrypts a direct PKS/IPS call: started beside the punch, the handshake adds less than a round trip', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: both });
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'direct', encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    expect(other).toMatchObject({ ok: true, encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    // 22 ms one way between the gateways here (virtual time): the ClientHello left with the first
    // checks, so once the path confirms about one round trip of the handshake is left.
    // The caller pins and only answers on the direct path, so the callee took the DTLS client's
    // role (a=setup:active, RFC 5763 §5): its ClientHello left with its checks, and the caller's
    // handshake was done by the time its pinned path confirmed.
    expect(outcome.local!.dtls!.setup).toBe('actpass');
    expect(other.local!.dtls!.setup).toBe('active');
    expect(outcome.pinned).toBe('local');
    expect(outcome.dtlsMs).toBeGreaterThanOrEqual(0);
    expect(outcome.dtlsMs).toBeLessThanOrEqual(44);
    const onWire = wire(other.routed!);
    const { there, back } = await exchange(s.clock, outcome.path!, other.path!);
    expect(there).toBeGreaterThan(90);
    expect(back).toBeGreaterThan(90);
    expect(onWire.length).toBeGreaterThan(90);
    expect(clearPayloads(onWire)).toBe(0);
    expect(onWire[0]!.byteLength).toBe(172 + 16); // the GCM tag
    expect(outcome.secure!.counters.authFailures).toBe(0);
    s.close();
  });

  it('keeps the caller as the DTLS client where nobody pins (two cones)', async () => {
    const s = await setup('port-restricted-cone', 'port-restricted-cone', { dtls: both });
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'direct', encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    expect(outcome.pinned).toBeUndefined();
    expect(other.local!.dtls!.setup).toBe('passive');
    s.close();
  });

  it('runs the handshake through the relay for a pair that cannot punch, and keeps the session', async () => {
    const s = await setup('symmetric-random', 'symmetric-random', { dtls: both });
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, route: 'relay', encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    expect(other.ok).toBe(true);
    const { there, back } = await exchange(s.clock, outcome.path!, other.path!);
    expect(there).toBeGreaterThan(90);
    expect(back).toBeGreaterThan(90);
    s.close();
  });

  it('keeps one SRTP session when media moves to the relay and back: no new handshake', async () => {
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: both });
    const { outcome, other } = await s.call();
    expect(outcome.route).toBe('direct');
    const sent = outcome.secure!.endpoint!.counters.datagramsSent;
    const there = stream(s.clock, outcome.path!, other.path!);
    const back = stream(s.clock, other.path!, outcome.path!);
    await s.clock.advance(1000);
    s.a.nat.flush('udp'); // the caller's NAT drops its mappings: the direct path dies
    await s.clock.advance(6000);
    there.stop();
    back.stop();
    expect(outcome.routed!.switches).toBeGreaterThan(0);
    expect(outcome.secure!.endpoint!.counters.datagramsSent).toBe(sent);
    expect(other.secure!.counters.authFailures).toBe(0);
    // Media kept arriving after the move, decrypted by the same session.
    const late = there.arrivals.filter((t) => t > s.clock.now() - 2000).length;
    expect(late).toBeGreaterThan(60);
    s.close();
  });

  it('ends the call at both ends when a certificate does not match the fingerprint in its SDP', async () => {
    const impostor = { identity: { ...createIdentity('impostor'), fingerprint: bob.identity.fingerprint } };
    const s = await setup('symmetric-seq1+pks', 'symmetric-seq1+ips', { dtls: { alice, bob: impostor } });
    const caller = await s.gateway(s.alice, 'alice');
    const callee = await s.gateway(s.bob, 'bob');
    const ended = new Promise<string>((resolve) => callee.on('ended', (_id, reason) => resolve(reason)));
    const answered = new Promise<CallOutcome>((resolve) => callee.on('call', resolve));
    const outcome = await s.clock.run(caller.call('bob'));
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(
      /DTLS: the peer's DTLS certificate .* does not match the fingerprint in its SDP/,
    );
    expect(await s.clock.run(ended)).toMatch(/the peer ended the call: DTLS: the peer's DTLS certificate/);
    expect((await s.clock.run(answered)).ok).toBe(false);
    s.close();
  });

  it('refuses plain RTP: an insecure caller gets 488 with the reason, an insecure callee a BYE', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-seq1', { dtls: { bob } });
    const { outcome } = await s.call();
    expect(outcome.ok).toBe(false);
    expect(outcome.reason).toMatch(/488 .*offers plain RTP/);
    const t = await setup('symmetric-seq1', 'symmetric-seq1', { dtls: { alice } });
    const second = await t.call();
    expect(second.outcome.ok).toBe(false);
    expect(second.outcome.reason).toMatch(/answered with plain RTP/);
    s.close();
    t.close();
  });

  it('without rtcp-mux, RTCP on the separate pair goes as SRTCP under the same session', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-seq1', { dtls: both, rtcpMux: false });
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, encryption: 'DTLS-SRTP AEAD_AES_128_GCM' });
    const theirs = other.path!.rtcp!;
    const ours = outcome.path!.rtcp!;
    const got: Uint8Array[] = [];
    const onWire: Uint8Array[] = [];
    theirs.socket.on('message', (data) => got.push(data));
    other.secure!.inner.rtcp!.socket.on('message', (data) => onWire.push(data));
    const rr = Uint8Array.from([0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78]);
    ours.socket.send(rr, ours.remote);
    await s.clock.advance(200);
    expect(got.map((p) => Buffer.from(p))).toEqual([Buffer.from(rr)]);
    // On the wire: SRTCP, the 8-byte header, a GCM tag and the E-flag and index.
    const wire = onWire.filter((p) => p[1] === 201);
    expect(wire.map((p) => p.byteLength)).toEqual([8 + 16 + 4]);
    s.close();
  });

  it('sends plain RTP when both sides turned encryption off, and says so', async () => {
    const s = await setup('symmetric-seq1', 'symmetric-seq1');
    const { outcome, other } = await s.call();
    expect(outcome).toMatchObject({ ok: true, encryption: 'none' });
    expect(outcome.secure).toBeUndefined();
    const onWire = wire(other.routed!);
    const { there } = await exchange(s.clock, outcome.path!, other.path!, 500);
    expect(there).toBeGreaterThan(20);
    expect(onWire.length).toBeGreaterThan(20); // so that the next line cannot pass on nothing
    expect(clearPayloads(onWire)).toBe(onWire.length);
    s.close();
  });
});

describe('the handshake beside the punch', () => {
  const pwd = (c: string): string => c.repeat(24);
  const description = (
    ufrag: string,
    password: string,
    setup: 'actpass' | 'passive',
    identity: DtlsIdentity,
  ) =>
    ({
      publicEndpoint: { address: '198.18.0.10', port: 1 },
      ufrag,
      pwd: password,
      nat: 'none',
      mode: 'sc2c',
      portSource: 'exact',
      rtcpMux: true,
      dtls: { fingerprint: identity.fingerprint, setup },
    }) as const;

  it("answers DTLS only from an address that passed a check with the call's credentials", async () => {
    const w = world();
    const cameraSocket = await w.server.bindUdp({ address: '198.18.0.10', port: 7000 });
    const viewerSocket = await w.server.bindUdp({ address: '198.18.0.11', port: 7001 });
    const strangerSocket = await w.server.bindUdp({ address: '198.18.0.11', port: 7002 });
    const cameraId = createIdentity('camera');
    const viewerId = createIdentity('viewer');
    const camera = description('cccc', pwd('c'), 'passive', cameraId);
    const viewer = description('vvvv', pwd('v'), 'actpass', viewerId);
    const puncher = new Puncher({ socket: cameraSocket, clock: w.clock }, { local: camera, remote: viewer });
    const active: ActiveCall = { socket: cameraSocket, ended: false, puncher };
    void puncher.punch([viewerSocket.local]).catch(() => undefined);
    startEarlyDtls({ clock: w.clock }, { identity: cameraId }, active, camera, viewer);
    // A stranger (who knows the fingerprints, not the check password) sends a ClientHello.
    const heard: Uint8Array[] = [];
    strangerSocket.on('message', (data) => heard.push(data));
    const stranger = new DtlsEndpoint(
      { clock: w.clock },
      { role: 'client', identity: viewerId, remoteFingerprint: cameraId.fingerprint },
      (d) => strangerSocket.send(d, cameraSocket.local),
    );
    stranger.start();
    await w.clock.advance(1000);
    expect(heard.filter((d) => d[0] === 22)).toHaveLength(0);
    expect(active.dtls!.state).toBe('waiting-hello');
    // The real viewer checks with the credentials and sends its ClientHello: flight 2 comes back.
    const viewerPuncher = new Puncher(
      { socket: viewerSocket, clock: w.clock },
      { local: viewer, remote: camera },
    );
    const confirmed = viewerPuncher.punch([cameraSocket.local]);
    const client = new DtlsEndpoint(
      { clock: w.clock },
      { role: 'client', identity: viewerId, remoteFingerprint: cameraId.fingerprint },
      (d) => viewerSocket.send(d, cameraSocket.local),
    );
    viewerSocket.on('message', (data) => {
      if (data[0]! >= 20 && data[0]! <= 63) client.handle(data);
    });
    client.start();
    await w.clock.run(confirmed);
    await w.clock.advance(500);
    expect(client.state).toBe('connected');
    expect(active.dtls!.state).toBe('connected');
    stranger.close();
    active.earlyOff!();
    active.dtls!.close();
    client.close();
    puncher.close();
    viewerPuncher.close();
  });
});
