/**
 * SRTP and SRTCP packet protection for one call (RFC 3711 with AES_CM_128_HMAC_SHA1_80, RFC 7714
 * with AEAD_AES_128_GCM). Replay protection is on; every refused packet is counted by why.
 *
 * AES-CM SRTP:   header | AES-CM(payload) | HMAC-SHA1-80(header | ciphertext | ROC)
 * AES-CM SRTCP:  first 8 bytes | AES-CM(rest) | E(1) index(31) | HMAC-SHA1-80(all before)
 * GCM SRTP:      header | AES-GCM(payload; AAD header) | tag(16)
 * GCM SRTCP:     first 8 bytes | AES-GCM(rest; AAD first 8 | E index) | tag(16) | E(1) index(31)
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { type MasterKey, type SessionKeys, type SrtpProfile, sessionKeys } from './keys.ts';
import { estimateIndex, ReplayWindow } from './replay.ts';

export interface SrtpCounters {
  /** Packets that failed authentication: tampered, forged, or under other keys. */
  authFailures: number;
  /** Authentic packets seen before, or too old for the window. */
  replayed: number;
  /** Too short, or a header whose lengths do not fit. */
  malformed: number;
}

/** SSRCs tracked per direction. A call has two (video, audio); a few more cover encoder restarts. */
const MAX_SSRCS = 16;
const AUTH_TAG_CM = 10;
const GCM_TAG = 16;
/** RFC 3711 §3.3.1: a sender must not use 2^48 SRTP or 2^31 SRTCP indexes under one master key. */
const MAX_SRTCP_INDEX = 0x7fffffff;

interface InboundState {
  readonly window: ReplayWindow;
}

interface OutboundState {
  /** The 48-bit index of the last packet sent. */
  index: number;
}

/** Length of the RTP header (fixed, CSRCs, extension), or -1 when it does not fit in `packet`. */
export function rtpHeaderLength(packet: Uint8Array): number {
  if (packet.byteLength < 12) return -1;
  let n = 12 + 4 * (packet[0]! & 0x0f);
  if (packet[0]! & 0x10) {
    if (packet.byteLength < n + 4) return -1;
    n += 4 + 4 * ((packet[n + 2]! << 8) | packet[n + 3]!);
  }
  return n <= packet.byteLength ? n : -1;
}

const u32 = (b: Uint8Array, at: number): number =>
  ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** One direction's contexts: what we protect with, or what we check the peer's packets with. */
class Context {
  readonly keys: SessionKeys;
  constructor(
    master: MasterKey,
    readonly profile: SrtpProfile,
  ) {
    this.keys = sessionKeys(master, profile);
  }

  /** AES-CM IV (RFC 3711 §4.1.1): salt·2^16 ⊕ SSRC·2^64 ⊕ index·2^16. */
  cmIv(salt: Uint8Array, ssrc: number, index: number): Uint8Array {
    const iv = new Uint8Array(16);
    iv.set(salt.subarray(0, 14));
    iv[4]! ^= ssrc >>> 24;
    iv[5]! ^= (ssrc >>> 16) & 0xff;
    iv[6]! ^= (ssrc >>> 8) & 0xff;
    iv[7]! ^= ssrc & 0xff;
    let v = index;
    for (let i = 13; i >= 8; i--) {
      iv[i]! ^= v % 256;
      v = Math.floor(v / 256);
    }
    return iv;
  }

  /** GCM IV (RFC 7714 §8.1, §9.1): (0 0 | SSRC | 48-bit index) ⊕ salt. */
  gcmIv(salt: Uint8Array, ssrc: number, index: number): Uint8Array {
    const iv = new Uint8Array(12);
    writeU32(iv, 2, ssrc);
    let v = index;
    for (let i = 11; i >= 6; i--) {
      iv[i] = v % 256;
      v = Math.floor(v / 256);
    }
    for (let i = 0; i < 12; i++) iv[i]! ^= salt[i]!;
    return iv;
  }
}

/**
 * The SRTP session of one call. `protect*` never fail on packets we built; `unprotect*` return
 * undefined for a packet to drop and count it in `counters`.
 */
