/**
 * Where a port-mapping request goes (RFC 6887 §8.1, RFC 6886 §3): the default router, read from
 * the kernel's IPv4 routing table, and our own address on that interface (PCP carries it and the
 * router checks it against the source).
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { cidrContains, intToIpv4, parseCidr } from './address.ts';

export interface DefaultRoute {
  /** The router's address. */
  readonly gateway: string;
  readonly interface: string;
  /** Our IPv4 address on that interface. */
  readonly address: string;
}

/**
 * The first default route with a gateway in `/proc/net/route`'s text (fields in host byte order
 * hex, little-endian on every Linux we run on). Pure; undefined when there is none.
 */
export function parseDefaultRoute(table: string): { gateway: string; interface: string } | undefined {
  for (const line of table.split('\n').slice(1)) {
    const [iface, destination, gateway, flags] = line.trim().split(/\s+/);
    if (!iface || destination !== '00000000' || !gateway || !flags) continue;
    const RTF_UP = 0x1;
    const RTF_GATEWAY = 0x2;
    const f = Number.parseInt(flags, 16);
    if (!(f & RTF_UP) || !(f & RTF_GATEWAY) || !/^[0-9A-Fa-f]{8}$/.test(gateway)) continue;
    const le = Number.parseInt(gateway, 16);
    const be = ((le & 0xff) << 24) | (((le >>> 8) & 0xff) << 16) | (((le >>> 16) & 0xff) << 8) | (le >>> 24);
    if (be === 0) continue;
    return { gateway: intToIpv4(be >>> 0), interface: iface };
  }
  return undefined;
}

/** This host's default route, or why there is none usable. */
export function defaultRoute(): DefaultRoute | { readonly reason: string } {
  let table: string;
  try {
    table = readFileSync('/proc/net/route', 'utf8');
  } catch {
    return { reason: 'no /proc/net/route to find the default router in (give portMapping.gateway)' };
  }
  const route = parseDefaultRoute(table);
  if (!route) return { reason: 'no default route through a router (give portMapping.gateway)' };
  const addresses = (networkInterfaces()[route.interface] ?? []).filter((a) => a.family === 'IPv4');
  const onLink =
    addresses.find((a) => a.cidr && cidrContains(parseCidr(a.cidr), route.gateway)) ?? addresses[0];
  if (!onLink) return { reason: `no IPv4 address on ${route.interface}, the default route's interface` };
  return { ...route, address: onLink.address };
}
