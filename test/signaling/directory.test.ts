/**
 * Issue 22 on the virtual network: what the server tells a console (the cameras a viewer may call,
 * fetched with SUBSCRIBE/NOTIFY) and its admin page (NAT class, RTT, live route and bytes), and the
 * requests it refuses on the way.
 */
import { describe, expect, it } from 'vitest';
import { Gateway } from '../../src/gateway/gateway.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { STATUS_CONTENT_TYPE } from '../../src/protocol/sc2c-status.ts';
import { SignalingClient, SipRequestError } from '../../src/signaling/client.ts';
import { CAMERAS_EVENT, NAT_HEADER, readNatLabel } from '../../src/signaling/presence.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { profiles } from '../net/world.ts';

const SIP = { address: '198.18.0.10', port: 5060 };
const STUN = { address: '198.18.0.10', port: 3478 };
const USERS = {
  viewer: { password: 'viewer-pass-1' },
  cam1: { password: 'cam1-pass-1', callers: ['viewer'] },
  cam2: { password: 'cam2-pass-1', callers: ['viewer'] },
  hidden: { password: 'hidden-pass-1', callers: ['someone'] },
};
type User = keyof typeof USERS;

async function setup() {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 22 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  const natA = net.addNat('nat-a', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: profiles.resolve('symmetric-seq1+pks'),
  });
  const natB = net.addNat('nat-b', {
    publicAddress: '198.18.2.1',
    insideAddress: '10.0.2.1',
    behaviour: profiles.resolve('symmetric-seq1+ips'),
  });
  const viewerHost = net.addHost('viewer', { addresses: ['10.0.1.2'] });
  const cameraHost = net.addHost('camera', { addresses: ['10.0.2.2'] });
  net.connect(serverHost, internet, {});
  net.connect(natA, internet, { latencyMs: 10 });
  net.connect(natB, internet, { latencyMs: 10 });
  net.connect(viewerHost, natA, { latencyMs: 1 });
  net.connect(cameraHost, natB, { latencyMs: 1 });
  const stun = await StunResponder.start(serverHost, {
    primary: STUN,
    alternate: { address: '198.18.0.11', port: 3479 },
  });
  // The fetchable reads `server` only when a fetch arrives, after it started.
  const server: SignalingServer = await SignalingServer.start(
    { network: serverHost, clock },
    {
      listen: { port: 5060 },
      realm: 'sc2c.lab',
      users: USERS,
      fetchable: new Map([[CAMERAS_EVENT, async (user: string) => ({ cameras: server.callableBy(user) })]]),
    },
  );
  const gateway = (network: typeof viewerHost, user: User, statusIntervalMs = 1000) =>
    clock.run(
      Gateway.start(
        { network, clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user, password: USERS[user].password },
          stunServer: STUN,
          stunRtoMs: 100,
          statusIntervalMs,
        },
      ),
    );
  const client = async (network: typeof viewerHost, user: User) => {
    const c = await clock.run(
      SignalingClient.connect(
        { network, clock },
        { server: SIP, domain: 'sc2c.lab', user, password: USERS[user].password },
      ),
    );
    await clock.run(c.register());
    return c;
  };
  return { clock, server, stun, viewerHost, cameraHost, gateway, client };
}