export class SrtpSession {
  readonly counters: SrtpCounters = { authFailures: 0, replayed: 0, malformed: 0 };
  readonly #out: Context;
  readonly #in: Context;
  readonly #outRtp = new Map<number, OutboundState>();
  readonly #outRtcp = new Map<number, OutboundState>();
  readonly #inRtp = new Map<number, InboundState>();
  readonly #inRtcp = new Map<number, InboundState>();

  constructor(
    readonly profile: SrtpProfile,
    local: MasterKey,
    remote: MasterKey,
  ) {
    this.#out = new Context(local, profile);
    this.#in = new Context(remote, profile);
  }

  get gcm(): boolean {
    return this.profile === 7;
  }

  protectRtp(packet: Uint8Array): Uint8Array {
    const headerLength = rtpHeaderLength(packet);
    if (headerLength < 0) throw new RangeError('not an RTP packet');
    const ssrc = u32(packet, 8);
    const seq = (packet[2]! << 8) | packet[3]!;
    const state = bounded(this.#outRtp, ssrc, () => ({ index: -1 }));
    let index = estimateIndex(state.index, seq);
    if (index < 0) index = seq;
    if (index > state.index) state.index = index;
    const header = packet.subarray(0, headerLength);
    const payload = packet.subarray(headerLength);
    const k = this.#out.keys;
    if (this.gcm) {
      const cipher = createCipheriv('aes-128-gcm', k.rtpKey, this.#out.gcmIv(k.rtpSalt, ssrc, index));
      cipher.setAAD(header);
      const body = cipher.update(payload);
      cipher.final();
      return Buffer.concat([header, body, cipher.getAuthTag()]);
    }
    const cipher = createCipheriv('aes-128-ctr', k.rtpKey, this.#out.cmIv(k.rtpSalt, ssrc, index));
    const out = Buffer.concat([header, cipher.update(payload), new Uint8Array(AUTH_TAG_CM)]);
    const roc = new Uint8Array(4);
    writeU32(roc, 0, Math.floor(index / 65536));
    const tag = createHmac('sha1', k.rtpAuth)
      .update(out.subarray(0, out.byteLength - AUTH_TAG_CM))
      .update(roc)
      .digest();
    out.set(tag.subarray(0, AUTH_TAG_CM), out.byteLength - AUTH_TAG_CM);
    return out;
  }

  unprotectRtp(packet: Uint8Array): Uint8Array | undefined {
    const tagLength = this.gcm ? GCM_TAG : AUTH_TAG_CM;
    const headerLength = rtpHeaderLength(packet);
    if (headerLength < 0 || packet.byteLength < headerLength + tagLength) {
      this.counters.malformed++;
      return undefined;
    }
    const ssrc = u32(packet, 8);
    const seq = (packet[2]! << 8) | packet[3]!;
    const state = this.#inRtp.get(ssrc);
    const index = estimateIndex(state ? state.window.highest : -1, seq);
    if (index < 0 || (state && !state.window.check(index))) {
      this.counters.replayed++;
      return undefined;
    }
    const header = packet.subarray(0, headerLength);
    const body = packet.subarray(headerLength, packet.byteLength - tagLength);
    const tag = packet.subarray(packet.byteLength - tagLength);
    const k = this.#in.keys;
    let payload: Uint8Array;
    if (this.gcm) {
      const decipher = createDecipheriv('aes-128-gcm', k.rtpKey, this.#in.gcmIv(k.rtpSalt, ssrc, index));
      decipher.setAAD(header);
      decipher.setAuthTag(tag);
      try {
        payload = decipher.update(body);
        decipher.final();
      } catch {
        this.counters.authFailures++;
        return undefined;
      }
    } else {
      const roc = new Uint8Array(4);
      writeU32(roc, 0, Math.floor(index / 65536));
      const expected = createHmac('sha1', k.rtpAuth)
        .update(packet.subarray(0, packet.byteLength - tagLength))
        .update(roc)
        .digest()
        .subarray(0, AUTH_TAG_CM);
      if (!timingSafeEqual(expected, tag)) {
        this.counters.authFailures++;
        return undefined;
      }
      payload = createDecipheriv('aes-128-ctr', k.rtpKey, this.#in.cmIv(k.rtpSalt, ssrc, index)).update(body);
    }
    bounded(this.#inRtp, ssrc, () => ({ window: new ReplayWindow() })).window.commit(index);
    return Buffer.concat([header, payload]);
  }

  protectRtcp(packet: Uint8Array): Uint8Array {
    if (packet.byteLength < 8) throw new RangeError('not an RTCP packet');
    const ssrc = u32(packet, 4);
    const state = bounded(this.#outRtcp, ssrc, () => ({ index: -1 }));
    state.index = state.index >= MAX_SRTCP_INDEX ? 0 : state.index + 1;
    const index = state.index;
    const first = packet.subarray(0, 8);
    const rest = packet.subarray(8);
    const trailer = new Uint8Array(4);
    writeU32(trailer, 0, (0x80000000 | index) >>> 0);
    const k = this.#out.keys;
    if (this.gcm) {
      const cipher = createCipheriv('aes-128-gcm', k.rtcpKey, this.#out.gcmIv(k.rtcpSalt, ssrc, index));
      cipher.setAAD(Buffer.concat([first, trailer]));
      const body = cipher.update(rest);
      cipher.final();
      return Buffer.concat([first, body, cipher.getAuthTag(), trailer]);
    }
    const cipher = createCipheriv('aes-128-ctr', k.rtcpKey, this.#out.cmIv(k.rtcpSalt, ssrc, index));
    const signed = Buffer.concat([first, cipher.update(rest), trailer]);
    const tag = createHmac('sha1', k.rtcpAuth).update(signed).digest().subarray(0, AUTH_TAG_CM);
    return Buffer.concat([signed, tag]);
  }

  unprotectRtcp(packet: Uint8Array): Uint8Array | undefined {
    const tagLength = this.gcm ? GCM_TAG : AUTH_TAG_CM;
    if (packet.byteLength < 8 + 4 + tagLength) {
      this.counters.malformed++;
      return undefined;
    }
    const ssrc = u32(packet, 4);
    const trailerAt = this.gcm ? packet.byteLength - 4 : packet.byteLength - tagLength - 4;
    const word = u32(packet, trailerAt);
    const encrypted = (word & 0x80000000) !== 0;
    const index = word & MAX_SRTCP_INDEX;
    const state = this.#inRtcp.get(ssrc);
    if (state && !state.window.check(index)) {
      this.counters.replayed++;
      return undefined;
    }
    const first = packet.subarray(0, 8);
    const trailer = packet.subarray(trailerAt, trailerAt + 4);
    const k = this.#in.keys;
    let rest: Uint8Array;
    if (this.gcm) {
      const body = packet.subarray(8, trailerAt - GCM_TAG);
      const decipher = createDecipheriv('aes-128-gcm', k.rtcpKey, this.#in.gcmIv(k.rtcpSalt, ssrc, index));
      decipher.setAAD(Buffer.concat([first, trailer]));
      decipher.setAuthTag(packet.subarray(trailerAt - GCM_TAG, trailerAt));
      try {
        rest = decipher.update(body);
        decipher.final();
      } catch {
        this.counters.authFailures++;
        return undefined;
      }
    } else {
      const signed = packet.subarray(0, trailerAt + 4);
      const expected = createHmac('sha1', k.rtcpAuth).update(signed).digest().subarray(0, AUTH_TAG_CM);
      if (!timingSafeEqual(expected, packet.subarray(trailerAt + 4))) {
        this.counters.authFailures++;
        return undefined;
      }
      const body = packet.subarray(8, trailerAt);
      rest = encrypted
        ? createDecipheriv('aes-128-ctr', k.rtcpKey, this.#in.cmIv(k.rtcpSalt, ssrc, index)).update(body)
        : body;
    }
    bounded(this.#inRtcp, ssrc, () => ({ window: new ReplayWindow() })).window.commit(index);
    return Buffer.concat([first, rest]);
  }
}

/** The state for `ssrc`, made on first use; the oldest goes when the table is full. */
function bounded<T>(table: Map<number, T>, ssrc: number, make: () => T): T {
  let state = table.get(ssrc);
  if (state) return state;
  if (table.size >= MAX_SSRCS) table.delete(table.keys().next().value!);
  state = make();
  table.set(ssrc, state);
  return state;
}
