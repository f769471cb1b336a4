/**
 * What a player needs from an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1): profile,
 * level and the cropped picture size, plus the RFC 6381 codec string (`avc1.PPCCLL`) that Media
 * Source Extensions ask for. Exp-Golomb reads are bounded by the NAL's length; a truncated or
 * nonsensical SPS throws a `DecodeError`. Pure.
 */
import { DecodeError } from './decode-error.ts';

export interface SpsInfo {
  readonly profileIdc: number;
  readonly constraintFlags: number;
  readonly levelIdc: number;
  readonly width: number;
  readonly height: number;
  /** RFC 6381 §3.3: `avc1.` and the three bytes after the NAL header, in hex. */
  readonly codec: string;
}

/** Profiles whose SPS carries chroma format, bit depths and scaling matrices (§7.3.2.1.1). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);
/** Level 6.2's frame size limit is 139 264 macroblocks: anything above is not a real stream. */
const MAX_MBS = 139_264;

/** Removes emulation-prevention bytes (00 00 03 → 00 00), §7.4.1. */
export function unescapeRbsp(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(nal.byteLength);
  let n = 0;
  let zeros = 0;
  for (const byte of nal) {
    if (zeros >= 2 && byte === 3) {
      zeros = 0;
      continue;
    }
    zeros = byte === 0 ? zeros + 1 : 0;
    out[n++] = byte;
  }
  return out.subarray(0, n);
}

class BitReader {
  #bit = 0;
  constructor(private readonly bytes: Uint8Array) {}

  /** Byte offset in the NAL unit (after its header) being read. */
  get offset(): number {
    return 1 + (this.#bit >> 3);
  }

  u(bits: number): number {
    let value = 0;
    for (let i = 0; i < bits; i++) {
      const byte = this.bytes[this.#bit >> 3];
      if (byte === undefined) throw new DecodeError('h264.sps', this.offset, 'truncated');
      value = value * 2 + ((byte >> (7 - (this.#bit & 7))) & 1);
      this.#bit++;
    }
    return value;
  }

  /** ue(v), §9.1: at most 31 leading zeros, or the value would not fit the fields it codes. */
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) {
      if (++zeros > 31) throw new DecodeError('h264.sps', this.offset, 'exp-Golomb code too long');
    }
    return 2 ** zeros - 1 + this.u(zeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }
}

export function parseSps(nal: Uint8Array): SpsInfo {
  if (nal.byteLength < 4 || (nal[0]! & 0x1f) !== 7)
    throw new DecodeError('h264.sps', 0, 'not an SPS NAL unit');
  const r = new BitReader(unescapeRbsp(nal.subarray(1)));
  const profileIdc = r.u(8);
  const constraintFlags = r.u(8);
  const levelIdc = r.u(8);
  r.ue(); // seq_parameter_set_id
  let chromaFormatIdc = 1;
  let separateColourPlane = 0;
  if (HIGH_PROFILES.has(profileIdc)) {
    chromaFormatIdc = r.ue();
    if (chromaFormatIdc > 3)
      throw new DecodeError('h264.sps', r.offset, `chroma_format_idc ${chromaFormatIdc}`);
    if (chromaFormatIdc === 3) separateColourPlane = r.u(1);
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.u(1); // qpprime_y_zero_transform_bypass_flag
    if (r.u(1)) {
      // seq_scaling_matrix_present_flag: skip each list (§7.3.2.1.1.1).
      const lists = chromaFormatIdc === 3 ? 12 : 8;
      for (let i = 0; i < lists; i++) {
        if (!r.u(1)) continue;
        const size = i < 6 ? 16 : 64;
        let last = 8;
        let next = 8;
        for (let j = 0; j < size && next !== 0; j++) {
          next = (last + r.se() + 256) % 256;
          if (next !== 0) last = next;
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.u(1);
    r.se();
    r.se();
    const cycle = r.ue();
    if (cycle > 255)
      throw new DecodeError('h264.sps', r.offset, 'num_ref_frames_in_pic_order_cnt_cycle > 255');
    for (let i = 0; i < cycle; i++) r.se();
  } else if (pocType !== 2) throw new DecodeError('h264.sps', r.offset, `pic_order_cnt_type ${pocType}`);
  r.ue(); // max_num_ref_frames
  r.u(1); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1;
  const heightMapUnits = r.ue() + 1;
  const frameMbsOnly = r.u(1);
  const heightMbs = (2 - frameMbsOnly) * heightMapUnits;
  if (widthMbs * heightMbs > MAX_MBS)
    throw new DecodeError('h264.sps', r.offset, 'picture larger than level 6.2');
  if (!frameMbsOnly) r.u(1); // mb_adaptive_frame_field_flag
  r.u(1); // direct_8x8_inference_flag
  let crop = { left: 0, right: 0, top: 0, bottom: 0 };
  if (r.u(1)) crop = { left: r.ue(), right: r.ue(), top: r.ue(), bottom: r.ue() };
  // Crop units (Table 6-1, §7.4.2.1.1): 2x2 luma samples for 4:2:0, 2x1 for 4:2:2, 1x1 otherwise.
  const chroma = separateColourPlane ? 0 : chromaFormatIdc;
  const cropX = chroma === 1 || chroma === 2 ? 2 : 1;
  const cropY = (chroma === 1 ? 2 : 1) * (2 - frameMbsOnly);
  const width = widthMbs * 16 - cropX * (crop.left + crop.right);
  const height = heightMbs * 16 - cropY * (crop.top + crop.bottom);
  if (width <= 0 || height <= 0)
    throw new DecodeError('h264.sps', r.offset, 'cropped away the whole picture');
  const hex = (v: number): string => v.toString(16).padStart(2, '0').toUpperCase();
  return {
    profileIdc,
    constraintFlags,
    levelIdc,
    width,
    height,
    codec: `avc1.${hex(profileIdc)}${hex(constraintFlags)}${hex(levelIdc)}`,
  };
}
