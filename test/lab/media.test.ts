import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
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

  it('at 2 % link loss the recording still decodes; the frame count is reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-lab-loss-'));
    const mp4 = join(dir, 'lossy.mp4');
    let cameraSent: { frames: number } | undefined;
    try {
      const runs = await runLabCalls({
        natA: 'symmetric-seq1+pks',
        natB: 'symmetric-seq1+ips',
        rttMs: 40,
        lossPercent: 2,
        modes: ['sc2c'],
        callsPerMode: 1,
        name: `ml${process.pid % 10_000}`,
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
        media?: { received?: { frames: number; lossPercent: number; plisSent: number } };
      };
      expect(call.ok).toBe(true);
      const received = call.media!.received!;
      // The loss is real: RTCP sees it (2 % each way on the camera's link), and the viewer asks for
      // keyframes to repair it.
      expect(received.lossPercent).toBeGreaterThan(0.3);
      const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
      expect(info.videoCodec).toBe('h264');
      expect(info.videoFrames).toBeGreaterThan(0);
      console.info(
        `2 % link loss: camera sent ${cameraSent?.frames} frames, viewer decoded ${received.frames}, the MP4 holds ${info.videoFrames}; RTCP loss ${received.lossPercent} %, ${received.plisSent} PLIs`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('a two-way video-phone call records both directions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-lab-phone-'));
    const atAlice = join(dir, 'alice-sees-bob.mp4');
    const atBob = join(dir, 'bob-sees-{call}.mp4');
    let bobEnded: { sent?: { frames: number }; recording?: { path: string } } | undefined;
    try {
      const runs = await runLabCalls({
        natA: 'symmetric-seq1+pks',
        natB: 'symmetric-seq1+ips',
        rttMs: 40,
        modes: ['sc2c'],
        callsPerMode: 1,
        name: `mp${process.pid % 10_000}`,
        callArgs: () => ['--phone', '--record', atAlice, '--duration', '5'],
        calleeArgs: ['--phone', '--record', atBob],
        onCalleeEvent: (event) => {
          if (event.event === 'media-ended') bobEnded = event as typeof bobEnded;
        },
        inspect: async () => {
          for (let i = 0; i < 100 && !bobEnded; i++) await new Promise((r) => setTimeout(r, 100));
        },
      });
      const call = runs.sc2c![0]! as {
        ok: boolean;
        media?: { sent?: { frames: number }; received?: { frames: number } };
      };
      expect(call.ok).toBe(true);
      const ffprobe = locateFfprobe(locateFfmpeg())!;
      const aliceSaw = await probeRecording(ffprobe, atAlice);
      expect(bobEnded?.recording?.path).toMatch(/bob-sees-.+\.mp4$/);
      const bobSaw = await probeRecording(ffprobe, bobEnded!.recording!.path);
      expect(aliceSaw.videoCodec).toBe('h264');
      expect(bobSaw.videoCodec).toBe('h264');
      expect(aliceSaw.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * bobEnded!.sent!.frames));
      expect(bobSaw.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * call.media!.sent!.frames));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe.skipIf(unavailable)('relay fallback in the kernel lab', () => {
  const coturn = spawnSync('which', ['turnserver']).status === 0;
  if (!coturn) console.warn('SKIPPING the coturn relay run: turnserver (coturn) is not installed');

  for (const relay of ['embedded', ...(coturn ? ['coturn'] : [])] as const) {
    it(`a symmetric-random pair gets decodable media through the ${relay} relay`, async () => {
      const dir = mkdtempSync(join(tmpdir(), `sc2c-lab-relay-${relay}-`));
      const mp4 = join(dir, 'relayed.mp4');
      // coturn runs in the server host beside sc2c server, on its own port, with the lab's users.
      const relayArgs = ['--relay', relay === 'coturn' ? '198.18.0.10:3480' : '198.18.0.10:3478'];
      let turnserver: ChildProcess | undefined;
      try {
        const runs = await runLabCalls({
          natA: 'symmetric-random',
          natB: 'symmetric-random',
          rttMs: 40,
          modes: ['sc2c'],
          callsPerMode: 1,
          name: `rl${relay[0]}${process.pid % 1000}`,
          callArgs: () => ['--record', mp4, '--duration', '4', ...relayArgs],
          calleeArgs: relayArgs,
          beforeCalls: async (hosts) => {
            if (relay !== 'coturn') return;
            turnserver = spawn(
              'ip',
              ['netns', 'exec', hosts.server!, 'turnserver', '-n', '--listening-ip=198.18.0.10']
                .concat([
                  '--listening-port=3480',
                  '--relay-ip=198.18.0.10',
                  '--realm=sc2c.lab',
                  '--lt-cred-mech',
                ])
                .concat([
                  '--user=alice:alice-lab-secret',
                  '--user=bob:bob-lab-secret',
                  '--no-tls',
                  '--no-dtls',
                ])
                .concat(['--no-cli', '--no-stdout-log', `--pidfile=${join(dir, 'turn.pid')}`])
                .concat([`--userdb=${join(dir, 'turndb')}`]),
              { stdio: 'ignore' },
            );
            await new Promise((r) => setTimeout(r, 1500));
          },
        });
        const call = runs.sc2c![0]! as {
          ok: boolean;
          route?: string;
          bytes?: { direct: { bytes: number }; relay: { bytes: number } };
          media?: { received?: { frames: number } };
        };
        expect(call.ok).toBe(true);
        expect(call.route).toBe('relay');
        expect(call.bytes!.relay.bytes).toBeGreaterThan(100_000);
        expect(call.bytes!.direct.bytes).toBe(0);
        const info = await probeRecording(locateFfprobe(locateFfmpeg())!, mp4);
        expect(info.videoCodec).toBe('h264');
        expect(info.videoFrames).toBeGreaterThan(0.9 * call.media!.received!.frames);
      } finally {
        turnserver?.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
