/**
 * Asking the NAT itself for an inbound mapping (issue 20, seed 004): PCP first (RFC 6887 MAP), then
 * NAT-PMP (RFC 6886), both to port 5351 of the default gateway. A NAT-PMP-only router answers a PCP
 * request with its own "unsupported version" (RFC 6887 §9), which moves on to NAT-PMP at once;
 * silence moves on after the retransmissions.
 *
 * Bounded: each protocol gets `attempts` requests, `rtoMs` apart and doubling (RFC 6886 §3.1 starts
 * at 250 ms; a LAN gateway answers in a few ms, so 3 tries are plenty), and a lifetime asked for
 * is capped. Only an answer from the gateway's port 5351 that matches the request (PCP: the nonce,
 * protocol and internal port; NAT-PMP: the opcode and internal port) is taken. UPnP IGD comes last
 * (upnp-client.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import {
  decodeNatPmpResponse,
  encodeNatPmpRequest,
  isNatPmp,
  NATPMP_PORT,
  NatPmpResult,
} from '../protocol/portmap/natpmp.ts';
import {
  decodePcpResponse,
  encodePcpRequest,
  isPcp,
  PCP_PORT,
  PcpOpcode,
  PcpResult,
} from '../protocol/portmap/pcp.ts';
import { type Answer, exchange } from './exchange.ts';
import { askUpnp, deleteUpnp, type UpnpService } from './upnp-client.ts';

export type PortMappingProtocol = 'pcp' | 'nat-pmp' | 'upnp';

export interface PortMapping {
  readonly protocol: PortMappingProtocol;
  readonly externalAddress: string;
  readonly externalPort: number;
  readonly internalPort: number;
  /** What the gateway granted, which may be less than asked. */
  readonly lifetimeS: number;
  /**
   * The gateway's epoch when it answered: one that goes back means it lost its mappings. UPnP IGD
   * has none (a renewal there simply adds the mapping again).
   */
  readonly epochS?: number;
  /** PCP: the nonce a renewal or a delete must repeat. */
  readonly nonce?: Uint8Array;
  /** UPnP IGD: the service that granted it (the delete goes there). */
  readonly upnp?: UpnpService;
  readonly grantedAtMs: number;
}

export type PortMappingResult =
  | { readonly ok: true; readonly mapping: PortMapping }
  | { readonly ok: false; readonly reason: string };

export interface PortMappingComponents {
  readonly network: Network;
  readonly clock: Clock;
}

export interface PortMappingInit {
  /** The default gateway (the NAT's LAN address). */
  readonly gateway: string;
  /** Our own LAN address (PCP carries it; the gateway checks it against the source). */
  readonly clientAddress: string;
  readonly internalPort: number;
  /** Asked for; capped at `MAX_LIFETIME_S`. Default 7200 (RFC 6886 §3.3's recommendation). */
  readonly lifetimeS?: number;
  /** 0: no preference (default). A renewal suggests the port it holds. */
  readonly suggestedExternalPort?: number;
  /** Default 250 ms. */
  readonly rtoMs?: number;
  /** Per protocol. Default 3. */
  readonly attempts?: number;
  /** In this order. Default PCP, then NAT-PMP, then UPnP IGD. */
  readonly protocols?: readonly PortMappingProtocol[];
  /** A renewal or a delete of a PCP mapping repeats its nonce. */
  readonly nonce?: Uint8Array;
  readonly signal?: AbortSignal;
}

/** PCP first (it says when the router lost its state), NAT-PMP, then UPnP IGD (slowest: SSDP, HTTP). */
export const DEFAULT_PROTOCOLS: readonly PortMappingProtocol[] = ['pcp', 'nat-pmp', 'upnp'];

/** A day: longer leases outlive a gateway that stopped without deleting them. */
export const MAX_LIFETIME_S = 86_400;
const UDP = 17;

const PCP_RESULTS = new Map<number, string>(Object.entries(PcpResult).map(([name, code]) => [code, name]));
const NATPMP_RESULTS = new Map<number, string>(
  Object.entries(NatPmpResult).map(([name, code]) => [code, name]),
);

