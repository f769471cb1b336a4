/**
 * Real ffmpeg over loopback: a camera session sends the test pattern, a viewer session records it.
 * Skipped, with the reason printed, only where no ffmpeg exists (CI installs Debian's).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureClip } from '../../src/media/clip.ts';
import {
  FfmpegMissingError,
  locateFfmpeg,
  locateFfprobe,
  runningFfmpegCount,
} from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { LiveView } from '../../src/media/live-view.ts';
import { startLoopbackCall } from '../../src/media/loopback.ts';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';

let why: string | undefined;
try {
  locateFfmpeg();
} catch (error) {
  why = (error as Error).message;
  console.warn(`media ffmpeg tests skipped: ${why}`);
}

const dir = mkdtempSync(join(tmpdir(), 'sc2c-media-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const encode = {
  source: { kind: 'testsrc' as const },
  width: 320,
  height: 180,
  fps: 25,
  videoBitrateKbps: 500,
  keyframeInterval: 50,
};

function pair(recordPath?: string, peerTimeoutMs = 5000) {
  const c = {
    clock: new SystemClock(),
    network: new NodeNetwork(),
    ffmpeg: { spawn, binary: locateFfmpeg() },
  };
  return startLoopbackCall(c, { encode, recordPath, peerTimeoutMs });
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(why !== undefined)('media with real ffmpeg (loopback)', () => {
  it('records H.264 holding at least 95 % of the frames sent, with RTT from RTCP, and leaves no ffmpeg', async () => {
    const mp4 = join(dir, 'call.mp4');
    const { camera, viewer, close } = await pair(mp4);
    await wait(4000);
    // The camera stops first, as when it hangs up; what is in flight still arrives.
    await camera.close();
    const sent = camera.stats().sent!;
    await wait(300);
    const received = viewer.stats().received!;
    expect(received.rttMs).not.toBeNull();
    expect(received.video.lost).toBe(0);
    await viewer.close();
    close();
    const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
    expect(info.videoCodec).toBe('h264');
    expect(info.audioCodec).toBe('opus');
    expect(info.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * received.video.frames));
    // ffmpeg's first frame is a keyframe, so the viewer records from the camera's first frame.
    expect(received.video.frames).toBeGreaterThanOrEqual(Math.floor(0.95 * sent.video.frames));
    expect(runningFfmpegCount()).toBe(0);
  }, 30_000);

  it('reports an encoder that crashes mid-call, and a peer that goes silent', async () => {
    const { camera, viewer, close } = await pair(undefined, 1500);
    const cameraFailed = new Promise<string>((r) => camera.on('failed', r));
    const viewerFailed = new Promise<string>((r) => viewer.on('failed', r));
    await wait(1500);
    // Kill the encoder outright, as a crash would.
    process.kill(camera.sender!.encoderPid!, 'SIGKILL');
    expect(await cameraFailed).toMatch(/encoder \(ffmpeg\) exited on SIGKILL/);
    expect(await viewerFailed).toMatch(/nothing from the peer/);
    await viewer.close();
    await camera.close();
    close();
    expect(runningFfmpegCount()).toBe(0);
  }, 30_000);

  it('loops the generated clip and shows it live as MJPEG over local HTTP', async () => {
    const clip = join(dir, 'clip.mp4');
    expect(await ensureClip(locateFfmpeg(), clip)).toEqual({ made: true });
    expect(await ensureClip(locateFfmpeg(), clip)).toEqual({ made: false });
    const live = await LiveView.start();
    const c = {
      clock: new SystemClock(),
      network: new NodeNetwork(),
      ffmpeg: { spawn, binary: locateFfmpeg() },
    };
    const call = await startLoopbackCall(c, {
      encode: { ...encode, source: { kind: 'file', path: clip } },
      live,
    });
    const before = await fetch(`${live.url}snapshot.jpg`);
    const stream = await fetch(`${live.url}stream.mjpg`);
    expect(stream.headers.get('content-type')).toBe('multipart/x-mixed-replace; boundary=sc2cframe');
    // Read the stream until two whole parts have come through.
    const reader = stream.body!.getReader();
    let text = '';
    for (let i = 0; i < 400 && (text.match(/--sc2cframe/g) ?? []).length < 3; i++) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('latin1');
    }
    await reader.cancel();
    expect((text.match(/Content-Type: image\/jpeg/g) ?? []).length).toBeGreaterThanOrEqual(2);
    const snapshot = await fetch(`${live.url}snapshot.jpg`);
    expect(snapshot.status).toBe(200);
    const jpeg = new Uint8Array(await snapshot.arrayBuffer());
    expect([jpeg[0], jpeg[1], jpeg.at(-2), jpeg.at(-1)]).toEqual([0xff, 0xd8, 0xff, 0xd9]);
    // Before the first keyframe was decoded there was nothing to show yet, or already a frame.
    expect([200, 503]).toContain(before.status);
    expect(call.viewer.stats().received!.video.frames).toBeGreaterThan(0);
    await call.camera.close();
    await call.viewer.close();
    call.close();
    await live.close();
    expect(runningFfmpegCount()).toBe(0);
  }, 30_000);

  it('fails an unreachable RTSP camera with a clear reason and leaves no ffmpeg', async () => {
    // Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    const c = {
      clock: new SystemClock(),
      network: new NodeNetwork(),
      ffmpeg: { spawn, binary: locateFfmpeg() },
    };
    const rtsp = { ...encode, source: { kind: 'rtsp' as const, url: 'rtsp://127.0.0.1:9/stream' } };
    const { camera, viewer, close } = await startLoopbackCall(c, { encode: rtsp, peerTimeoutMs: 3000 });
    const cameraFailed = new Promise<string>((r) => camera.on('failed', r));
    const viewerFailed = new Promise<string>((r) => viewer.on('failed', r));
    expect(await cameraFailed).toMatch(/encoder \(ffmpeg\) exited with code \d+: .*(refused|rtsp)/i);
    expect(await viewerFailed).toMatch(/nothing from the peer/);
    await camera.close();
    await viewer.close();
    close();
    expect(runningFfmpegCount()).toBe(0);
  }, 30_000);

  it('says plainly when ffmpeg is missing', () => {
    expect(() => locateFfmpeg({ FFMPEG_PATH: '/nonexistent/ffmpeg' })).toThrow(FfmpegMissingError);
    expect(() => locateFfmpeg({ FFMPEG_PATH: '/nonexistent/ffmpeg' })).toThrow(/FFMPEG_PATH=\/nonexistent/);
  });
});