describe('the server directory (issue 22)', () => {
  it("lists, by fetch, only the cameras naming the viewer, with online state and each gateway's NAT class", async () => {
    const s = await setup();
    const cam1 = await s.gateway(s.cameraHost, 'cam1');
    const viewer = await s.client(s.viewerHost, 'viewer');
    const body = await s.clock.run(viewer.fetchState(CAMERAS_EVENT));
    const { cameras } = JSON.parse(body) as {
      cameras: { user: string; online: boolean; natClass: string | null }[];
    };
    expect(cameras.map((c) => [c.user, c.online])).toEqual([
      ['cam1', true],
      ['cam2', false],
    ]);
    // The class its probe found (address-and-port-dependent mapping behind the symmetric NAT).
    expect(cameras[0]!.natClass).toMatch(/^address-and-port-dependent\//);
    expect(cameras[1]!.natClass).toBeNull();
    cam1.close();
    viewer.close();
    s.server.close();
    s.stun.close();
  });

  it('refuses a fetch of an unknown event (489) and one from an unregistered connection (403)', async () => {
    const s = await setup();
    const viewer = await s.client(s.viewerHost, 'viewer');
    const unknown = await s.clock.run(viewer.fetchState('presence').catch((e: unknown) => e));
    expect(unknown).toBeInstanceOf(SipRequestError);
    expect((unknown as SipRequestError).status).toBe(489);
    const stranger = await s.clock.run(
      SignalingClient.connect(
        { network: s.cameraHost, clock: s.clock },
        { server: SIP, domain: 'sc2c.lab', user: 'cam2', password: 'x' },
      ),
    );
    const refused = await s.clock.run(stranger.fetchState(CAMERAS_EVENT).catch((e: unknown) => e));
    expect((refused as SipRequestError).status).toBe(403);
    stranger.close();
    viewer.close();
    s.server.close();
    s.stun.close();
  });

  it("keeps the caller's route and bytes for a live call, refuses them from the callee, and remembers the route after the BYE", async () => {
    const s = await setup();
    const cam1 = await s.gateway(s.cameraHost, 'cam1');
    const viewer = await s.gateway(s.viewerHost, 'viewer');
    const outcome = await s.clock.run(viewer.call('cam1'));
    expect(outcome.ok).toBe(true);
    // No media runs here: the reports carry the checks and keepalives the path counted.
    await s.clock.advance(2500);
    const [live] = s.server.calls();
    expect(live).toMatchObject({
      caller: 'viewer',
      callee: 'cam1',
      route: 'direct',
      transport: 'udp',
      relayBytes: 0,
    });
    expect(live!.directBytes).toBeGreaterThanOrEqual(0);
    expect(live!.statusAgoS).toBeLessThanOrEqual(1);
    // The callee may not speak for the call, and a body that is not a status is refused.
    const sig = cam1.signaling;
    const asCallee = await s.clock.run(
      sig.request('INFO', sig.uri('viewer'), [['Content-Type', STATUS_CONTENT_TYPE]], {
        callId: outcome.callId,
        body: '{"route":"relay","transport":"udp","directBytes":0,"relayBytes":99}',
      }),
    );
    expect(asCallee.status).toBe(403);
    const v = viewer.signaling;
    for (const body of [
      '{"route":"sideways"}',
      '[]',
      '{"route":"direct","transport":"udp","directBytes":-1,"relayBytes":0}',
      'x'.repeat(2000),
    ]) {
      const bad = await s.clock.run(
        v.request('INFO', v.uri('cam1'), [['Content-Type', STATUS_CONTENT_TYPE]], {
          callId: outcome.callId,
          body,
        }),
      );
      expect(bad.status).toBe(400);
    }
    expect(s.server.calls()[0]!.route).toBe('direct');
    viewer.hangup(outcome.callId);
    await s.clock.advance(1000);
    const cameras = s.server.callableBy('viewer');
    expect(cameras[0]).toMatchObject({ user: 'cam1', lastCall: { peer: 'viewer', route: 'direct' } });
    cam1.close();
    viewer.close();
    s.server.close();
    s.stun.close();
    await s.clock.advance(60_000);
    expect(s.clock.pendingTimers()).toBe(0);
  });

  it('stores a NAT class only in its own alphabet: markup and other junk are never kept or shown', () => {
    expect(readNatLabel('endpoint-independent/address-dependent/sequential+1/no-ips')).toBe(
      'endpoint-independent/address-dependent/sequential+1/no-ips',
    );
    for (const junk of ['<script>alert(1)</script>', 'a b', '', '-x', 'x'.repeat(121), 'A/B', 'nat"quoted'])
      expect(readNatLabel(junk), junk).toBeUndefined();
    expect(NAT_HEADER).toBe('Sc2c-Nat');
  });
});
