/**
 * The README's "one machine" section, run as written (issue 18): `sc2c init` on loopback, then
 * the server, one gateway serving 4 cameras, and two viewers on one camera. Both recordings must
 * decode, and the gateway's own metrics must count one pull of that camera's source for both.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLIP_PATH } from '../../src/media/clip.ts';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { freePort } from '../free-port.ts';
import { initSite, recordCall, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-deploy-');

interface CameraStatus {
  camera: string;
  registered: boolean;
  source: string;
  sourcePulls: number;
  viewers: number;
  passthrough: boolean;
}

async function cameras(port: number): Promise<Map<string, CameraStatus>> {
  const response = await fetch(`http://127.0.0.1:${port}/cameras`);
  const list = (await response.json()) as CameraStatus[];
  return new Map(list.map((c) => [c.camera, c]));
}

describe('one machine: sc2c init, a server, a gateway with 4 cameras, two viewers', () => {
  it('records two decodable MP4s of one camera from one source pull, over TLS signaling and DTLS-SRTP', async () => {
    const [sip, stun, admin, metrics] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const { site: deploy, init } = await initSite(sc2c, dir, { sip, stun, admin }, [
      '--cameras',
      '4',
      '--json',
    ]);
    const written = JSON.parse(init.out()) as { files: string[]; fingerprint: string; next: string[] };
    expect(written.next).toHaveLength(3);
    for (const file of written.files) {
      // Passwords and keys: private to their owner; and nothing of the lab in them.
      expect(statSync(file).mode & 0o077).toBe(0);
      expect(readFileSync(file, 'utf8')).not.toMatch(/198\.1[89]\.|sc2c\.lab|change-me/);
    }
    expect(readFileSync(join(deploy, 'gateway.yaml'), 'utf8')).toContain(written.fingerprint);
    // A second init into the same place refuses to overwrite the passwords in use.
    const again = sc2c(['init', '--dir', deploy, '--public-ip', '127.0.0.1']);
    expect((await again.exited).code).toBe(2);
    expect(again.err()).toMatch(/already has .*--force/);

    // camera4 plays an H.264 file passed through without re-encoding (an RTSP camera's path).
    const gatewayYaml = join(deploy, 'gateway.yaml');
    writeFileSync(
      gatewayYaml,
      readFileSync(gatewayYaml, 'utf8').replace(
        /camera4: \{ source: testsrc,/,
        `camera4: { source: "file:${CLIP_PATH}", transcode: false,`,
      ),
    );

    const server = await startServer(sc2c, join(deploy, 'server.yaml'));
    expect(server.err()).toContain(written.fingerprint);
    const gateway = sc2c(['gateway', '--config', gatewayYaml, '--metrics', String(metrics), '--json']);
    await until('4 cameras', () => /"event":"cameras"/.test(gateway.out()), 30_000);
    const before = await cameras(metrics);
    expect([...before.values()].every((c) => c.registered && c.source === 'online')).toBe(true);
    expect(before.get('camera4')!.passthrough).toBe(true);

    const watch = (viewer: string, camera: string, mp4: string) =>
      recordCall(sc2c, camera, ['--config', join(deploy, `${viewer}.yaml`)], mp4);
    const [a, b] = [join(dir, 'a.mp4'), join(dir, 'b.mp4')];
    const first = watch('viewer', 'camera1', a);
    const second = watch('viewer2', 'camera1', b);
    await until('two viewers on camera1', () =>
      /"event":"media-started".*\n.*"event":"media-started"/s.test(gateway.out()),
    );
    const during = await cameras(metrics);
    expect(during.get('camera1')!.viewers).toBe(2);
    const results = await Promise.all([first.exited, second.exited]);
    expect(results.map((r) => r.code)).toEqual([0, 0]);
    for (const viewer of [first, second]) {
      const result = JSON.parse(viewer.out().trim().split('\n').pop()!) as {
        ok: boolean;
        encryption: string;
      };
      expect(result.ok).toBe(true);
      expect(result.encryption).toMatch(/^DTLS-SRTP/);
    }
    const ffprobe = locateFfprobe(locateFfmpeg())!;
    for (const mp4 of [a, b]) {
      const info = await probeRecording(ffprobe, mp4);
      expect(info.videoCodec).toBe('h264');
      expect(info.videoFrames).toBeGreaterThan(60);
    }
    // The passed-through camera decodes too.
    const c = join(dir, 'c.mp4');
    const third = watch('viewer', 'camera4', c);
    expect((await third.exited).code).toBe(0);
    expect((await probeRecording(ffprobe, c)).videoFrames).toBeGreaterThan(30);

    const after = await cameras(metrics);
    expect(after.get('camera1')!.sourcePulls).toBe(1);
    expect(after.get('camera4')!.sourcePulls).toBe(1);
    expect(after.get('camera2')!.sourcePulls).toBe(0);
    const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    expect(text).toMatch(/sc2c_camera_source_pulls_total\{camera="camera1"\} 1\b/);
    expect(text).toMatch(/sc2c_gateway_calls_total\{route="direct"\} 3\b/);

    gateway.child.kill('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 120_000);
});
