/**
 * STUN message codec, RFC 8489 §5:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |0 0|     STUN Message Type     |         Message Length        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                         Magic Cookie                          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                     Transaction ID (96 bits)                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Attributes are type (16) / length (16) / value, padded to 4 bytes (§14). Unknown attributes are
 * kept as raw values, never dropped.
 */
import { DecodeError } from '../decode-error.ts';

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_LENGTH = 20;

export const StunClass = { request: 0, indication: 1, success: 2, error: 3 } as const;
export type StunClass = (typeof StunClass)[keyof typeof StunClass];

export const StunMethod = { binding: 0x001 } as const;

/** RFC 8489 §18.3, RFC 5780 §7. */
export const AttributeType = {
  MAPPED_ADDRESS: 0x0001,
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  XOR_MAPPED_ADDRESS: 0x0020,
  SOFTWARE: 0x8022,
  /** RFC 8489 §14.15: where a 300 (Try Alternate) sends the client. */
  ALTERNATE_SERVER: 0x8023,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
} as const;

export interface StunAttribute {
  readonly type: number;
  readonly value: Uint8Array;
}

export interface StunMessage {
  readonly method: number;
  readonly cls: StunClass;
  /** 12 bytes. */
  readonly transactionId: Uint8Array;
  readonly attributes: readonly StunAttribute[];
}

/** Cheap check for demultiplexing one port: first two bits zero and the magic cookie in place. */
export function isStun(bytes: Uint8Array): boolean {
  return (
    bytes.byteLength >= HEADER_LENGTH &&
    (bytes[0]! & 0xc0) === 0 &&
    readU32(bytes, 4) === MAGIC_COOKIE &&
    (readU16(bytes, 2) & 3) === 0
  );
}

export function encodeMessageType(method: number, cls: StunClass): number {
  return (
    (method & 0x000f) |
    ((cls & 1) << 4) |
    ((method & 0x0070) << 1) |
    ((cls & 2) << 7) |
    ((method & 0x0f80) << 2)
  );
}

export function decodeMessageType(type: number): { method: number; cls: StunClass } {
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const cls = (((type & 0x0010) >> 4) | ((type & 0x0100) >> 7)) as StunClass;
  return { method, cls };
}

export function decodeStun(bytes: Uint8Array): StunMessage {
  if (bytes.byteLength < HEADER_LENGTH)
    throw new DecodeError('stun', 0, `message shorter than the 20-byte header (${bytes.byteLength})`);
  if ((bytes[0]! & 0xc0) !== 0) throw new DecodeError('stun', 0, 'first two bits are not zero');
  if (readU32(bytes, 4) !== MAGIC_COOKIE) throw new DecodeError('stun', 4, 'magic cookie mismatch');
  const length = readU16(bytes, 2);
  if (length % 4 !== 0) throw new DecodeError('stun', 2, `message length ${length} is not a multiple of 4`);
  if (HEADER_LENGTH + length !== bytes.byteLength) {
    throw new DecodeError(
      'stun',
      2,
      `message length ${length} does not match ${bytes.byteLength - HEADER_LENGTH} bytes after the header`,
    );
  }
  const { method, cls } = decodeMessageType(readU16(bytes, 0));
  const attributes: StunAttribute[] = [];
  let offset = HEADER_LENGTH;
  while (offset < bytes.byteLength) {
    if (offset + 4 > bytes.byteLength) throw new DecodeError('stun', offset, 'truncated attribute header');
    const type = readU16(bytes, offset);
    const valueLength = readU16(bytes, offset + 2);
    const valueStart = offset + 4;
    if (valueStart + valueLength > bytes.byteLength) {
      throw new DecodeError(
        'stun',
        offset,
        `attribute 0x${type.toString(16)} length ${valueLength} runs past the message`,
      );
    }
    attributes.push({ type, value: bytes.slice(valueStart, valueStart + valueLength) });
    offset = valueStart + padded(valueLength);
  }
  if (offset !== bytes.byteLength)
    throw new DecodeError('stun', offset, 'attribute padding runs past the message');
  return { method, cls, transactionId: bytes.slice(8, 20), attributes };
}

/** Encodes without MESSAGE-INTEGRITY or FINGERPRINT; see `integrity.ts` to add them. */
export function encodeStun(message: StunMessage): Uint8Array {
  if (message.transactionId.byteLength !== 12) throw new RangeError('transactionId must be 12 bytes');
  let bodyLength = 0;
  for (const attribute of message.attributes) {
    if (attribute.value.byteLength > 0xffff)
      throw new RangeError(`attribute 0x${attribute.type.toString(16)} too long`);
    bodyLength += 4 + padded(attribute.value.byteLength);
  }
  const out = new Uint8Array(HEADER_LENGTH + bodyLength);
  const view = new DataView(out.buffer);
  view.setUint16(0, encodeMessageType(message.method, message.cls));
  view.setUint16(2, bodyLength);
  view.setUint32(4, MAGIC_COOKIE);
  out.set(message.transactionId, 8);
  let offset = HEADER_LENGTH;
  for (const attribute of message.attributes) {
    view.setUint16(offset, attribute.type);
    view.setUint16(offset + 2, attribute.value.byteLength);
    out.set(attribute.value, offset + 4);
    offset += 4 + padded(attribute.value.byteLength);
  }
  return out;
}

export function findAttribute(message: StunMessage, type: number): StunAttribute | undefined {
  return message.attributes.find((a) => a.type === type);
}

export function padded(length: number): number {
  return (length + 3) & ~3;
}

export function readU16(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 8) | bytes[offset + 1]!;
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0
  );
}

/** Byte-for-byte equality (transaction ids). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
}
