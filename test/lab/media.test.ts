import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadServerConfig } from '../../src/cli/configs.ts';
import { type LabCallsInit, runLabCalls } from '../../src/lab/calls.ts';
import { nalCensus, RANDOM_NAL_RATE } from '../../src/lab/pcap-census.ts';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { longestVideoGap, probeRecording } from '../../src/media/inspect.ts';
import { PAYLOAD_TYPES } from '../../src/media/source.ts';
import { labUnavailable } from './support.ts';

const unavailable = await labUnavailable();

/** What `sc2c call --json` reports for one call, as far as these tests read it. */
interface CallResult {
  ok: boolean;
  route?: string;
  routes?: { atMs: number; route: string; why: string }[];
  bytes?: { direct: { bytes: number }; relay: { bytes: number } };
  relayServer?: { address: string; port: number; transport: 'udp' | 'tcp' } | null;
  encryption?: string;
  dtlsMs?: number | null;
  media?: {
    encryption?: string;
    srtpAuthFailures?: number;
    sent?: { frames: number };
    received?: { frames: number; lossPercent: number; rttMs: number | null; plisSent: number };
  };
}

/** The callee's `media-ended` event: what the camera (or the callee phone) sent and recorded. */
interface CalleeEnded {
  sent?: { frames: number };
  recording?: { path: string };
}

/**
 * One SC2C call between lab hosts: by default a PKS caller and an IPS callee at 40 ms RTT. `setup`
 * gets a temporary directory and adds or overrides `runLabCalls` options; `check` runs on the
 * caller's result and the callee's `media-ended` event, before the directory goes away.
 */
