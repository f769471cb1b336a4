/** Typed STUN attribute values: addresses (RFC 8489 §14.1-14.2), CHANGE-REQUEST (RFC 5780 §7.2), ERROR-CODE, SOFTWARE. */
import type { Endpoint } from '../../net/address.ts';
import { intToIpv4, ipv4ToInt } from '../../net/address.ts';
import { DecodeError } from '../decode-error.ts';
import { MAGIC_COOKIE, readU16, readU32 } from './message.ts';

const FAMILY_IPV4 = 0x01;

/**
 *   0                   1                   2                   3
 *  |0 0 0 0 0 0 0 0|    Family     |           Port                |
 *  |                 Address (32 bits for IPv4)                    |
 * Only IPv4: the lab and the virtual network are IPv4.
 */
export function encodeAddress(endpoint: Endpoint): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint8(1, FAMILY_IPV4);
  view.setUint16(2, endpoint.port);
  view.setUint32(4, ipv4ToInt(endpoint.address));
  return out;
}

export function decodeAddress(value: Uint8Array): Endpoint {
  if (value.byteLength < 4)
    throw new DecodeError('stun', 0, `address attribute is ${value.byteLength} bytes, needs at least 4`);
  const family = value[1];
  if (family !== FAMILY_IPV4)
    throw new DecodeError('stun', 1, `unsupported address family 0x${family?.toString(16)}`);
  if (value.byteLength !== 8)
    throw new DecodeError('stun', 0, `IPv4 address attribute must be 8 bytes, got ${value.byteLength}`);
  return { address: intToIpv4(readU32(value, 4)), port: readU16(value, 2) };
}

/** XOR-MAPPED-ADDRESS: port XOR the cookie's top 16 bits, address XOR the cookie (IPv4). */
export function encodeXorAddress(endpoint: Endpoint): Uint8Array {
  const out = encodeAddress(endpoint);
  const view = new DataView(out.buffer);
  view.setUint16(2, endpoint.port ^ (MAGIC_COOKIE >>> 16));
  view.setUint32(4, (ipv4ToInt(endpoint.address) ^ MAGIC_COOKIE) >>> 0);
  return out;
}

export function decodeXorAddress(value: Uint8Array): Endpoint {
  const plain = decodeAddress(value);
  return {
    address: intToIpv4((ipv4ToInt(plain.address) ^ MAGIC_COOKIE) >>> 0),
    port: plain.port ^ (MAGIC_COOKIE >>> 16),
  };
}

export interface ChangeRequest {
  readonly changeIp: boolean;
  readonly changePort: boolean;
}

/** RFC 5780 §7.2: flags A (0x4, change IP) and B (0x2, change port) in a 32-bit value. */
export function encodeChangeRequest(request: ChangeRequest): Uint8Array {
  const out = new Uint8Array(4);
  out[3] = (request.changeIp ? 0x04 : 0) | (request.changePort ? 0x02 : 0);
  return out;
}

export function decodeChangeRequest(value: Uint8Array): ChangeRequest {
  if (value.byteLength !== 4)
    throw new DecodeError('stun', 0, `CHANGE-REQUEST must be 4 bytes, got ${value.byteLength}`);
  return { changeIp: (value[3]! & 0x04) !== 0, changePort: (value[3]! & 0x02) !== 0 };
}

export interface ErrorCode {
  readonly code: number;
  readonly reason: string;
}

/** RFC 8489 §14.8: class (hundreds) and number in the low bits, then a UTF-8 reason phrase. */
export function encodeErrorCode(error: ErrorCode): Uint8Array {
  const reason = new TextEncoder().encode(error.reason);
  const out = new Uint8Array(4 + reason.byteLength);
  out[2] = Math.floor(error.code / 100) & 0x07;
  out[3] = error.code % 100;
  out.set(reason, 4);
  return out;
}

export function decodeErrorCode(value: Uint8Array): ErrorCode {
  if (value.byteLength < 4) throw new DecodeError('stun', 0, 'ERROR-CODE shorter than 4 bytes');
  const code = (value[2]! & 0x07) * 100 + value[3]!;
  if (code < 300 || code > 699) throw new DecodeError('stun', 2, `ERROR-CODE ${code} outside 300..699`);
  return { code, reason: new TextDecoder().decode(value.subarray(4)) };
}

export function encodeText(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function decodeText(value: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(value);
}

/** UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the 16-bit types a 420 answer names. */
export function encodeUnknownAttributes(types: readonly number[]): Uint8Array {
  const out = new Uint8Array(types.length * 2);
  const view = new DataView(out.buffer);
  for (const [i, type] of types.entries()) view.setUint16(i * 2, type);
  return out;
}
