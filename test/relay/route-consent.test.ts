/**
 * Consent on a media route (RFC 7675's figures) on the virtual clock: given only by a signed
 * answer, refreshed every 5 s, withdrawn 30 s after the last answer, and bounded checks to an
 * address that never answers. Then on a real path: media to a direct peer that stops answering
 * checks stops 30 s later.
 */
import { describe, expect, it } from 'vitest';
import { every, VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { type ConsentCredentials, RouteConsent } from '../../src/path/route-consent.ts';
import { RoutedPath } from '../../src/path/routed-path.ts';

const A: ConsentCredentials = {
  localUfrag: 'aaaa',
  localPwd: 'a'.repeat(24),
  remoteUfrag: 'bbbb',
  remotePwd: 'b'.repeat(24),
};
const B: ConsentCredentials = {
  localUfrag: 'bbbb',
  localPwd: 'b'.repeat(24),
  remoteUfrag: 'aaaa',
  remotePwd: 'a'.repeat(24),
};

/** Two consents joined by a wire that can be cut, as two gateways over one route. */
function pair(clock: VirtualClock, bCredentials = B) {
  const wire = { up: true, aToB: 0 };
  const changes: string[] = [];
  let b: RouteConsent | undefined;
  const a = new RouteConsent(
    { clock },
    A,
    (data) => {
      wire.aToB++;
      if (wire.up) clock.setTimeout(() => b?.handle(data), 10);
    },
    {},
    (confirmed, why) => changes.push(`${confirmed}: ${why}`),
  );
  b = new RouteConsent({ clock }, bCredentials, (data) => {
    if (wire.up) clock.setTimeout(() => a.handle(data), 10);
  });
  return { a, b, wire, changes };
}

/** Us and a peer on the public network, 10 ms apart, each with a bound socket. */
async function twoPublicHosts() {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 1 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const us = net.addHost('us', { addresses: ['198.18.3.1'] });
  const peer = net.addHost('peer', { addresses: ['198.18.3.2'] });
  net.connect(us, internet, { latencyMs: 5 });
  net.connect(peer, internet, { latencyMs: 5 });
  return { clock, socket: await us.bindUdp(), peerSocket: await peer.bindUdp() };
}

/** A path on the direct route between the two hosts, with a relay leg to move to (no consent). */
async function directWithRelay() {
  const { clock, socket, peerSocket } = await twoPublicHosts();
  const path = new RoutedPath(
    { clock },
    {
      direct: { socket, remote: { address: '198.18.3.2', port: peerSocket.local.port } },
      relay: {
        inbound: { on: () => () => {} },
        socket: { local: { address: '198.18.0.10', port: 50_000 }, send: () => {} },
        peerRelayed: { address: '198.18.0.10', port: 50_002 },
      },
      route: 'direct',
    },
  );
  return { clock, path, peerSocket, us1: { address: '198.18.3.1', port: socket.local.port } };
}

describe('route consent', () => {
  it('is given by a signed answer, kept by answers every 5 s, and withdrawn 30 s after the last', async () => {
    const clock = new VirtualClock();
    const { a, b, wire, changes } = pair(clock);
    expect(a.confirmed).toBe(false);
    await clock.advance(50);
    expect(a.confirmed).toBe(true);
    expect(b.confirmed).toBe(true);
    await clock.advance(60_000);
    expect(a.confirmed).toBe(true);
    // About one check every 5 s once confirmed.
    const before = a.counters.checksSent;
    await clock.advance(50_000);
    expect(a.counters.checksSent - before).toBeLessThanOrEqual(11);
    // Cut: the last answer came at most 5 s ago, so consent ends 25 to 30 s from now.
    wire.up = false;
    await clock.advance(24_000);
    expect(a.confirmed).toBe(true);
    await clock.advance(7000);
    expect(a.confirmed).toBe(false);
    expect(changes).toEqual(['true: the peer answered a check', 'false: the peer stopped answering checks']);
    a.close();
    b.close();
  });

  it('is never given by a peer with the wrong password, and sends at most 100 checks to an address that never answers', async () => {
    const clock = new VirtualClock();
    const { a, b, wire } = pair(clock, { ...B, localPwd: 'x'.repeat(24), remotePwd: 'y'.repeat(24) });
    await clock.advance(60_000);
    expect(a.confirmed).toBe(false);
    // b knows neither password: each refuses the other's checks, and a never gets a valid answer.
    expect(b.counters.rejected).toBeGreaterThan(0);
    expect(a.counters.rejected).toBeGreaterThan(0);
    expect(wire.aToB).toBeGreaterThan(50);
    expect(wire.aToB).toBeLessThanOrEqual(102);
    a.close();
    b.close();
  });

  it('stops media to a direct peer 30 s after it stops answering checks', async () => {
    const { clock, socket, peerSocket } = await twoPublicHosts();
    // The peer's side answers checks (as its puncher does) until it stops.
    let answering = true;
    const us1 = { address: '198.18.3.1', port: socket.local.port };
    const peerConsent = new RouteConsent({ clock }, B, (data) => peerSocket.send(data, us1), {
      confirmed: true,
    });
    let media = 0;
    peerSocket.on('message', (data) => {
      if (data[1] === 96) media++;
      else if (answering) peerConsent.handle(data);
    });
    const path = new RoutedPath(
      { clock },
      {
        direct: { socket, remote: { address: '198.18.3.2', port: peerSocket.local.port } },
        route: 'direct',
        consent: A,
      },
    );
    const packet = Uint8Array.from([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const timer = every(clock, 100, () => path.send(packet));
    await clock.advance(20_000);
    expect(media).toBeGreaterThan(190);
    answering = false;
    const atStop = media;
    await clock.advance(40_000);
    timer.clear();
    // Media went on until consent ran out (30 s after the last answer, at most 5 s before the stop).
    expect(media - atStop).toBeGreaterThan(240);
    expect(media - atStop).toBeLessThan(310);
    expect(path.drops.unconfirmedDirect).toBeGreaterThan(90);
    path.close();
    peerConsent.close();
  });

  it('times a direct path by its media, not by the handshake burst before it', async () => {
    // Issue 19 turned the callee into the DTLS client: it now hears the server's flights (several
    // datagrams within milliseconds) before the viewer's RTCP, once a second. Timed by that burst,
    // a second without RTCP looked like a dead path and media went to the relay.
    const { clock, path, peerSocket, us1 } = await directWithRelay();
    const dtls = Uint8Array.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (let i = 0; i < 4; i++) peerSocket.send(dtls, us1);
    const rtcp = Uint8Array.from([0x81, 201, 0, 7, 0, 0, 0, 1, ...new Array(24).fill(0)]);
    const timer = every(clock, 1000, () => peerSocket.send(rtcp, us1));
    await clock.advance(10_000);
    timer.clear();
    expect(path.counters.direct.packetsReceived).toBe(13);
    expect(path.switches).toBe(0);
    expect(path.route).toBe('direct');
    path.close();
  });

  it('keeps a send-only side on the direct path through a burst of keyframe requests, then reports a second apart', async () => {
    // The console's tile asks for keyframes (PLI) in a burst as it attaches; the camera, hearing
    // only RTCP, timed the path by that burst and took the next report's second for a dead path.
    const { clock, path, peerSocket, us1 } = await directWithRelay();
    const pli = Uint8Array.from([0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (let i = 0; i < 5; i++) clock.setTimeout(() => peerSocket.send(pli, us1), i * 40);
    const rtcp = Uint8Array.from([0x81, 201, 0, 7, 0, 0, 0, 1, ...new Array(24).fill(0)]);
    const timer = every(clock, 1000, () => peerSocket.send(rtcp, us1));
    await clock.advance(10_000);
    expect(path.switches).toBe(0);
    // It still notices a path that really died: the reports stop, and within 4 s it moves.
    timer.clear();
    await clock.advance(4500);
    expect(path.route).toBe('relay');
    path.close();
  });

  it("asks a re-punched pair for consent with the re-offer's credentials, so it outlives 30 s", async () => {
    const { clock, socket, peerSocket } = await twoPublicHosts();
    const fresh: ConsentCredentials = {
      localUfrag: 'cccc',
      localPwd: 'c'.repeat(24),
      remoteUfrag: 'dddd',
      remotePwd: 'd'.repeat(24),
    };
    const peerFresh: ConsentCredentials = {
      localUfrag: 'dddd',
      localPwd: 'd'.repeat(24),
      remoteUfrag: 'cccc',
      remotePwd: 'c'.repeat(24),
    };
    const us1 = { address: '198.18.3.1', port: socket.local.port };
    // The peer's puncher on the new pair answers with the new credentials only.
    const peerConsent = new RouteConsent({ clock }, peerFresh, (data) => peerSocket.send(data, us1), {
      confirmed: true,
    });
    let media = 0;
    peerSocket.on('message', (data) => {
      if (data[1] === 96) media++;
      else peerConsent.handle(data);
    });
    const path = new RoutedPath({ clock }, { route: 'direct', consent: A });
    path.setDirect(socket, { address: '198.18.3.2', port: peerSocket.local.port }, fresh);
    const packet = Uint8Array.from([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const timer = every(clock, 100, () => path.send(packet));
    await clock.advance(60_000);
    timer.clear();
    expect(path.drops.unconfirmedDirect).toBe(0);
    expect(media).toBeGreaterThan(590);
    path.close();
    peerConsent.close();
  });
});