/**
 * Asks for a UDP mapping of `internalPort` (lifetime 0 deletes one). Resolves with the first
 * protocol's grant, or why none: every protocol's answer or silence, in order.
 */
export async function requestPortMapping(
  c: PortMappingComponents,
  init: PortMappingInit,
): Promise<PortMappingResult> {
  const reasons: string[] = [];
  for (const protocol of init.protocols ?? DEFAULT_PROTOCOLS) {
    if (protocol === 'upnp') {
      const result = await askUpnp(c, { ...init, lifetimeS: lifetimeOf(init) });
      if (result.ok) return result;
      reasons.push(result.reason);
      if (init.signal?.aborted) break;
      continue;
    }
    const socket = await c.network.bindUdp();
    try {
      const result = protocol === 'pcp' ? await askPcp(c, socket, init) : await askNatPmp(c, socket, init);
      if (result.ok) return result;
      reasons.push(result.reason);
      if (init.signal?.aborted) break;
    } finally {
      socket.close();
    }
  }
  return { ok: false, reason: reasons.join('; ') };
}

/** Deletes a mapping we were granted (lifetime 0), with the same protocol and, for PCP, nonce. */
export function releasePortMapping(
  c: PortMappingComponents,
  mapping: PortMapping,
  init: Omit<PortMappingInit, 'internalPort' | 'lifetimeS' | 'protocols' | 'nonce'>,
): Promise<PortMappingResult> {
  if (mapping.protocol === 'upnp') return deleteUpnp(c, mapping, init);
  return requestPortMapping(c, {
    ...init,
    internalPort: mapping.internalPort,
    lifetimeS: 0,
    protocols: [mapping.protocol],
    nonce: mapping.nonce,
  });
}

/** `exchange` with one request to the gateway's port, answered from there. */
function ask<T>(
  c: PortMappingComponents,
  socket: UdpSocket,
  request: Uint8Array,
  to: Endpoint,
  init: PortMappingInit,
  accept: (data: Uint8Array) => T | undefined,
): Promise<Answer<T>> {
  return exchange(
    c.clock,
    socket,
    () => socket.send(request, to),
    (from) => from.address === to.address && from.port === to.port,
    init,
    accept,
  );
}

function lifetimeOf(init: PortMappingInit): number {
  return Math.min(MAX_LIFETIME_S, Math.max(0, Math.floor(init.lifetimeS ?? 7200)));
}

async function askPcp(
  c: PortMappingComponents,
  socket: UdpSocket,
  init: PortMappingInit,
): Promise<PortMappingResult> {
  const nonce = init.nonce ?? new Uint8Array(randomBytes(12));
  const request = encodePcpRequest({
    opcode: PcpOpcode.map,
    lifetimeS: lifetimeOf(init),
    clientAddress: init.clientAddress,
    map: {
      nonce,
      protocol: UDP,
      internalPort: init.internalPort,
      externalPort: init.suggestedExternalPort ?? 0,
      externalAddress: '0.0.0.0',
    },
    options: [],
  });
  const got = await ask(c, socket, request, { address: init.gateway, port: PCP_PORT }, init, (data) => {
    // RFC 6887 §9: a NAT-PMP-only gateway answers with its own version and "unsupported version".
    if (
      isNatPmp(data) &&
      data.byteLength >= 4 &&
      data[2] === 0 &&
      data[3] === NatPmpResult.unsupportedVersion
    )
      return 'nat-pmp only' as const;
    if (!isPcp(data)) return undefined;
    try {
      const response = decodePcpResponse(data);
      if (response.opcode !== PcpOpcode.map) return undefined;
      // An error to a version it does not speak carries no opcode data; any other must echo ours.
      if (response.resultCode === PcpResult.unsuppVersion) return response;
      const map = response.map;
      if (
        !map ||
        !sameBytes(map.nonce, nonce) ||
        map.protocol !== UDP ||
        map.internalPort !== init.internalPort
      )
        return undefined;
      return response;
    } catch {
      return undefined;
    }
  });
  if ('silent' in got) return { ok: false, reason: `PCP: no answer from ${init.gateway}:${PCP_PORT}` };
  if (got.answer === 'nat-pmp only') return { ok: false, reason: 'PCP: the gateway speaks NAT-PMP only' };
  const response = got.answer;
  if (response.resultCode !== PcpResult.success || !response.map) {
    const name = PCP_RESULTS.get(response.resultCode) ?? 'unknown result';
    return { ok: false, reason: `PCP: ${name} (${response.resultCode})` };
  }
  return {
    ok: true,
    mapping: {
      protocol: 'pcp',
      externalAddress: response.map.externalAddress,
      externalPort: response.map.externalPort,
      internalPort: init.internalPort,
      lifetimeS: response.lifetimeS,
      epochS: response.epochS,
      nonce,
      grantedAtMs: c.clock.now(),
    },
  };
}

