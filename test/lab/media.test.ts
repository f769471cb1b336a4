import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLabCalls } from '../../src/lab/calls.ts';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { probeRecording } from '../../src/media/inspect.ts';
import { labUnavailable } from './support.ts';

const unavailable = await labUnavailable();

describe.skipIf(unavailable)('media over the punched pair in the kernel lab', () => {
  it('a camera behind an IPS NAT streams to a viewer behind a PKS NAT; the MP4 holds >= 95 % of the frames', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-lab-media-'));
    const mp4 = join(dir, 'call.mp4');
    let cameraSent: { frames: number } | undefined;
    try {
      const runs = await runLabCalls({
        natA: 'symmetric-seq1+pks',
        natB: 'symmetric-seq1+ips',
        rttMs: 40,
        modes: ['sc2c'],
        callsPerMode: 1,
        name: `md${process.pid % 10_000}`,
        callArgs: () => ['--record', mp4, '--duration', '5'],
        onCalleeEvent: (event) => {
          if (event.event === 'media-ended') cameraSent = (event as { sent?: { frames: number } }).sent;
        },
        inspect: async () => {
          for (let i = 0; i < 100 && !cameraSent; i++) await new Promise((r) => setTimeout(r, 100));
        },
      });
      const call = runs.sc2c![0]! as {
        ok: boolean;
        media?: { received?: { frames: number; lossPercent: number; rttMs: number | null } };
      };
      expect(call.ok).toBe(true);
      expect(call.media?.received?.lossPercent).toBeLessThan(1);
      expect(call.media?.received?.rttMs).toBeGreaterThan(30);
      const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
      expect(info.videoCodec).toBe('h264');
      expect(cameraSent).toBeDefined();
      expect(info.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * cameraSent!.frames));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
