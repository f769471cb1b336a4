/**
 * The README's "Run it on your own hosts" recipe in the kernel lab (issue 18): `sc2c init` for the
 * server's public address, the server on that host, a 2-camera gateway behind one NAT (the PKS
 * kind) and the viewer behind another (the IPS kind), each with only the file init wrote for it.
 * The STUN server has one address, as a rented host has.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { twoNatScenario } from '../../src/lab/calls.ts';
import {
  type HostProcess,
  spawnInHost,
  stopHostProcesses,
  waitForOutput,
} from '../../src/lab/host-process.ts';
import { startLab, stopLab } from '../../src/lab/instances.ts';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { labUnavailable, sc2c } from './support.ts';

const unavailable = await labUnavailable();

describe.skipIf(unavailable)('run it on your own hosts (kernel lab)', () => {
  it('init for the public address; server, camera gateway and viewer each behind their own NAT', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-own-hosts-'));
    const site = join(dir, 'site');
    const init = await sc2c('init', '--dir', site, '--public-ip', '198.18.0.10', '--cameras', '2');
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toMatch(/198\.18\.0\.10 is not an address of this host/);
    const scenario = twoNatScenario('symmetric-seq1+ips', 'symmetric-seq1+pks', 40);
    const scenarioPath = join(dir, 'lab.yaml');
    writeFileSync(scenarioPath, stringify(scenario));
    const state = await startLab({ scenarioPath, scenario, name: `oh${process.pid % 10_000}` });
    const children: HostProcess[] = [];
    try {
      const server = spawnInHost(state.hosts.server!, ['server', '--config', join(site, 'server.yaml')]);
      children.push(server);
      await waitForOutput(server, /sc2c server:/, 'sc2c server');
      // The camera site is bob's LAN (behind the PKS NAT), the viewer alice's (behind the IPS NAT).
      const gateway = spawnInHost(state.hosts.bob!, [
        'gateway',
        '--config',
        join(site, 'gateway.yaml'),
        '--json',
      ]);
      children.push(gateway);
      await waitForOutput(gateway, /"event":"cameras"/, 'the camera gateway');
      const mp4 = join(dir, 'camera1.mp4');
      const viewer = spawnInHost(state.hosts.alice!, [
        'call',
        'camera1',
        '--config',
        join(site, 'viewer.yaml'),
        '--record',
        mp4,
        '--duration',
        '4',
        '--json',
      ]);
      children.push(viewer);
      let out = '';
      viewer.stdout.on('data', (d) => {
        out += d;
      });
      const code = await new Promise((r) => viewer.on('exit', r));
      expect(code, out).toBe(0);
      const result = JSON.parse(out.trim().split('\n').pop()!) as {
        ok: boolean;
        route: string;
        encryption: string;
        local: { publicEndpoint: { address: string } };
      };
      expect(result.ok).toBe(true);
      expect(result.route).toBe('direct');
      expect(result.encryption).toMatch(/^DTLS-SRTP/);
      expect(result.local.publicEndpoint.address).toBe('198.18.1.1');
      expect(existsSync(mp4)).toBe(true);
      const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
      expect(info.videoCodec).toBe('h264');
      expect(info.videoFrames).toBeGreaterThan(30);
    } finally {
      await stopHostProcesses(children);
      await stopLab(state);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
