/**
 * The complaint of issue 18: two viewers of an RTSP camera opened two RTSP sessions to it and
 * encoded twice. Now the gateway checks the camera at start (one session, ffprobe), then pulls it
 * once for every viewer, passing its H.264 through without re-encoding. A real RTSP server (a test
 * camera over RTP interleaved in TCP) counts the sessions.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLIP_PATH, ensureClip } from '../../src/media/clip.ts';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { freePort } from '../free-port.ts';
import { type RtspCamera, startRtspCamera } from '../media/rtsp-camera.ts';
import { loopbackConfigs, recordCall, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-rtsp-');
let camera: RtspCamera | undefined;

afterAll(async () => {
  await camera?.close();
});

describe('an RTSP camera, two viewers', () => {
  it('is pulled once for both, passed through, and both recordings decode', async () => {
    const ffmpeg = locateFfmpeg();
    await ensureClip(ffmpeg);
    camera = await startRtspCamera(ffmpeg.path, CLIP_PATH);
    const [sip, stun] = [await freePort(), await freePort()];
    const configs = loopbackConfigs(
      dir,
      { sip, stun },
      [
        '    viewer: viewer-rtsp-pass',
        '    viewer2: viewer2-rtsp-pass',
        '    door: { password: door-rtsp-pass, callers: [viewer, viewer2] }',
      ].join('\n'),
      {
        server: '',
        gateway: `cameras:\n  door: { source: "${camera.url}", password: door-rtsp-pass, callers: [viewer, viewer2] }\n`,
      },
    );
    const server = await startServer(sc2c, configs.server);
    const gateway = sc2c(['gateway', '--config', configs.gateway, '--json']);
    await until('the camera', () => /"event":"cameras"/.test(gateway.out()), 30_000);
    expect(gateway.out()).toMatch(
      /"event":"source".*"state":"online".*"videoCodec":"h264".*"passthrough":true/,
    );
    // ffprobe's check was one session.
    expect(camera.plays()).toBe(1);
    const watch = (user: string, mp4: string) =>
      recordCall(
        sc2c,
        'door',
        ['--config', configs.gateway, '--user', user, '--password', `${user}-rtsp-pass`],
        mp4,
        // A passed-through camera keeps its own 2 s GOP: a viewer starts at the next keyframe, and
        // the recorder needs one within its 2 s analysis. 8 s leaves room on a loaded CI machine.
        8,
      );
    const [a, b] = [join(dir, 'a.mp4'), join(dir, 'b.mp4')];
    const first = watch('viewer', a);
    const second = watch('viewer2', b);
    expect((await first.exited).code).toBe(0);
    expect((await second.exited).code).toBe(0);
    // Both viewers from one pull: one more session, not two.
    expect(camera.plays()).toBe(2);
    const ffprobe = locateFfprobe(ffmpeg)!;
    for (const mp4 of [a, b]) {
      const info = await probeRecording(ffprobe, mp4);
      expect(info.videoCodec).toBe('h264');
      expect(info.videoFrames).toBeGreaterThan(30);
    }
    gateway.child.kill('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 90_000);
});
