/**
 * MESSAGE-INTEGRITY (RFC 8489 §14.5, HMAC-SHA1) and FINGERPRINT (§14.7, CRC-32 XOR 0x5354554e).
 * Both cover the message up to the attribute, with the header length already counting it.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { DecodeError } from '../decode-error.ts';
import { AttributeType, HEADER_LENGTH, padded, readU16, readU32 } from './message.ts';

const FINGERPRINT_XOR = 0x5354554e;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.byteLength; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function withLength(bytes: Uint8Array, end: number, attributeLength: number): Uint8Array {
  const copy = bytes.slice(0, end);
  new DataView(copy.buffer).setUint16(2, end - HEADER_LENGTH + attributeLength);
  return copy;
}

function append(bytes: Uint8Array, type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength + 4 + padded(value.byteLength));
  out.set(bytes);
  const view = new DataView(out.buffer);
  view.setUint16(bytes.byteLength, type);
  view.setUint16(bytes.byteLength + 2, value.byteLength);
  out.set(value, bytes.byteLength + 4);
  view.setUint16(2, out.byteLength - HEADER_LENGTH);
  return out;
}

/** Appends MESSAGE-INTEGRITY computed with `key` (short-term: the password's UTF-8 bytes). */
export function addMessageIntegrity(encoded: Uint8Array, key: Uint8Array): Uint8Array {
  const hmac = createHmac('sha1', key)
    .update(withLength(encoded, encoded.byteLength, 24))
    .digest();
  return append(encoded, AttributeType.MESSAGE_INTEGRITY, new Uint8Array(hmac));
}

export function addFingerprint(encoded: Uint8Array): Uint8Array {
  const crc = (crc32(withLength(encoded, encoded.byteLength, 8)) ^ FINGERPRINT_XOR) >>> 0;
  const value = new Uint8Array(4);
  new DataView(value.buffer).setUint32(0, crc);
  return append(encoded, AttributeType.FINGERPRINT, value);
}

/** Byte offset of the first attribute of `type`, or -1. The message must already decode. */
function attributeOffset(bytes: Uint8Array, type: number): number {
  let offset = HEADER_LENGTH;
  while (offset + 4 <= bytes.byteLength) {
    if (readU16(bytes, offset) === type) return offset;
    offset += 4 + padded(readU16(bytes, offset + 2));
  }
  return -1;
}

/** True when FINGERPRINT is present, last, and correct. */
export function verifyFingerprint(bytes: Uint8Array): boolean {
  const offset = attributeOffset(bytes, AttributeType.FINGERPRINT);
  if (offset < 0 || offset + 8 !== bytes.byteLength) return false;
  const expected = (crc32(withLength(bytes, offset, 8)) ^ FINGERPRINT_XOR) >>> 0;
  return readU32(bytes, offset + 4) === expected;
}

/** Checks MESSAGE-INTEGRITY in constant time. Throws DecodeError when it is absent or malformed. */
export function verifyMessageIntegrity(bytes: Uint8Array, key: Uint8Array): boolean {
  const offset = attributeOffset(bytes, AttributeType.MESSAGE_INTEGRITY);
  if (offset < 0) throw new DecodeError('stun', HEADER_LENGTH, 'no MESSAGE-INTEGRITY attribute');
  if (readU16(bytes, offset + 2) !== 20)
    throw new DecodeError('stun', offset, 'MESSAGE-INTEGRITY is not 20 bytes');
  const expected = createHmac('sha1', key)
    .update(withLength(bytes, offset, 24))
    .digest();
  return timingSafeEqual(expected, bytes.subarray(offset + 4, offset + 24));
}
