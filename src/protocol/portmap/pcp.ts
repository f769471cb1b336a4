/**
 * Port Control Protocol (RFC 6887), the MAP and ANNOUNCE opcodes a gateway needs to ask its NAT
 * for an inbound mapping (issue 20). UDP to port 5351 of the default gateway. Pure.
 *
 * Request header (§7.1):                     Response header (§7.2):
 *    0                   1                   2                   3
 *   |  Version = 2  |R| Opcode     |   Reserved (16)               |   (response: Reserved (8) | Result Code)
 *   |                 Requested Lifetime (32 bits)                  |   (response: Lifetime)
 *   |          PCP Client's IP Address (128 bits)                   |   (response: Epoch Time (32), Reserved (96))
 *   :             (optional) opcode-specific information            :
 *   :             (optional) PCP Options                            :
 *
 * MAP opcode data (§11.1), 36 bytes: Mapping Nonce (96) | Protocol (8) | Reserved (24) |
 * Internal Port (16) | Suggested / Assigned External Port (16) | Suggested / Assigned External IP
 * Address (128). IPv4 addresses travel IPv4-mapped (::ffff:a.b.c.d); ::ffff:0.0.0.0 means "no
 * preference". Options (§7.3): Code (8) | Reserved (8) | Length (16) | data, padded to 4 bytes;
 * unknown ones are kept raw, never dropped.
 */
import { DecodeError } from '../decode-error.ts';

export const PCP_PORT = 5351;
export const PCP_VERSION = 2;
/** §7: a PCP message is at most 1100 bytes. */
export const PCP_MAX_MESSAGE = 1100;
const HEADER = 24;
const MAP_DATA = 36;

export const PcpOpcode = { announce: 0, map: 1, peer: 2 } as const;

/** §7.4 result codes. */
export const PcpResult = {
  success: 0,
  unsuppVersion: 1,
  notAuthorized: 2,
  malformedRequest: 3,
  unsuppOpcode: 4,
  unsuppOption: 5,
  malformedOption: 6,
  networkFailure: 7,
  noResources: 8,
  unsuppProtocol: 9,
  userExQuota: 10,
  cannotProvideExternal: 11,
  addressMismatch: 12,
  excessiveRemotePeers: 13,
} as const;

export interface PcpOption {
  readonly code: number;
  readonly data: Uint8Array;
}

export interface PcpMapData {
  /** 12 random bytes chosen by the client; the server echoes them, and a renewal repeats them. */
  readonly nonce: Uint8Array;
  /** IANA protocol number: 17 for UDP, 6 for TCP, 0 for all. */
  readonly protocol: number;
  readonly internalPort: number;
  /** Suggested (request) or assigned (response); 0: no preference. */
  readonly externalPort: number;
  /** Suggested (request) or assigned (response); `0.0.0.0`: no preference. */
  readonly externalAddress: string;
}

export interface PcpRequest {
  readonly opcode: number;
  readonly lifetimeS: number;
  /** The client's own address, as it sends from (the server checks it against the source). */
  readonly clientAddress: string;
  readonly map?: PcpMapData;
  readonly options: readonly PcpOption[];
}

export interface PcpResponse {
  readonly opcode: number;
  readonly resultCode: number;
  readonly lifetimeS: number;
  /** Seconds since the server's state began; a jump backwards means it lost its mappings (§8.5). */
  readonly epochS: number;
  readonly map?: PcpMapData;
  readonly options: readonly PcpOption[];
}

/** A PCP message of either direction: version 2, a whole number of 32-bit words, 24 to 1100 bytes. */
export function isPcp(bytes: Uint8Array): boolean {
  return (
    bytes.byteLength >= HEADER &&
    bytes.byteLength <= PCP_MAX_MESSAGE &&
    bytes.byteLength % 4 === 0 &&
    bytes[0] === PCP_VERSION
  );
}

export function encodePcpRequest(request: PcpRequest): Uint8Array {
  const out = new Uint8Array(HEADER + (request.map ? MAP_DATA : 0) + optionsLength(request.options));
  const view = new DataView(out.buffer);
  out[0] = PCP_VERSION;
  out[1] = request.opcode & 0x7f;
  view.setUint32(4, request.lifetimeS >>> 0);
  out.set(encodeAddress(request.clientAddress), 8);
  let offset = HEADER;
  if (request.map) offset = writeMap(out, offset, request.map);
  writeOptions(out, offset, request.options);
  return out;
}

export function decodePcpRequest(bytes: Uint8Array): PcpRequest {
  const view = checkHeader(bytes, 'pcp request');
  if (bytes[1]! & 0x80) throw new DecodeError('pcp request', 1, 'the R bit says response');
  const opcode = bytes[1]! & 0x7f;
  const lifetimeS = view.getUint32(4);
  const clientAddress = decodeAddress(bytes, 8);
  let offset = HEADER;
  let map: PcpMapData | undefined;
  if (opcode === PcpOpcode.map) {
    map = readMap(bytes, offset, 'pcp request');
    offset += MAP_DATA;
  }
  return { opcode, lifetimeS, clientAddress, map, options: readOptions(bytes, offset, 'pcp request') };
}