async function askNatPmp(
  c: PortMappingComponents,
  socket: UdpSocket,
  init: PortMappingInit,
): Promise<PortMappingResult> {
  const to = { address: init.gateway, port: NATPMP_PORT };
  const decode = (data: Uint8Array) => {
    try {
      return decodeNatPmpResponse(data);
    } catch {
      return undefined;
    }
  };
  // The external address comes from its own request (RFC 6886 §3.2).
  const address = await ask(
    c,
    socket,
    encodeNatPmpRequest({ kind: 'external-address' }),
    to,
    init,
    (data) => {
      const response = decode(data);
      return response?.kind === 'external-address' ? response : undefined;
    },
  );
  if ('silent' in address)
    return { ok: false, reason: `NAT-PMP: no answer from ${init.gateway}:${NATPMP_PORT}` };
  if (address.answer.resultCode !== NatPmpResult.success)
    return {
      ok: false,
      reason: `NAT-PMP: ${natPmpResult(address.answer.resultCode)} to the address request`,
    };
  const request = encodeNatPmpRequest({
    kind: 'map',
    protocol: 'udp',
    internalPort: init.internalPort,
    suggestedExternalPort: init.suggestedExternalPort ?? 0,
    lifetimeS: lifetimeOf(init),
  });
  const got = await ask(c, socket, request, to, init, (data) => {
    const response = decode(data);
    return response?.kind === 'map' &&
      response.protocol === 'udp' &&
      response.internalPort === init.internalPort
      ? response
      : undefined;
  });
  if ('silent' in got) return { ok: false, reason: `NAT-PMP: no answer to the mapping request` };
  const response = got.answer;
  if (response.kind !== 'map' || response.resultCode !== NatPmpResult.success)
    return { ok: false, reason: `NAT-PMP: ${natPmpResult(response.resultCode)}` };
  return {
    ok: true,
    mapping: {
      protocol: 'nat-pmp',
      externalAddress: address.answer.externalAddress,
      externalPort: response.externalPort,
      internalPort: init.internalPort,
      lifetimeS: response.lifetimeS,
      epochS: response.epochS,
      grantedAtMs: c.clock.now(),
    },
  };
}

function natPmpResult(code: number): string {
  return `${NATPMP_RESULTS.get(code) ?? 'unknown result'} (${code})`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
}

/** A server's epoch as one answer gave it, and when (our clock) that answer came. */
export interface EpochSample {
  readonly epochS: number;
  readonly atMs: number;
}

/**
 * Whether the server kept its mappings between two answers (RFC 6887 §8.5, the same test as RFC
 * 6886 §3.6): its epoch must not go back by more than a second, and must have advanced with our
 * clock to within 1/16 plus 2 s either way. False means it lost its state (rebooted, restarted,
 * changed its external address) and every mapping must be asked for again. Pure.
 */
export function epochConsistent(previous: EpochSample, current: EpochSample): boolean {
  if (current.epochS + 1 < previous.epochS) return false;
  const clientDelta = (current.atMs - previous.atMs) / 1000;
  const serverDelta = current.epochS - previous.epochS;
  if (clientDelta + 2 < serverDelta - serverDelta / 16) return false;
  if (serverDelta + 2 < clientDelta - clientDelta / 16) return false;
  return true;
}