async function labCall(
  name: string,
  setup: (dir: string, lab: string) => Partial<LabCallsInit>,
  check: (call: CallResult, callee: CalleeEnded | undefined, dir: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `sc2c-lab-${name}-`));
  let calleeEnded: CalleeEnded | undefined;
  // Distinct per test (relay-embedded: re, relay-coturn: rc), short enough for namespace names.
  const lab = `${name
    .split('-')
    .map((w) => w[0])
    .join('')}${process.pid % 10_000}`;
  try {
    const extra = setup(dir, lab);
    const runs = await runLabCalls({
      natA: 'symmetric-seq1+pks',
      natB: 'symmetric-seq1+ips',
      rttMs: 40,
      modes: ['sc2c'],
      callsPerMode: 1,
      name: lab,
      ...extra,
      onCalleeEvent: (event) => {
        extra.onCalleeEvent?.(event);
        if (event.event === 'media-ended') calleeEnded = event as CalleeEnded;
      },
      // The callee reports its totals once the caller's BYE reached it: wait for that line.
      inspect: async () => {
        for (let i = 0; i < 100 && !calleeEnded; i++) await new Promise((r) => setTimeout(r, 100));
      },
    });
    await check(runs.sc2c![0]! as CallResult, calleeEnded, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const probe = (path: string) => probeRecording(locateFfprobe(locateFfmpeg())!, path);

describe.skipIf(unavailable)('media over the punched pair in the kernel lab', () => {
  it('a camera behind an IPS NAT streams to a viewer behind a PKS NAT, encrypted; the MP4 holds >= 95 % of the frames', async () => {
    await labCall(
      'media',
      (dir) => ({
        callArgs: () => ['--record', join(dir, 'call.mp4'), '--duration', '5'],
        pcapDir: join(dir, 'pcap'),
      }),
      async (call, camera, dir) => {
        expect(call.ok).toBe(true);
        expect(call.encryption).toMatch(/^DTLS-SRTP (AEAD_AES_128_GCM|AES_CM_128_HMAC_SHA1_80)$/);
        expect(call.media?.encryption).toBe(call.encryption);
        expect(call.media?.srtpAuthFailures).toBe(0);
        expect(call.dtlsMs).toBeGreaterThan(0);
        // On the camera NAT's uplink the video payloads are ciphertext: NAL-like first bytes at
        // their random rate (9.4 %), where clear H.264 has them on every packet.
        const census = nalCensus(join(dir, 'pcap', 'nat-b--internet.pcap'), PAYLOAD_TYPES.h264);
        expect(census.rtpPackets).toBeGreaterThan(200);
        expect(census.nalLikeFraction).toBeLessThan(2 * RANDOM_NAL_RATE);
        console.info(
          `encrypted: ${census.nalLike} of ${census.rtpPackets} video packets on the camera's uplink start like H.264 (${(100 * census.nalLikeFraction).toFixed(1)} %, random ${(100 * RANDOM_NAL_RATE).toFixed(1)} %)`,
        );
        // Both sides hold a relay allocation (the default): the punch must still open the direct path.
        expect(call.route).toBe('direct');
        expect(call.media?.received?.lossPercent).toBeLessThan(1);
        expect(call.media?.received?.rttMs).toBeGreaterThan(30);
        const info = await probe(join(dir, 'call.mp4'));
        expect(info.videoCodec).toBe('h264');
        expect(camera?.sent).toBeDefined();
        expect(info.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * camera!.sent!.frames));
      },
    );
  }, 120_000);

  it('with --insecure-media at both ends the capture shows clear H.264, and the JSON says none', async () => {
    await labCall(
      'clear',
      (dir) => ({
        callArgs: () => ['--record', join(dir, 'clear.mp4'), '--duration', '3', '--insecure-media'],
        calleeArgs: ['--relay', '198.18.0.10:3478', '--insecure-media'],
        pcapDir: join(dir, 'pcap'),
      }),
      async (call, _camera, dir) => {
        expect(call.ok).toBe(true);
        expect(call.encryption).toBe('none');
        expect(call.media?.encryption).toBe('none');
        const census = nalCensus(join(dir, 'pcap', 'nat-b--internet.pcap'), PAYLOAD_TYPES.h264);
        expect(census.rtpPackets).toBeGreaterThan(100);
        expect(census.nalLikeFraction).toBeGreaterThan(0.95);
      },
    );
  }, 120_000);

  it('a tampered SRTP packet (one payload bit flipped on the camera uplink) is dropped and counted; the recording decodes', async () => {
    await labCall(
      'tamper',
      (dir) => ({
        corruptEvery: 40,
        callArgs: () => ['--record', join(dir, 'tampered.mp4'), '--duration', '5'],
      }),
      async (call, _camera, dir) => {
        expect(call.ok).toBe(true);
        expect(call.media!.srtpAuthFailures).toBeGreaterThan(5);
        const info = await probe(join(dir, 'tampered.mp4'));
        expect(info.videoCodec).toBe('h264');
        expect(info.videoFrames).toBeGreaterThan(0);
        console.info(
          `tampering: ${call.media!.srtpAuthFailures} packets failed SRTP authentication; the MP4 holds ${info.videoFrames} frames`,
        );
      },
    );
  }, 120_000);

  it('at 2 % link loss the recording still decodes; the frame count is reported', async () => {
    await labCall(
      'loss',
      (dir) => ({ lossPercent: 2, callArgs: () => ['--record', join(dir, 'lossy.mp4'), '--duration', '5'] }),
      async (call, camera, dir) => {
        expect(call.ok).toBe(true);
        const received = call.media!.received!;
        // The loss is real: RTCP sees it (2 % each way on the camera's link), and the viewer asks for
        // keyframes to repair it.
        expect(received.lossPercent).toBeGreaterThan(0.3);
        const info = await probe(join(dir, 'lossy.mp4'));
        expect(info.videoCodec).toBe('h264');
        expect(info.videoFrames).toBeGreaterThan(0);
        console.info(
          `2 % link loss: camera sent ${camera?.sent?.frames} frames, viewer decoded ${received.frames}, the MP4 holds ${info.videoFrames}; RTCP loss ${received.lossPercent} %, ${received.plisSent} PLIs`,
        );
      },
    );
  }, 120_000);

  it('a two-way video-phone call records both directions', async () => {
    await labCall(
      'phone',
      (dir) => ({
        callArgs: () => ['--phone', '--record', join(dir, 'alice-sees-bob.mp4'), '--duration', '5'],
        calleeArgs: ['--phone', '--record', join(dir, 'bob-sees-{call}.mp4')],
      }),
      async (call, bob, dir) => {
        expect(call.ok).toBe(true);
        const aliceSaw = await probe(join(dir, 'alice-sees-bob.mp4'));
        expect(bob?.recording?.path).toMatch(/bob-sees-.+\.mp4$/);
        const bobSaw = await probe(bob!.recording!.path);
        expect(aliceSaw.videoCodec).toBe('h264');
        expect(bobSaw.videoCodec).toBe('h264');
        expect(aliceSaw.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * bob!.sent!.frames));
        expect(bobSaw.videoFrames).toBeGreaterThanOrEqual(Math.floor(0.95 * call.media!.sent!.frames));
      },
    );
  }, 120_000);
});

