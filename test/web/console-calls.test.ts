/**
 * The console's calls on the virtual network (issue 22): a tile's call is hung up when no browser
 * has watched it for `idleHangupS` (a browser that went away must not hold a camera for good), and
 * stays up while one watches. The record of each call is kept. No ffmpeg runs: the viewer only
 * receives, and the fMP4 path needs none.
 */
import type { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GatewayAccounting } from '../../src/cli/accounting.ts';
import { loadGatewayConfig } from '../../src/cli/configs.ts';
import { Gateway } from '../../src/gateway/gateway.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';
import { ConsoleCalls } from '../../src/web/console-calls.ts';
import { profiles } from '../net/world.ts';

const dir = mkdtempSync(join(tmpdir(), 'sc2c-console-calls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIP = { address: '198.18.0.10', port: 5060 };
const STUN = { address: '198.18.0.10', port: 3478 };
const USERS = { viewer: { password: 'viewer-pass-1' }, cam: { password: 'cam-pass-1', callers: ['viewer'] } };

async function setup() {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 7 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  const nat = net.addNat('nat', {
    publicAddress: '198.18.1.1',
    insideAddress: '10.0.1.1',
    behaviour: profiles.resolve('port-restricted-cone'),
  });
  const viewerHost = net.addHost('viewer', { addresses: ['10.0.1.2'] });
  const cameraHost = net.addHost('camera', { addresses: ['198.18.3.3'] });
  net.connect(serverHost, internet, {});
  net.connect(nat, internet, { latencyMs: 10 });
  net.connect(cameraHost, internet, { latencyMs: 10 });
  net.connect(viewerHost, nat, { latencyMs: 1 });
  const stun = await StunResponder.start(serverHost, {
    primary: STUN,
    alternate: { address: '198.18.0.11', port: 3479 },
  });
  const server = await SignalingServer.start(
    { network: serverHost, clock },
    { listen: { port: 5060 }, realm: 'sc2c.lab', users: USERS },
  );
  const start = (network: typeof viewerHost, user: keyof typeof USERS, send: boolean) =>
    clock.run(
      Gateway.start(
        { network, clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user, password: USERS[user].password },
          stunServer: STUN,
          stunRtoMs: 100,
          media: { send, receive: !send, audio: [] },
        },
      ),
    );
  const camera = await start(cameraHost, 'cam', true);
  const viewer = await start(viewerHost, 'viewer', false);
  const spoolFile = join(dir, `spool-${Math.random().toString(36).slice(2)}.jsonl`);
  const accounting = new GatewayAccounting(viewer, clock, { publish: false, spoolFile }, () => {});
  const media = { ...loadGatewayConfig('config/gateway.yaml').media, peerTimeoutMs: 3_600_000 };
  const calls = new ConsoleCalls(
    // Nothing here spawns ffmpeg: the viewer receives only, and the fMP4 view remuxes in-process.
    {
      clock,
      network: viewerHost,
      // A spawn that fails the test if anything tries to start ffmpeg.
      ffmpeg: () => ({
        spawn: (() => {
          throw new Error('the console started an ffmpeg');
        }) as unknown as typeof spawn,
        binary: { path: '/nonexistent/ffmpeg', from: 'system' as const },
      }),
    },
    viewer,
    accounting,
    { media, idleHangupS: 60, maxCalls: 2 },
  );
  return {
    clock,
    calls,
    spoolFile,
    close: async () => {
      await calls.close();
      viewer.close();
      camera.close();
      server.close();
      stun.close();
    },
  };
}

describe("the console's calls", () => {
  it('hang up after idleHangupS unwatched, stay up while a browser watches, and leave a record', async () => {
    const s = await setup();
    const watched = await s.clock.run(s.calls.place('cam', 'mse'));
    const unwatched = await s.clock.run(s.calls.place('cam', 'mse'));
    expect(watched.state).toBe('up');
    // A browser holds `watched`'s fMP4 stream open; nobody opens the other.
    const detach = watched.live.attach({ write: () => {}, writableLength: 0 });
    expect(detach).toBeDefined();
    await s.clock.advance(59_000);
    expect(unwatched.state).toBe('up');
    await s.clock.advance(10_000);
    expect(unwatched.state).toBe('ended');
    expect(unwatched.endedReason).toBe('nobody watched for 60 s');
    expect(watched.state).toBe('up');
    // The browser goes away without closing its tile: the call follows a minute later.
    detach!();
    await s.clock.advance(70_000);
    expect(watched.state).toBe('ended');
    const records = readFileSync(s.spoolFile, 'utf8').trim().split('\n');
    expect(records).toHaveLength(2);
    expect(records.map((r) => (JSON.parse(r) as { reason?: string }).reason)).toEqual([
      'nobody watched for 60 s',
      'nobody watched for 60 s',
    ]);
    await s.close();
  });

  it('refuses a camera name that is not a SIP user name, and calls beyond maxCalls', async () => {
    const s = await setup();
    await expect(s.calls.place('../cam', 'mse')).rejects.toMatchObject({ status: 400 });
    await s.clock.run(s.calls.place('cam', 'mse'));
    await s.clock.run(s.calls.place('cam', 'mse'));
    // maxCalls is 2 here: the third is refused before any signaling.
    await expect(s.calls.place('cam', 'mse')).rejects.toMatchObject({ status: 429 });
    await s.close();
  });
});
