/**
 * NAT Port Mapping Protocol (RFC 6886), PCP's predecessor that many routers still answer: the
 * external address request and the UDP/TCP mapping request (issue 20). UDP to port 5351 of the
 * default gateway, version 0. Pure.
 *
 * External address request (§3.2): Vers = 0 | OP = 0.
 * Its response: Vers = 0 | OP = 128 | Result Code (16) | Seconds Since Start of Epoch (32) |
 *   External IPv4 Address (32): 12 bytes.
 * Mapping request (§3.3): Vers = 0 | OP = 1 (UDP) or 2 (TCP) | Reserved (16) | Internal Port (16) |
 *   Suggested External Port (16) | Requested Port Mapping Lifetime in Seconds (32): 12 bytes.
 * Its response: Vers = 0 | OP = 128 + op | Result Code (16) | Seconds Since Start of Epoch (32) |
 *   Internal Port (16) | Mapped External Port (16) | Port Mapping Lifetime in Seconds (32): 16 bytes.
 * A lifetime of 0 deletes the mapping (§3.4).
 */
import { DecodeError } from '../decode-error.ts';

export const NATPMP_PORT = 5351;
export const NATPMP_VERSION = 0;

/** §3.5 result codes. */
export const NatPmpResult = {
  success: 0,
  unsupportedVersion: 1,
  notAuthorized: 2,
  networkFailure: 3,
  outOfResources: 4,
  unsupportedOpcode: 5,
} as const;

export type NatPmpProtocol = 'udp' | 'tcp';

export type NatPmpRequest =
  | { readonly kind: 'external-address' }
  | {
      readonly kind: 'map';
      readonly protocol: NatPmpProtocol;
      readonly internalPort: number;
      /** 0: no preference. */
      readonly suggestedExternalPort: number;
      /** 0 deletes the mapping. */
      readonly lifetimeS: number;
    };

export type NatPmpResponse =
  | {
      readonly kind: 'external-address';
      readonly resultCode: number;
      readonly epochS: number;
      readonly externalAddress: string;
    }
  | {
      readonly kind: 'map';
      readonly protocol: NatPmpProtocol;
      readonly resultCode: number;
      readonly epochS: number;
      readonly internalPort: number;
      readonly externalPort: number;
      readonly lifetimeS: number;
    };

const OPCODE: Record<NatPmpProtocol, number> = { udp: 1, tcp: 2 };

/** A NAT-PMP message: version 0 and at least the two-byte header (PCP says version 2). */
export function isNatPmp(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 2 && bytes.byteLength <= 16 && bytes[0] === NATPMP_VERSION;
}

export function encodeNatPmpRequest(request: NatPmpRequest): Uint8Array {
  if (request.kind === 'external-address') return Uint8Array.of(NATPMP_VERSION, 0);
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  out[1] = OPCODE[request.protocol];
  view.setUint16(4, request.internalPort);
  view.setUint16(6, request.suggestedExternalPort);
  view.setUint32(8, request.lifetimeS >>> 0);
  return out;
}

export function decodeNatPmpRequest(bytes: Uint8Array): NatPmpRequest {
  if (bytes.byteLength < 2)
    throw new DecodeError('nat-pmp request', bytes.byteLength, 'shorter than 2 bytes');
  if (bytes[0] !== NATPMP_VERSION) throw new DecodeError('nat-pmp request', 0, `version ${bytes[0]}`);
  const op = bytes[1]!;
  if (op === 0) return { kind: 'external-address' };
  if (op !== 1 && op !== 2) throw new DecodeError('nat-pmp request', 1, `unknown opcode ${op}`);
  if (bytes.byteLength < 12)
    throw new DecodeError('nat-pmp request', bytes.byteLength, 'a mapping request is 12 bytes');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    kind: 'map',
    protocol: op === 1 ? 'udp' : 'tcp',
    internalPort: view.getUint16(4),
    suggestedExternalPort: view.getUint16(6),
    lifetimeS: view.getUint32(8),
  };
}

export function encodeNatPmpResponse(response: NatPmpResponse): Uint8Array {
  const out = new Uint8Array(response.kind === 'external-address' ? 12 : 16);
  const view = new DataView(out.buffer);
  out[1] = 128 + (response.kind === 'external-address' ? 0 : OPCODE[response.protocol]);
  view.setUint16(2, response.resultCode);
  view.setUint32(4, response.epochS >>> 0);
  if (response.kind === 'external-address') {
    const parts = response.externalAddress.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
      throw new RangeError(`not an IPv4 address: '${response.externalAddress}'`);
    out.set(parts, 8);
  } else {
    view.setUint16(8, response.internalPort);
    view.setUint16(10, response.externalPort);
    view.setUint32(12, response.lifetimeS >>> 0);
  }
  return out;
}

export function decodeNatPmpResponse(bytes: Uint8Array): NatPmpResponse {
  const where = 'nat-pmp response';
  if (bytes.byteLength < 8) throw new DecodeError(where, bytes.byteLength, 'shorter than 8 bytes');
  if (bytes[0] !== NATPMP_VERSION) throw new DecodeError(where, 0, `version ${bytes[0]}`);
  const op = bytes[1]!;
  if (op < 128 || op > 130) throw new DecodeError(where, 1, `opcode ${op} is not a response`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const resultCode = view.getUint16(2);
  const epochS = view.getUint32(4);
  if (op === 128) {
    if (bytes.byteLength < 12)
      throw new DecodeError(where, bytes.byteLength, 'an address response is 12 bytes');
    return {
      kind: 'external-address',
      resultCode,
      epochS,
      externalAddress: Array.from(bytes.subarray(8, 12)).join('.'),
    };
  }
  if (bytes.byteLength < 16) throw new DecodeError(where, bytes.byteLength, 'a mapping response is 16 bytes');
  return {
    kind: 'map',
    protocol: op === 129 ? 'udp' : 'tcp',
    resultCode,
    epochS,
    internalPort: view.getUint16(8),
    externalPort: view.getUint16(10),
    lifetimeS: view.getUint32(12),
  };
}
