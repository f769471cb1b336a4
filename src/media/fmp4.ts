/**
 * Fragmented MP4 (ISO/IEC 14496-12 boxes, 14496-15 `avc1`/`avcC`) for Media Source Extensions:
 * received H.264 access units are remuxed, not transcoded. The NAL units go into the file exactly as
 * the camera's encoder made them; only their framing changes (4-byte lengths instead of RTP).
 *
 *   init segment:  ftyp moov(mvhd trak(tkhd mdia(mdhd hdlr minf(vmhd dinf stbl(stsd(avc1(avcC))...))) mvex(trex))
 *   each frame:    moof(mfhd traf(tfhd tfdt trun)) mdat
 *
 * A frame is written when the next one arrives, so its duration is the real gap between their RTP
 * timestamps (one frame of delay). A new SPS (the camera changed its resolution) starts a new init
 * segment, which MSE accepts mid-stream. Pure: no I/O, no timers.
 */
import { type AccessUnit, nalType } from '../protocol/h264-depacketize.ts';
import { parseSps, type SpsInfo } from '../protocol/h264-sps.ts';

/** RFC 6184 §5.1: H.264 RTP timestamps run at 90 kHz; the track uses the same timescale. */
const TIMESCALE = 90_000;
/** A gap this long (10 s) between frames is a stream that stalled, not a frame's duration. */
const MAX_DURATION = 10 * TIMESCALE;
/** 30 fps, for the first frame after a stall. */
const FALLBACK_DURATION = 3000;
const SPS = 7;
const PPS = 8;
const AUD = 9;
/** NAL units that live in the init segment or carry nothing: left out of samples. */
const NOT_SAMPLES = new Set([SPS, PPS, AUD]);
/** ISO/IEC 14496-12 §8.8.3.1 sample flags: a sync sample, and one that depends on others. */
const SYNC_FLAGS = 0x0200_0000;
const NON_SYNC_FLAGS = 0x0101_0000;

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

function box(type: string, ...parts: Uint8Array[]): Uint8Array {
  const size = 8 + parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, size);
  out.set(ascii(type), 4);
  let offset = 8;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Big-endian fields: [bits, value] pairs, bits one of 8, 16, 32, 64. */
function fields(...values: [8 | 16 | 32 | 64, number][]): Uint8Array {
  const out = new Uint8Array(values.reduce((n, [bits]) => n + bits / 8, 0));
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const [bits, value] of values) {
    if (bits === 8) view.setUint8(offset, value);
    else if (bits === 16) view.setUint16(offset, value);
    else if (bits === 32) view.setUint32(offset, value >>> 0);
    else view.setBigUint64(offset, BigInt(value));
    offset += bits / 8;
  }
  return out;
}

const fullBox = (type: string, version: number, flags: number, ...parts: Uint8Array[]): Uint8Array =>
  box(type, fields([8, version], [8, flags >> 16], [16, flags & 0xffff]), ...parts);

/** The unity transformation matrix (§8.2.2.3). */
const MATRIX = fields(
  [32, 0x0001_0000],
  [32, 0],
  [32, 0],
  [32, 0],
  [32, 0x0001_0000],
  [32, 0],
  [32, 0],
  [32, 0],
  [32, 0x4000_0000],
);

export interface Fmp4Track {
  readonly sps: Uint8Array;
  readonly pps: Uint8Array;
  readonly info: SpsInfo;
}

/** `video/mp4; codecs="avc1.PPCCLL"`, what `MediaSource.isTypeSupported` and `addSourceBuffer` take. */
export const mimeType = (info: SpsInfo): string => `video/mp4; codecs="${info.codec}"`;

