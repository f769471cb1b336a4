/**
 * H.264 over RTP to fragmented MP4 without transcoding (issue 22): the depacketizer on hand-built
 * RFC 6184 payloads, the SPS reader, and the whole chain on ffmpeg's own RTP packetization, with
 * ffprobe reading the result frame by frame.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { locateFfmpeg, locateFfprobe } from '../../src/media/ffmpeg.ts';
import { Fmp4Muxer, initSegment, mimeType } from '../../src/media/fmp4.ts';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { type AccessUnit, H264Depacketizer } from '../../src/protocol/h264-depacketize.ts';
import { parseSps, unescapeRbsp } from '../../src/protocol/h264-sps.ts';
import { decodeRtpHeader, seqDiff } from '../../src/protocol/rtp.ts';

let why: string | undefined;
let ffmpeg = '';
let ffprobe = '';
try {
  const binary = locateFfmpeg();
  ffmpeg = binary.path;
  ffprobe = locateFfprobe(binary) ?? '';
  if (!ffprobe) throw new Error('ffprobe is not installed beside ffmpeg or on PATH');
} catch (error) {
  why = (error as Error).message;
  if (process.env.CI === 'true') throw new Error(`CI needs ffmpeg: ${why}`);
  console.warn(`fMP4 ffmpeg tests skipped: ${why}`);
}

const dir = mkdtempSync(join(tmpdir(), 'sc2c-fmp4-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// x264's baseline SPS for 640x360 (level 3.0): 40 MBs wide, 23 high, cropped by 4 lines at the bottom.
const SPS_640x360 = Uint8Array.from(Buffer.from('6742c01ed900a02ff970110000030001000003003c0f162e48', 'hex'));

describe('H.264 depacketization (RFC 6184)', () => {
  const idr = Uint8Array.of(0x65, 1, 2, 3, 4, 5, 6, 7, 8);
  const fu = (start: boolean, end: boolean, bytes: number[]) =>
    Uint8Array.of(0x7c, (start ? 0x80 : 0) | (end ? 0x40 : 0) | 5, ...bytes);

  it('joins FU-A fragments into the NAL unit and a marker closes the access unit', () => {
    const d = new H264Depacketizer();
    expect(d.push(fu(true, false, [1, 2, 3, 4]), 9000, false)).toEqual([]);
    const [unit] = d.push(fu(false, true, [5, 6, 7, 8]), 9000, true);
    expect(unit!.timestamp).toBe(9000);
    expect(unit!.keyframe).toBe(true);
    // The header rebuilt from the indicator's F/NRI (0x60) and the FU header's type (5).
    expect([...unit!.nals[0]!]).toEqual([...idr]);
  });

  it('splits STAP-A aggregates into their NAL units', () => {
    const sps = Uint8Array.of(0x67, 0x42, 0xc0, 0x1e);
    const pps = Uint8Array.of(0x68, 0xce, 0x3c, 0x80);
    const stap = Uint8Array.of(0x78, 0, 4, ...sps, 0, 4, ...pps);
    const [unit] = [
      ...new H264Depacketizer().push(stap, 1, false),
      ...new H264Depacketizer().push(stap, 1, true),
    ];
    expect(unit!.nals.map((n) => n[0])).toEqual([0x67, 0x68]);
    expect(unit!.keyframe).toBe(false);
  });

  it('drops a fragment whose start was lost instead of splicing it to the next', () => {
    const d = new H264Depacketizer();
    d.push(fu(true, false, [1, 2]), 100, false);
    // Sequence gap: the middle is gone; the end alone must not make a NAL unit.
    const units = d.push(fu(false, true, [7, 8]), 100, true, true);
    expect(units).toEqual([]);
    expect(d.counters.fragmentsDropped).toBe(2);
  });

  it('closes an access unit whose marker packet was lost when the next timestamp starts', () => {
    const d = new H264Depacketizer();
    d.push(Uint8Array.of(0x41, 1, 2), 100, false);
    const units = d.push(Uint8Array.of(0x41, 3, 4), 3100, true);
    expect(units.map((u) => u.timestamp)).toEqual([100, 3100]);
  });

  it('rejects STAP-A sizes that run past the packet and counts interleaved-mode packets', () => {
    const d = new H264Depacketizer();
    expect(d.push(Uint8Array.of(0x78, 0, 200, 0x65, 1), 1, true)).toEqual([]);
    expect(d.push(Uint8Array.of(0x7a, 0, 0), 2, true)).toEqual([]); // FU-B
    expect(d.counters.unsupported).toBe(2);
  });
});

describe('SPS reading (H.264 §7.3.2.1.1)', () => {
  it('reads the cropped size, profile and level of a real x264 SPS', () => {
    const info = parseSps(SPS_640x360);
    expect(info).toMatchObject({ width: 640, height: 360, profileIdc: 66, levelIdc: 30 });
    expect(info.codec).toBe('avc1.42C01E');
    expect(mimeType(info)).toBe('video/mp4; codecs="avc1.42C01E"');
  });

  it('removes emulation-prevention bytes', () => {
    expect([...unescapeRbsp(Uint8Array.of(0, 0, 3, 1, 0, 0, 3, 0))]).toEqual([0, 0, 1, 0, 0, 0]);
  });

  it('on every truncation of a real SPS throws a DecodeError or, past the cropping fields, reads the same size', () => {
    let threw = 0;
    for (let n = 0; n < SPS_640x360.byteLength; n++) {
      const cut = SPS_640x360.subarray(0, n);
      try {
        expect(parseSps(cut), `cut at ${n}`).toMatchObject({ width: 640, height: 360 });
      } catch (error) {
        expect(error, `cut at ${n}`).toBeInstanceOf(DecodeError);
        threw++;
      }
    }
    // The size fields end in byte 10: every shorter cut must fail.
    expect(threw).toBeGreaterThanOrEqual(10);
  });
});

/** Sends `frames` frames of ffmpeg's test pattern as RTP to a socket here and collects the payloads. */
async function ffmpegRtp(
  frames: number,
  encoder: readonly string[] = ['-profile:v', 'baseline'],
): Promise<AccessUnit[]> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  const port = socket.address().port;
  const depacketizer = new H264Depacketizer();
  const units: AccessUnit[] = [];
  let lastSeq: number | undefined;
  socket.on('message', (data) => {
    const header = decodeRtpHeader(data);
    const lost = lastSeq !== undefined && seqDiff(header.sequenceNumber, lastSeq) !== 1;
    lastSeq = header.sequenceNumber;
    units.push(
      ...depacketizer.push(
        data.subarray(header.payloadOffset, header.payloadEnd),
        header.timestamp,
        header.marker,
        lost,
      ),
    );
  });
  const args = [
    ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30'],
    ...['-frames:v', String(frames), '-c:v', 'libx264', ...encoder, '-pix_fmt', 'yuv420p', '-g', '30'],
    ...['-x264-params', 'repeat-headers=1', '-f', 'rtp', `rtp://127.0.0.1:${port}?pkt_size=1200`],
  ];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: 'ignore' });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}`))));
  });
  await new Promise((r) => setTimeout(r, 200));
  socket.close();
  return units;
}

describe.skipIf(why !== undefined)('RTP from ffmpeg to fMP4 (no transcoding)', () => {
  it('gives a file ffprobe reads as H.264 640x360 with every frame sent, bytes unchanged', async () => {
    const units = await ffmpegRtp(90);
    expect(units.length).toBe(90);
    const muxer = new Fmp4Muxer();
    const parts: Uint8Array[] = [];
    let inits = 0;
    for (const unit of units)
      for (const out of muxer.push(unit)) {
        if (out.init) {
          inits++;
          parts.push(out.init.bytes);
          expect(out.init.info).toMatchObject({ width: 640, height: 360 });
        }
        if (out.segment) parts.push(out.segment);
      }
    expect(inits).toBe(1);
    expect(muxer.framesWritten).toBe(90);
    expect(muxer.reordered).toBe(false);
    const file = join(dir, 'live.mp4');
    writeFileSync(file, Buffer.concat(parts));
    const probe = JSON.parse(
      execFileSync(ffprobe, [
        ...['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-print_format', 'json'],
        ...['-show_entries', 'stream=codec_name,width,height,nb_read_frames,avg_frame_rate', file],
      ]).toString(),
    ) as {
      streams: {
        codec_name: string;
        width: number;
        height: number;
        nb_read_frames: string;
        avg_frame_rate: string;
      }[];
    };
    expect(probe.streams[0]).toMatchObject({
      codec_name: 'h264',
      width: 640,
      height: 360,
      nb_read_frames: '90',
    });
    expect(probe.streams[0]!.avg_frame_rate).toBe('30/1');
    // The slices in the file are the encoder's, byte for byte: the remux copied them.
    const frames = execFileSync(ffmpeg, ['-v', 'error', '-i', file, '-c', 'copy', '-f', 'h264', '-']);
    const firstSlice = units[0]!.nals.find((n) => (n[0]! & 0x1f) === 5)!;
    expect(frames.includes(Buffer.from(firstSlice))).toBe(true);
  });

  it('orders B-frames by composition offsets: every frame presented once, in order, never before decoding', async () => {
    const units = await ffmpegRtp(90, ['-profile:v', 'high', '-bf', '2']);
    // Decoding order: the timestamps (presentation times) go backwards at each B-frame.
    expect(units.some((u, i) => i > 0 && u.timestamp < units[i - 1]!.timestamp)).toBe(true);
    const muxer = new Fmp4Muxer();
    const parts = units
      .flatMap((u) => muxer.push(u))
      .flatMap((o) => [o.init?.bytes, o.segment].filter((b) => b !== undefined));
    expect(muxer.reordered).toBe(true);
    expect(muxer.framesWritten).toBe(90);
    const file = join(dir, 'bframes.mp4');
    writeFileSync(file, Buffer.concat(parts));
    const packets = JSON.parse(
      execFileSync(ffprobe, [
        '-v',
        'error',
        '-select_streams',
        'v:0',
        '-show_entries',
        'packet=pts,dts',
        '-print_format',
        'json',
        file,
      ]).toString(),
    ) as { packets: { pts: number; dts: number }[] };
    expect(packets.packets).toHaveLength(90);
    for (const p of packets.packets) expect(p.pts).toBeGreaterThanOrEqual(p.dts);
    const pts = packets.packets.map((p) => p.pts).sort((a, b) => a - b);
    // One frame per 3000 ticks (30 fps), none shown twice, none missing.
    expect(pts.slice(1).map((v, i) => v - pts[i]!)).toEqual(Array(89).fill(3000));
    const frames = execFileSync(ffprobe, [
      '-v',
      'error',
      '-count_frames',
      '-select_streams',
      'v:0',
      '-show_entries',
      'stream=nb_read_frames',
      '-of',
      'csv=p=0',
      file,
    ])
      .toString()
      .trim();
    expect(frames).toBe('90');
  });

  it('starts at the first keyframe and writes a new init segment when the SPS changes', async () => {
    const units = await ffmpegRtp(40);
    const muxer = new Fmp4Muxer();
    // Start mid-GOP: frames before the next keyframe (frame 30) are skipped.
    const outs = units.slice(5).flatMap((u) => muxer.push(u));
    expect(muxer.framesSkipped).toBe(25);
    expect(outs.filter((o) => o.init)).toHaveLength(1);
    const changed = {
      ...units[30]!,
      nals: units[30]!.nals.map((n) => ((n[0]! & 0x1f) === 7 ? SPS_640x360 : n)),
    };
    const again = muxer.push({ ...changed, timestamp: units[39]!.timestamp + 3000 });
    expect(again.some((o) => o.init)).toBe(SPS_640x360.some((b, i) => b !== units[30]!.nals[0]![i]));
  });

  it('builds an init segment that names the codec and size', () => {
    const info = parseSps(SPS_640x360);
    const init = Buffer.from(
      initSegment({ sps: SPS_640x360, pps: Uint8Array.of(0x68, 0xce, 0x3c, 0x80), info }),
    );
    expect(init.subarray(4, 8).toString()).toBe('ftyp');
    expect(init.includes(Buffer.from('avcC'))).toBe(true);
    expect(init.includes(Buffer.from(SPS_640x360))).toBe(true);
  });
});
