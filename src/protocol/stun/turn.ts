/**
 * TURN over UDP (RFC 8656): methods, attributes and the ChannelData framing, on top of the STUN
 * codec. Long-term credentials (RFC 8489 §9.2): key = MD5(username ":" realm ":" password).
 *
 * ChannelData (RFC 8656 §12.4):
 *   0                   1                   2                   3
 *  |         Channel Number        |            Length             |
 *  |                       Application Data ...                    |
 * Channel numbers 0x4000-0x4FFF (0x7FFF accepted, RFC 5766); the first two bits 01 tell it from STUN (00) and RTP/RTCP (10).
 */
import { createHash } from 'node:crypto';
import { DecodeError } from '../decode-error.ts';
import { readU16, readU32 } from './message.ts';

export const TurnMethod = {
  allocate: 0x003,
  refresh: 0x004,
  send: 0x006,
  data: 0x007,
  createPermission: 0x008,
  channelBind: 0x009,
} as const;

/** RFC 8656 §18, RFC 8489 §18.3. */
export const TurnAttribute = {
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_ADDRESS_FAMILY: 0x0017,
  EVEN_PORT: 0x0018,
  REQUESTED_TRANSPORT: 0x0019,
  DONT_FRAGMENT: 0x001a,
  RESERVATION_TOKEN: 0x0022,
} as const;

/**
 * SC2C-RAW-RELAY (issue 23), in the comprehension-optional range so that other TURN servers
 * ignore it. In an Allocate it asks for a raw relay; a server that grants it echoes it in the
 * answer with the path it forwards on (`RAW_RELAY_PATH`), and answers the client's latch (a signed
 * Binding request to the relayed address) with it too. Data from permitted peers then reaches the
 * latched address as plain datagrams from the relayed address, with no ChannelData framing, so the
 * kernel can forward it.
 */
export const SC2C_RAW_RELAY = 0xc2c0;
export const RAW_RELAY_PATH = { userspace: 1, kernel: 2 } as const;

/** Comprehension-required attributes (below 0x8000) this server understands; others get 420. */
export const KNOWN_REQUIRED_ATTRIBUTES: ReadonlySet<number> = new Set([
  0x0001, 0x0006, 0x0008, 0x0009, 0x0014, 0x0015, 0x0020, 0x001c, 0x001d, 0x001e, 0x000c, 0x000d, 0x0012,
  0x0013, 0x0016, 0x0017, 0x0018, 0x0019, 0x001a, 0x0022,
]);

/** RFC 8656 §3.7 and §7-11: the lifetimes the RFC sets, in seconds. */
export const TURN_LIFETIMES = {
  allocationDefaultS: 600,
  allocationMaxS: 3600,
  permissionS: 300,
  channelS: 600,
} as const;

export const PROTOCOL_UDP = 17;
export const CHANNEL_MIN = 0x4000;
/** RFC 8656 §12 allots 0x4000-0x4FFF; our client binds only these. */
export const CHANNEL_MAX = 0x4fff;
/**
 * RFC 5766 allowed 0x4000-0x7FFF, and RFC 5766 clients still use the upper part (coturn's
 * turnutils_uclient binds 0x7Exx): the server and the decoder accept the old range.
 */
export const CHANNEL_MAX_ACCEPTED = 0x7fff;

export function longTermKey(username: string, realm: string, password: string): Uint8Array {
  return new Uint8Array(createHash('md5').update(`${username}:${realm}:${password}`).digest());
}

export function encodeU32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

export function decodeU32(value: Uint8Array, what: string): number {
  if (value.byteLength !== 4)
    throw new DecodeError('turn', 0, `${what} must be 4 bytes, got ${value.byteLength}`);
  return readU32(value, 0);
}

/** REQUESTED-TRANSPORT: the protocol number, then 3 bytes RFFU. */
export function encodeRequestedTransport(protocol: number): Uint8Array {
  return Uint8Array.of(protocol, 0, 0, 0);
}

export function decodeRequestedTransport(value: Uint8Array): number {
  if (value.byteLength !== 4)
    throw new DecodeError('turn', 0, `REQUESTED-TRANSPORT must be 4 bytes, got ${value.byteLength}`);
  return value[0]!;
}

/** CHANNEL-NUMBER: the number, then 2 bytes RFFU. */
export function encodeChannelNumber(channel: number): Uint8Array {
  return Uint8Array.of(channel >> 8, channel & 0xff, 0, 0);
}

