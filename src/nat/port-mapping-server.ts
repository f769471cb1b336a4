/**
 * The port-mapping server of the NAT model (issue 20): what a home router running PCP (RFC 6887)
 * or NAT-PMP (RFC 6886) answers on its LAN side, over the model's lease table (`Nat.lease`). Pure:
 * a request's bytes and the time in, the answer's bytes out (undefined: send nothing).
 *
 * Handled: PCP MAP and ANNOUNCE, NAT-PMP external address and UDP map, lifetime 0 as a delete, the
 * client address checked against the sender (PCP ADDRESS_MISMATCH), a PCP renewal or delete whose
 * nonce does not match the lease (NOT_AUTHORIZED), a protocol the router does not speak answered
 * with "unsupported version" (RFC 6887 §9), and the epoch: seconds since the server's state began,
 * which a reboot restarts.
 */
import type { Endpoint } from '../net/address.ts';
import {
  decodeNatPmpRequest,
  encodeNatPmpResponse,
  isNatPmp,
  NatPmpResult,
} from '../protocol/portmap/natpmp.ts';
import {
  decodePcpRequest,
  encodePcpResponse,
  isPcp,
  PCP_MAX_MESSAGE,
  PcpOpcode,
  type PcpRequest,
  PcpResult,
} from '../protocol/portmap/pcp.ts';
import type { PortMappingServer } from './behaviour.ts';
import type { Nat } from './nat.ts';

/** The longest lease granted, as miniupnpd's max_lifetime default (a day). */
export const MAX_LEASE_S = 86_400;
const UDP = 17;
/** Nonces kept before those of expired leases are pruned (the lease table holds at most 1024). */
const MAX_NONCES = 2048;

export interface PortMappingServerState {
  /** Clock time the server's state began (boot); the epoch counts from it. */
  bootedAtMs: number;
  /** Nonce of each PCP lease, by internal endpoint and port: a renewal must repeat it. */
  readonly nonces: Map<string, string>;
}

export function answerPortMapping(
  nat: Nat,
  speaks: readonly PortMappingServer[],
  state: PortMappingServerState,
  request: Uint8Array,
  from: Endpoint,
  nowMs: number,
): Uint8Array | undefined {
  const epochS = Math.floor((nowMs - state.bootedAtMs) / 1000);
  if (request.byteLength > PCP_MAX_MESSAGE) return undefined;
  if (isPcp(request)) {
    // RFC 6887 §9: a NAT-PMP-only server answers with its own version and "unsupported version".
    if (!speaks.includes('pcp'))
      return speaks.includes('nat-pmp')
        ? Uint8Array.of(0, 128 + (request[1]! & 0x7f), 0, NatPmpResult.unsupportedVersion, ...u32(epochS))
        : undefined;
    let decoded: PcpRequest;
    try {
      decoded = decodePcpRequest(request);
    } catch {
      return undefined;
    }
    return answerPcp(nat, state, decoded, from, nowMs, epochS);
  }
  if (isNatPmp(request)) {
    if (!speaks.includes('nat-pmp')) return undefined;
    try {
      return answerNatPmp(nat, state, decodeNatPmpRequest(request), from, nowMs, epochS);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function answerPcp(
  nat: Nat,
  state: PortMappingServerState,
  request: PcpRequest,
  from: Endpoint,
  nowMs: number,
  epochS: number,
): Uint8Array {
  const reply = (resultCode: number, lifetimeS: number, externalPort = 0) =>
    encodePcpResponse({
      opcode: request.opcode,
      resultCode,
      lifetimeS,
      epochS,
      map: request.map && {
        ...request.map,
        externalPort,
        externalAddress: resultCode === PcpResult.success ? nat.publicAddress : '0.0.0.0',
      },
      options: [],
    });
  if (request.opcode === PcpOpcode.announce) return reply(PcpResult.success, 0);
  if (request.opcode !== PcpOpcode.map || !request.map) return reply(PcpResult.unsuppOpcode, 0);
  if (request.clientAddress !== from.address) return reply(PcpResult.addressMismatch, 0);
  const map = request.map;
  if (map.protocol !== UDP || map.internalPort === 0) return reply(PcpResult.unsuppProtocol, 0);
  const internal = { address: from.address, port: map.internalPort };
  const key = `${internal.address}:${internal.port}`;
  const nonce = Buffer.from(map.nonce).toString('hex');
  const held = nat
    .leases(nowMs)
    .find((l) => l.internal.address === internal.address && l.internal.port === internal.port);
  if (held && state.nonces.get(key) !== nonce) return reply(PcpResult.notAuthorized, 0);
  const lifetimeS = Math.min(request.lifetimeS, MAX_LEASE_S);
  const granted = nat.lease('udp', internal, map.externalPort, lifetimeS * 1000, nowMs);
  if (!granted) return reply(PcpResult.noResources, 0);
  if (lifetimeS === 0) state.nonces.delete(key);
  else {
    if (state.nonces.size >= MAX_NONCES) {
      const live = new Set(nat.leases(nowMs).map((l) => `${l.internal.address}:${l.internal.port}`));
      for (const k of state.nonces.keys()) if (!live.has(k)) state.nonces.delete(k);
    }
    state.nonces.set(key, nonce);
  }
  return reply(PcpResult.success, lifetimeS, granted.externalPort);
}

function answerNatPmp(
  nat: Nat,
  state: PortMappingServerState,
  request: ReturnType<typeof decodeNatPmpRequest>,
  from: Endpoint,
  nowMs: number,
  epochS: number,
): Uint8Array {
  if (request.kind === 'external-address')
    return encodeNatPmpResponse({
      kind: 'external-address',
      resultCode: 0,
      epochS,
      externalAddress: nat.publicAddress,
    });
  const base = {
    kind: 'map' as const,
    protocol: request.protocol,
    epochS,
    internalPort: request.internalPort,
  };
  if (request.protocol !== 'udp' || request.internalPort === 0)
    return encodeNatPmpResponse({
      ...base,
      resultCode: NatPmpResult.unsupportedOpcode,
      externalPort: 0,
      lifetimeS: 0,
    });
  const lifetimeS = Math.min(request.lifetimeS, MAX_LEASE_S);
  const internal = { address: from.address, port: request.internalPort };
  const granted = nat.lease('udp', internal, request.suggestedExternalPort, lifetimeS * 1000, nowMs);
  if (!granted)
    return encodeNatPmpResponse({
      ...base,
      resultCode: NatPmpResult.outOfResources,
      externalPort: 0,
      lifetimeS: 0,
    });
  // A NAT-PMP lease has no nonce: a PCP client may not renew it (RFC 6887 §9 keeps them apart).
  state.nonces.delete(`${internal.address}:${internal.port}`);
  return encodeNatPmpResponse({
    ...base,
    resultCode: NatPmpResult.success,
    externalPort: lifetimeS === 0 ? 0 : granted.externalPort,
    lifetimeS,
  });
}

function u32(value: number): number[] {
  return [(value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
}