export function initSegment(track: Fmp4Track): Uint8Array {
  const { sps, pps, info } = track;
  const ftyp = box('ftyp', ascii('iso5'), fields([32, 0x200]), ascii('iso5iso6avc1mp41'));
  const mvhd = fullBox(
    'mvhd',
    0,
    0,
    fields([32, 0], [32, 0], [32, 1000], [32, 0], [32, 0x0001_0000], [16, 0x0100], [16, 0], [32, 0], [32, 0]),
    MATRIX,
    new Uint8Array(24),
    fields([32, 2]),
  );
  const tkhd = fullBox(
    'tkhd',
    0,
    3,
    fields([32, 0], [32, 0], [32, 1], [32, 0], [32, 0], [32, 0], [32, 0], [16, 0], [16, 0], [16, 0], [16, 0]),
    MATRIX,
    fields([32, info.width * 0x10000], [32, info.height * 0x10000]),
  );
  const mdhd = fullBox(
    'mdhd',
    0,
    0,
    fields([32, 0], [32, 0], [32, TIMESCALE], [32, 0], [16, 0x55c4], [16, 0]),
  );
  const hdlr = fullBox(
    'hdlr',
    0,
    0,
    fields([32, 0]),
    ascii('vide'),
    new Uint8Array(12),
    ascii('sc2c video\0'),
  );
  const avcC = box(
    'avcC',
    fields([8, 1], [8, info.profileIdc], [8, info.constraintFlags], [8, info.levelIdc], [8, 0xff], [8, 0xe1]),
    fields([16, sps.byteLength]),
    sps,
    fields([8, 1], [16, pps.byteLength]),
    pps,
  );
  const avc1 = box(
    'avc1',
    new Uint8Array(6),
    fields([16, 1], [16, 0], [16, 0], [32, 0], [32, 0], [32, 0]),
    fields([16, info.width], [16, info.height], [32, 0x0048_0000], [32, 0x0048_0000], [32, 0], [16, 1]),
    new Uint8Array(32),
    fields([16, 0x0018], [16, 0xffff]),
    avcC,
  );
  const empty = (type: string): Uint8Array => fullBox(type, 0, 0, fields([32, 0]));
  const stbl = box(
    'stbl',
    fullBox('stsd', 0, 0, fields([32, 1]), avc1),
    empty('stts'),
    empty('stsc'),
    fullBox('stsz', 0, 0, fields([32, 0], [32, 0])),
    empty('stco'),
  );
  const dinf = box('dinf', fullBox('dref', 0, 0, fields([32, 1]), fullBox('url ', 0, 1)));
  const minf = box('minf', fullBox('vmhd', 0, 1, fields([16, 0], [16, 0], [16, 0], [16, 0])), dinf, stbl);
  const trak = box('trak', tkhd, box('mdia', mdhd, hdlr, minf));
  const mvex = box('mvex', fullBox('trex', 0, 0, fields([32, 1], [32, 1], [32, 0], [32, 0], [32, 0])));
  const moov = box('moov', mvhd, trak, mvex);
  const out = new Uint8Array(ftyp.byteLength + moov.byteLength);
  out.set(ftyp);
  out.set(moov, ftyp.byteLength);
  return out;
}

export interface Fmp4Sample {
  /** Decode time in 90 kHz units from the stream's first frame. */
  readonly decodeTime: number;
  readonly duration: number;
  /** Presentation minus decode time (90 kHz); non-zero with B-frames. Default 0. */
  readonly compositionOffset?: number;
  readonly keyframe: boolean;
  /** The frame's NAL units, without parameter sets or access unit delimiters. */
  readonly nals: readonly Uint8Array[];
}

export function mediaSegment(sequence: number, sample: Fmp4Sample): Uint8Array {
  const size = sample.nals.reduce((n, nal) => n + 4 + nal.byteLength, 0);
  const tfhd = fullBox('tfhd', 0, 0x02_0000, fields([32, 1]));
  const tfdt = fullBox('tfdt', 1, 0, fields([64, sample.decodeTime]));
  // trun version 1 (signed composition offsets): data offset, and per sample duration, size,
  // flags and composition offset (flags 0x000f01).
  const trunLength = 12 + 4 + 4 + 16;
  const moofLength = 8 + 16 + 8 + tfhd.byteLength + tfdt.byteLength + trunLength;
  const trun = fullBox(
    'trun',
    1,
    0x0f01,
    fields(
      [32, 1],
      [32, moofLength + 8],
      [32, sample.duration],
      [32, size],
      [32, sample.keyframe ? SYNC_FLAGS : NON_SYNC_FLAGS],
      [32, sample.compositionOffset ?? 0],
    ),
  );
  const moof = box('moof', fullBox('mfhd', 0, 0, fields([32, sequence])), box('traf', tfhd, tfdt, trun));
  const payload = new Uint8Array(size);
  const view = new DataView(payload.buffer);
  let offset = 0;
  for (const nal of sample.nals) {
    view.setUint32(offset, nal.byteLength);
    payload.set(nal, offset + 4);
    offset += 4 + nal.byteLength;
  }
  const mdat = box('mdat', payload);
  const out = new Uint8Array(moof.byteLength + mdat.byteLength);
  out.set(moof);
  out.set(mdat, moof.byteLength);
  return out;
}

export interface Fmp4Output {
  /** A new init segment: sent first, and again when the SPS changes. */
  readonly init?: { readonly bytes: Uint8Array; readonly mime: string; readonly info: SpsInfo };
  readonly segment?: Uint8Array;
  /** The segment holds a keyframe: a watcher may start here. */
  readonly keyframe?: boolean;
}

/** Frames held at the start to read the frame rate and whether frames are reordered (B-frames). */
const STARTUP_FRAMES = 4;
/** Presentation may run this many frames ahead of decoding before decode time catches up. */
const MAX_LAG_FRAMES = 10;