export function encodePcpResponse(response: PcpResponse): Uint8Array {
  const out = new Uint8Array(HEADER + (response.map ? MAP_DATA : 0) + optionsLength(response.options));
  const view = new DataView(out.buffer);
  out[0] = PCP_VERSION;
  out[1] = 0x80 | (response.opcode & 0x7f);
  out[3] = response.resultCode;
  view.setUint32(4, response.lifetimeS >>> 0);
  view.setUint32(8, response.epochS >>> 0);
  let offset = HEADER;
  if (response.map) offset = writeMap(out, offset, response.map);
  writeOptions(out, offset, response.options);
  return out;
}

export function decodePcpResponse(bytes: Uint8Array): PcpResponse {
  const view = checkHeader(bytes, 'pcp response');
  if (!(bytes[1]! & 0x80)) throw new DecodeError('pcp response', 1, 'the R bit says request');
  const opcode = bytes[1]! & 0x7f;
  const resultCode = bytes[3]!;
  const lifetimeS = view.getUint32(4);
  const epochS = view.getUint32(8);
  let offset = HEADER;
  let map: PcpMapData | undefined;
  // An error response may carry the request's opcode data, or (to an unknown version) only a header.
  if (opcode === PcpOpcode.map && bytes.byteLength >= HEADER + MAP_DATA) {
    map = readMap(bytes, offset, 'pcp response');
    offset += MAP_DATA;
  }
  return {
    opcode,
    resultCode,
    lifetimeS,
    epochS,
    map,
    options: readOptions(bytes, offset, 'pcp response'),
  };
}

function checkHeader(bytes: Uint8Array, where: string): DataView {
  if (bytes.byteLength < HEADER)
    throw new DecodeError(where, bytes.byteLength, 'shorter than the 24-byte header');
  if (bytes.byteLength > PCP_MAX_MESSAGE)
    throw new DecodeError(where, PCP_MAX_MESSAGE, `longer than ${PCP_MAX_MESSAGE} bytes`);
  if (bytes.byteLength % 4 !== 0)
    throw new DecodeError(where, bytes.byteLength, 'not a whole number of words');
  if (bytes[0] !== PCP_VERSION) throw new DecodeError(where, 0, `version ${bytes[0]}, not ${PCP_VERSION}`);
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function writeMap(out: Uint8Array, offset: number, map: PcpMapData): number {
  if (map.nonce.byteLength !== 12) throw new RangeError('a PCP mapping nonce is 12 bytes');
  const view = new DataView(out.buffer);
  out.set(map.nonce, offset);
  out[offset + 12] = map.protocol;
  view.setUint16(offset + 16, map.internalPort);
  view.setUint16(offset + 18, map.externalPort);
  out.set(encodeAddress(map.externalAddress), offset + 20);
  return offset + MAP_DATA;
}

function readMap(bytes: Uint8Array, offset: number, where: string): PcpMapData {
  if (bytes.byteLength < offset + MAP_DATA)
    throw new DecodeError(where, bytes.byteLength, 'MAP opcode data is 36 bytes');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    nonce: bytes.slice(offset, offset + 12),
    protocol: bytes[offset + 12]!,
    internalPort: view.getUint16(offset + 16),
    externalPort: view.getUint16(offset + 18),
    externalAddress: decodeAddress(bytes, offset + 20),
  };
}

function optionsLength(options: readonly PcpOption[]): number {
  return options.reduce((sum, o) => sum + 4 + padded(o.data.byteLength), 0);
}

function padded(length: number): number {
  return (length + 3) & ~3;
}

function writeOptions(out: Uint8Array, offset: number, options: readonly PcpOption[]): void {
  const view = new DataView(out.buffer);
  for (const option of options) {
    out[offset] = option.code;
    view.setUint16(offset + 2, option.data.byteLength);
    out.set(option.data, offset + 4);
    offset += 4 + padded(option.data.byteLength);
  }
}

function readOptions(bytes: Uint8Array, offset: number, where: string): PcpOption[] {
  const options: PcpOption[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (offset < bytes.byteLength) {
    if (offset + 4 > bytes.byteLength) throw new DecodeError(where, offset, 'truncated option header');
    const length = view.getUint16(offset + 2);
    if (offset + 4 + length > bytes.byteLength)
      throw new DecodeError(where, offset + 2, `option length ${length} runs past the message`);
    options.push({ code: bytes[offset]!, data: bytes.slice(offset + 4, offset + 4 + length) });
    offset += 4 + padded(length);
  }
  return options;
}

/** An IPv4 address as PCP carries it: IPv4-mapped IPv6 (RFC 4291 §2.5.5.2). */
function encodeAddress(address: string): Uint8Array {
  const out = new Uint8Array(16);
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new RangeError(`not an IPv4 address: '${address}'`);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(parts, 12);
  return out;
}

/** Dotted IPv4 for an IPv4-mapped address; the eight groups of hex for any other IPv6 one. */
function decodeAddress(bytes: Uint8Array, offset: number): string {
  const mapped =
    bytes.subarray(offset, offset + 10).every((b) => b === 0) &&
    bytes[offset + 10] === 0xff &&
    bytes[offset + 11] === 0xff;
  if (mapped) return Array.from(bytes.subarray(offset + 12, offset + 16)).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push(((bytes[offset + i]! << 8) | bytes[offset + i + 1]!).toString(16));
  return groups.join(':');
}