describe.skipIf(unavailable)('relay fallback in the kernel lab', () => {
  const labTurnSecret = loadServerConfig(fileURLToPath(new URL('../../config/server.yaml', import.meta.url)))
    .turn!.secret!;
  const coturn = spawnSync('which', ['turnserver']).status === 0;
  if (!coturn) console.warn('SKIPPING the coturn relay run: turnserver (coturn) is not installed');

  const variants = [
    { relay: 'embedded', tcp: false },
    { relay: 'embedded', tcp: true },
    ...(coturn
      ? [
          { relay: 'coturn', tcp: false },
          { relay: 'coturn', tcp: true },
        ]
      : []),
  ] as const;
  for (const { relay, tcp } of variants) {
    it(`a symmetric-random pair gets decodable media through the ${relay} relay${tcp ? ', the caller reaching it over TCP' : ''}`, async () => {
      // coturn runs in the server host beside sc2c server, on its own port, sharing its TURN secret.
      const server = relay === 'coturn' ? '198.18.0.10:3480' : '198.18.0.10:3478';
      const relayArgs = ['--relay', server];
      // Over TCP the caller's media leaves through its own allocation to the callee's (on UDP).
      const callerRelayArgs = tcp ? ['--relay', `turn:${server}?transport=tcp`] : relayArgs;
      let turnserver: ChildProcess | undefined;
      try {
        await labCall(
          `relay-${tcp ? 'tcp-' : ''}${relay}`,
          (dir) => ({
            natA: 'symmetric-random',
            natB: 'symmetric-random',
            callArgs: () => ['--record', join(dir, 'relayed.mp4'), '--duration', '4', ...callerRelayArgs],
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
                    // No user table: only the short-lived credentials sc2c server issues pass.
                    '--use-auth-secret',
                    `--static-auth-secret=${labTurnSecret}`,
                  ])
                  .concat(['--no-tls', '--no-dtls'])
                  .concat(['--no-cli', '--no-stdout-log', `--pidfile=${join(dir, 'turn.pid')}`])
                  .concat([`--userdb=${join(dir, 'turndb')}`]),
                { stdio: 'ignore' },
              );
              await new Promise((r) => setTimeout(r, 1500));
            },
          }),
          async (call, _callee, dir) => {
            expect(call.ok).toBe(true);
            expect(call.route).toBe('relay');
            expect(call.relayServer?.transport).toBe(tcp ? 'tcp' : 'udp');
            expect(call.bytes!.relay.bytes).toBeGreaterThan(100_000);
            expect(call.bytes!.direct.bytes).toBe(0);
            const info = await probe(join(dir, 'relayed.mp4'));
            expect(info.videoCodec).toBe('h264');
            expect(info.videoFrames).toBeGreaterThan(0.9 * call.media!.received!.frames);
          },
        );
      } finally {
        turnserver?.kill('SIGKILL');
      }
    }, 120_000);
  }

  it('a caller whose host drops all UDP (nftables) still calls: TURN over TCP carries decodable media', async () => {
    const relayArgs = ['--relay', 'turn:198.18.0.10:3478?transport=tcp'];
    await labCall(
      'udp-blocked',
      (dir) => ({
        natA: 'port-restricted-cone',
        natB: 'symmetric-random',
        callArgs: () => ['--record', join(dir, 'blocked.mp4'), '--duration', '4', ...relayArgs],
        calleeArgs: ['--relay', '198.18.0.10:3478'],
        beforeCalls: async (hosts) => {
          // A firewall in the caller's own host: UDP may not leave except on loopback (ffmpeg's RTP).
          const nft = spawnSync(
            'ip',
            ['netns', 'exec', hosts.alice!, 'nft'].concat([
              'add table inet fw; add chain inet fw out { type filter hook output priority 0; }; add rule inet fw out oifname != "lo" meta l4proto udp drop',
            ]),
          );
          if (nft.status !== 0) throw new Error(`nft in the caller's host failed: ${nft.stderr}`);
        },
      }),
      async (call, _callee, dir) => {
        expect(call.ok).toBe(true);
        expect(call.route).toBe('relay');
        expect(call.relayServer?.transport).toBe('tcp');
        expect(call.bytes!.relay.bytes).toBeGreaterThan(100_000);
        expect(call.bytes!.direct.bytes).toBe(0);
        const info = await probe(join(dir, 'blocked.mp4'));
        expect(info.videoCodec).toBe('h264');
        expect(info.videoFrames).toBeGreaterThan(0.9 * call.media!.received!.frames);
      },
    );
  }, 120_000);

  it('sc2c lab flush mid-call moves media to the relay and back to direct; the recording has no gap over 1 s', async () => {
    const bin = fileURLToPath(new URL('../../src/cli/bin.js', import.meta.url));
    let flushed: { flushed: number } | undefined;
    let flushError: string | undefined;
    await labCall(
      'flush',
      (dir, lab) => ({
        callArgs: () => ['--record', join(dir, 'flush.mp4'), '--duration', '10'],
        onCalleeEvent: (event) => {
          if (event.event !== 'media-started') return;
          // Three seconds into the media, every UDP mapping of the viewer's NAT expires at once.
          setTimeout(() => {
            const run = spawnSync(
              process.execPath,
              [bin, 'lab', 'flush', 'nat-a', '--udp', '--lab', lab, '--json'],
              {
                encoding: 'utf8',
              },
            );
            if (run.status === 0) flushed = JSON.parse(run.stdout) as { flushed: number };
            else flushError = run.stderr;
          }, 3000);
        },
      }),
      async (call, _camera, dir) => {
        expect(flushError).toBeUndefined();
        expect(flushed!.flushed).toBeGreaterThan(0);
        expect(call.ok).toBe(true);
        const moves = (call.routes ?? []).map((r) => r.route);
        expect(moves).toContain('relay');
        expect(moves.at(-1)).toBe('direct');
        expect(call.route).toBe('direct');
        expect(call.bytes!.relay.bytes).toBeGreaterThan(0);
        expect(call.bytes!.direct.bytes).toBeGreaterThan(call.bytes!.relay.bytes);
        const ffprobe = locateFfprobe(locateFfmpeg())!;
        const gap = await longestVideoGap(ffprobe, join(dir, 'flush.mp4'));
        console.info(
          `lab flush mid-call: routes ${JSON.stringify(call.routes)}, longest gap in the MP4 ${gap.toFixed(3)} s`,
        );
        expect(gap).toBeLessThan(1);
        expect((await probe(join(dir, 'flush.mp4'))).videoFrames).toBeGreaterThan(200);
      },
    );
  }, 150_000);
});
