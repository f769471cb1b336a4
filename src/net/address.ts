/** IPv4 helpers. Addresses are dotted-quad strings at API boundaries and uint32 inside prefix math. */

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(text: string): boolean {
  return IPV4.test(text);
}

export function ipv4ToInt(address: string): number {
  if (!isIpv4(address)) throw new RangeError(`not an IPv4 address: '${address}'`);
  const [a, b, c, d] = address.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export interface Cidr {
  readonly base: number;
  readonly prefixLength: number;
}

export function parseCidr(text: string): Cidr {
  const [address, lengthText] = text.split('/');
  const prefixLength = lengthText === undefined ? 32 : Number(lengthText);
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new RangeError(`bad prefix length in '${text}'`);
  }
  const mask = prefixMask(prefixLength);
  return { base: (ipv4ToInt(address ?? '') & mask) >>> 0, prefixLength };
}

function prefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  return (ipv4ToInt(address) & prefixMask(cidr.prefixLength)) >>> 0 === cidr.base;
}

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

export function formatEndpoint(endpoint: Endpoint): string {
  return `${endpoint.address}:${endpoint.port}`;
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.address === b.address && a.port === b.port;
}