/**
 * Access units in, fMP4 out. Starts at the first keyframe whose SPS and PPS are known (the camera
 * repeats them before every keyframe) and drops everything before it.
 *
 * Timing: an RTP timestamp is a presentation time (RFC 6184 §5.1) and frames arrive in decoding
 * order, so with B-frames the timestamps go backwards. The first `STARTUP_FRAMES` frames give the
 * frame duration (the smallest step between their sorted timestamps) and show whether frames are
 * reordered; decode times then advance one frame duration per frame, starting far enough before the
 * first presentation time (two frames with reordering, none without) that every composition offset
 * is at least zero. After a stall or lost frames, decode time jumps forward to catch up.
 */
export class Fmp4Muxer {
  #track?: Fmp4Track;
  #sps?: Uint8Array;
  #pps?: Uint8Array;
  #startup: AccessUnit[] = [];
  #timing?: { frame: number; lead: number; base: number; lastDts: number; lastPts: number };
  #sequence = 0;
  /** Frames written into segments, and frames dropped while waiting for a keyframe. */
  framesWritten = 0;
  framesSkipped = 0;
  badSps = 0;
  /** True once reordered frames (B-frames) were seen at the start. */
  reordered = false;

  get track(): Fmp4Track | undefined {
    return this.#track;
  }

  push(unit: AccessUnit): Fmp4Output[] {
    const out: Fmp4Output[] = [];
    for (const nal of unit.nals) {
      if (nalType(nal) === SPS) this.#sps = nal;
      else if (nalType(nal) === PPS) this.#pps = nal;
    }
    if (unit.keyframe && this.#sps && this.#pps && !sameTrack(this.#track, this.#sps, this.#pps)) {
      let info: SpsInfo | undefined;
      try {
        info = parseSps(this.#sps);
      } catch {
        this.badSps++;
      }
      if (info) {
        // A new track starts its frames again from this keyframe.
        this.#flushStartup(out);
        this.#track = { sps: this.#sps, pps: this.#pps, info };
        out.push({ init: { bytes: initSegment(this.#track), mime: mimeType(info), info } });
      }
    }
    if (!this.#track) {
      this.framesSkipped++;
      return out;
    }
    if (!this.#timing) {
      this.#startup.push(unit);
      if (this.#startup.length >= STARTUP_FRAMES) this.#flushStartup(out);
      return out;
    }
    out.push(this.#write(unit));
    return out;
  }

  /** Reads the timing from the held frames and writes them. */
  #flushStartup(out: Fmp4Output[]): void {
    const held = this.#startup;
    this.#startup = [];
    if (held.length === 0 || this.#timing) {
      for (const unit of held) out.push(this.#write(unit));
      return;
    }
    const first = held[0]!.timestamp;
    // Unwrapped against the first (RFC 3550 §5.1: 32-bit timestamps wrap).
    const pts = held.map((u) => first + ((u.timestamp - first) | 0));
    const sorted = [...pts].sort((a, b) => a - b);
    const steps = sorted
      .slice(1)
      .map((v, i) => v - sorted[i]!)
      .filter((d) => d > 0 && d <= MAX_DURATION);
    const frame = steps.length ? Math.min(...steps) : FALLBACK_DURATION;
    this.reordered = pts.some((v, i) => i > 0 && v < pts[i - 1]!);
    const lead = this.reordered ? 2 * frame : 0;
    this.#timing = { frame, lead, base: first - lead, lastDts: first - lead - frame, lastPts: first };
    for (const unit of held) out.push(this.#write(unit));
  }

  #write(unit: AccessUnit): Fmp4Output {
    const t = this.#timing!;
    const pts = t.lastPts + ((unit.timestamp - (t.lastPts >>> 0)) | 0);
    t.lastPts = pts;
    let dts = t.lastDts + t.frame;
    // Presentation ran ahead (a stall, lost frames): decoding catches up rather than lag for good.
    if (pts - dts > MAX_LAG_FRAMES * t.frame) dts = Math.max(t.lastDts + 1, pts - t.lead);
    t.lastDts = dts;
    const nals = unit.nals.filter((n) => !NOT_SAMPLES.has(nalType(n)));
    this.framesWritten++;
    const segment = mediaSegment(++this.#sequence, {
      decodeTime: dts - t.base,
      duration: t.frame,
      compositionOffset: pts - dts,
      keyframe: unit.keyframe,
      nals,
    });
    return { segment, keyframe: unit.keyframe };
  }
}

const equal = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

const sameTrack = (track: Fmp4Track | undefined, sps: Uint8Array, pps: Uint8Array): boolean =>
  track !== undefined && equal(track.sps, sps) && equal(track.pps, pps);