export function decodeChannelNumber(value: Uint8Array): number {
  if (value.byteLength !== 4)
    throw new DecodeError('turn', 0, `CHANNEL-NUMBER must be 4 bytes, got ${value.byteLength}`);
  return readU16(value, 0);
}

export function isChannelData(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && (bytes[0]! & 0xc0) === 0x40;
}

export interface ChannelData {
  readonly channel: number;
  readonly data: Uint8Array;
}

/**
 * Over UDP the padding is optional (RFC 8656 §12.5): none is sent, any is accepted. Over TCP and
 * TLS it is required: `padded` allocates the frame at its padded length at once.
 */
export function encodeChannelData(channel: number, data: Uint8Array, padded = false): Uint8Array {
  if (channel < CHANNEL_MIN || channel > CHANNEL_MAX_ACCEPTED)
    throw new RangeError(`channel 0x${channel.toString(16)}`);
  if (data.byteLength > 0xffff) throw new RangeError('ChannelData longer than 65535 bytes');
  const size = 4 + data.byteLength;
  const out = new Uint8Array(padded ? (size + 3) & ~3 : size);
  out[0] = channel >> 8;
  out[1] = channel & 0xff;
  out[2] = data.byteLength >> 8;
  out[3] = data.byteLength & 0xff;
  out.set(data, 4);
  return out;
}

/** A view on the datagram's bytes, not a copy. */
export function decodeChannelData(bytes: Uint8Array): ChannelData {
  if (bytes.byteLength < 4) throw new DecodeError('turn', 0, 'ChannelData shorter than its 4-byte header');
  const channel = readU16(bytes, 0);
  if (channel < CHANNEL_MIN || channel > CHANNEL_MAX_ACCEPTED)
    throw new DecodeError('turn', 0, `channel number 0x${channel.toString(16)} outside 0x4000-0x7FFF`);
  const length = readU16(bytes, 2);
  if (4 + length > bytes.byteLength)
    throw new DecodeError(
      'turn',
      2,
      `ChannelData length ${length} runs past the ${bytes.byteLength}-byte datagram`,
    );
  if (bytes.byteLength - 4 - length > 3)
    throw new DecodeError('turn', 2, `ChannelData has ${bytes.byteLength - 4 - length} bytes after its data`);
  return { channel, data: bytes.subarray(4, 4 + length) };
}

/** Over TCP and TLS a ChannelData frame must be padded to a multiple of 4 bytes (RFC 8656 §12.5). */
export function padForStream(frame: Uint8Array): Uint8Array {
  const pad = (4 - (frame.byteLength % 4)) % 4;
  if (pad === 0) return frame;
  const out = new Uint8Array(frame.byteLength + pad);
  out.set(frame);
  return out;
}

/**
 * Cuts a TURN byte stream (RFC 8656 §3.1: TURN over TCP) into whole STUN messages and ChannelData
 * frames, the padding of ChannelData dropped. A stream that starts anything else, or announces a
 * frame larger than `maxFrameBytes`, cannot be resynchronised: `push` throws a DecodeError and the
 * connection must be closed.
 */
export class TurnStreamDeframer {
  #pending = new Uint8Array(0);

  constructor(private readonly maxFrameBytes: number) {}

  /** Appends `chunk`; returns the frames it completed (copies, which outlive the chunk). */
  push(chunk: Uint8Array): Uint8Array[] {
    const buffer = this.#pending.byteLength === 0 ? chunk : concat(this.#pending, chunk);
    const frames: Uint8Array[] = [];
    let offset = 0;
    while (buffer.byteLength - offset >= 4) {
      const kind = buffer[offset]! & 0xc0;
      const length = readU16(buffer, offset + 2);
      let size: number;
      let padded: number;
      if (kind === 0x00) {
        size = 20 + length;
        padded = size;
      } else if (kind === 0x40) {
        size = 4 + length;
        padded = (size + 3) & ~3;
      } else {
        throw new DecodeError(
          'turn',
          offset,
          `byte 0x${buffer[offset]!.toString(16)} starts neither a STUN message nor ChannelData`,
        );
      }
      if (size > this.maxFrameBytes) throw new FrameTooLarge(offset, size, this.maxFrameBytes);
      if (buffer.byteLength - offset < padded) break;
      frames.push(buffer.slice(offset, offset + size));
      offset += padded;
    }
    this.#pending = buffer.slice(offset);
    return frames;
  }
}

/** A stream frame over the deframer's limit: counted apart from malformed input. */
export class FrameTooLarge extends DecodeError {
  constructor(offset: number, size: number, max: number) {
    super('turn', offset, `a ${size}-byte frame is over the ${max}-byte limit`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
