/**
 * SIGTERM and SIGINT on real processes on loopback (issue 18's signals item, which issue 17's
 * clean-up work made testable): a viewer stopped in the middle of a recorded call hangs up, leaves
 * a valid MP4 and exits within the 5 s grace; the camera gateway stopped the same way exits too.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { freePort } from '../free-port.ts';
import { loopbackConfigs, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-signals-');

describe('signals end calls cleanly (real processes on loopback)', () => {
  it('SIGTERM mid-recording: BYE, a valid MP4, the viewer, the camera and the server exit by themselves', async () => {
    const [sip, stun] = [await freePort(), await freePort()];
    const configs = loopbackConfigs(
      dir,
      { sip, stun },
      '    viewer: viewer-signal-pass\n    camera: { password: camera-signal-pass, callers: [viewer] }',
    );
    const [serverConfig, gatewayConfig] = [configs.server, configs.gateway];
    const server = await startServer(sc2c, serverConfig);
    const camera = sc2c([
      'gateway',
      '--config',
      gatewayConfig,
      '--user',
      'camera',
      '--password',
      'camera-signal-pass',
      '--json',
    ]);
    await until('the camera to register', () => /"event":"registered"/.test(camera.out()));
    const mp4 = join(dir, 'stopped.mp4');
    const viewer = sc2c([
      'call',
      'camera',
      '--config',
      gatewayConfig,
      '--user',
      'viewer',
      '--password',
      'viewer-signal-pass',
      '--record',
      mp4,
      '--duration',
      '60',
      '--json',
    ]);
    await until('media at the camera', () => /"event":"media-started"/.test(camera.out()));
    // A few seconds of video, then the operator's service manager stops the viewer.
    await new Promise((r) => setTimeout(r, 4000));
    viewer.child.kill('SIGTERM');
    // Exit code 0 is the orderly exit: the 5 s deadline (src/cli/shutdown.ts) would exit with 1.
    const { code } = await viewer.exited;
    expect(code).toBe(0);
    expect(viewer.err()).not.toMatch(/still running/);
    const result = JSON.parse(viewer.out().trim().split('\n').pop()!) as {
      ok: boolean;
      media?: { encryption?: string };
    };
    expect(result.ok).toBe(true);
    expect(result.media?.encryption).toMatch(/^DTLS-SRTP/);
    // The viewer's BYE reached the camera: its media ended.
    await until('the camera to see the BYE', () => /"event":"media-ended"/.test(camera.out()), 5000);
    const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
    expect(info.videoCodec).toBe('h264');
    expect(info.videoFrames).toBeGreaterThan(30);
    camera.child.kill('SIGTERM');
    expect((await camera.exited).code).toBe(0);
    expect(camera.err()).not.toMatch(/still running/);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 90_000);
});
