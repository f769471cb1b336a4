/**
 * The NAT model's PCP / NAT-PMP server (issue 20), byte in, byte out: the checks a real router
 * makes (sender's address, the lease's nonce, protocols it does not speak) and the lease table.
 */
import { describe, expect, it } from 'vitest';
import { answerPortMapping, type PortMappingServerState } from '../../src/nat/port-mapping-server.ts';
import { decodeNatPmpResponse, encodeNatPmpRequest } from '../../src/protocol/portmap/natpmp.ts';
import { decodePcpResponse, encodePcpRequest, PcpOpcode, PcpResult } from '../../src/protocol/portmap/pcp.ts';
import { nat, PUBLIC } from './helpers.ts';

const CLIENT = { address: '10.0.1.2', port: 5000 };

function map(nonceByte: number, lifetimeS: number, clientAddress = CLIENT.address, externalPort = 0) {
  return encodePcpRequest({
    opcode: PcpOpcode.map,
    lifetimeS,
    clientAddress,
    map: {
      nonce: new Uint8Array(12).fill(nonceByte),
      protocol: 17,
      internalPort: 40_000,
      externalPort,
      externalAddress: '0.0.0.0',
    },
    options: [],
  });
}

function state(): PortMappingServerState {
  return { bootedAtMs: 0, nonces: new Map() };
}

describe('NAT model port-mapping server', () => {
  it('grants a PCP lease, renews it only with the same nonce, and deletes it', () => {
    const n = nat({ allocation: { type: 'random' } });
    const s = state();
    const granted = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(1, 600), CLIENT, 5_000)!);
    expect(granted).toMatchObject({ resultCode: PcpResult.success, lifetimeS: 600, epochS: 5 });
    expect(granted.map!.externalAddress).toBe(PUBLIC);
    const port = granted.map!.externalPort;
    expect(n.leases(5_000).map((l) => l.external.port)).toEqual([port]);
    // Another client's nonce for the same internal port: refused, the lease stays.
    const stolen = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(2, 0), CLIENT, 6_000)!);
    expect(stolen.resultCode).toBe(PcpResult.notAuthorized);
    expect(n.leases(6_000)).toHaveLength(1);
    const renewed = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(1, 600), CLIENT, 7_000)!);
    expect(renewed.map!.externalPort).toBe(port);
    const deleted = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(1, 0), CLIENT, 8_000)!);
    expect(deleted).toMatchObject({ resultCode: PcpResult.success, lifetimeS: 0 });
    expect(n.leases(8_000)).toEqual([]);
  });

  it('refuses a client address that is not the sender, and caps the lifetime at a day', () => {
    const n = nat();
    const s = state();
    const spoofed = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(1, 600, '10.0.1.3'), CLIENT, 0)!);
    expect(spoofed.resultCode).toBe(PcpResult.addressMismatch);
    expect(n.leases(0)).toEqual([]);
    const long = decodePcpResponse(answerPortMapping(n, ['pcp'], s, map(1, 10 ** 7), CLIENT, 0)!);
    expect(long.lifetimeS).toBe(86_400);
  });

  it('takes a suggested port when it is free', () => {
    const n = nat({ allocation: { type: 'random' } });
    const got = decodePcpResponse(
      answerPortMapping(n, ['pcp'], state(), map(1, 60, CLIENT.address, 41_000), CLIENT, 0)!,
    );
    expect(got.map!.externalPort).toBe(41_000);
  });

  it('a NAT-PMP-only router answers PCP with its own unsupported version, and maps with NAT-PMP', () => {
    const n = nat();
    const s = state();
    const answer = answerPortMapping(n, ['nat-pmp'], s, map(1, 60), CLIENT, 3_000)!;
    expect([...answer]).toEqual([0, 129, 0, 1, 0, 0, 0, 3]);
    const address = decodeNatPmpResponse(
      answerPortMapping(n, ['nat-pmp'], s, encodeNatPmpRequest({ kind: 'external-address' }), CLIENT, 3_000)!,
    );
    expect(address).toMatchObject({ kind: 'external-address', externalAddress: PUBLIC, epochS: 3 });
    const mapped = decodeNatPmpResponse(
      answerPortMapping(
        n,
        ['nat-pmp'],
        s,
        encodeNatPmpRequest({
          kind: 'map',
          protocol: 'udp',
          internalPort: 40_000,
          suggestedExternalPort: 0,
          lifetimeS: 60,
        }),
        CLIENT,
        3_000,
      )!,
    );
    expect(mapped).toMatchObject({ kind: 'map', resultCode: 0, lifetimeS: 60 });
    expect(n.leases(3_000)).toHaveLength(1);
    // A PCP-only router says nothing to NAT-PMP; garbage gets nothing either.
    expect(
      answerPortMapping(n, ['pcp'], s, encodeNatPmpRequest({ kind: 'external-address' }), CLIENT, 0),
    ).toBeUndefined();
    expect(answerPortMapping(n, ['pcp', 'nat-pmp'], s, Uint8Array.of(2, 1, 0), CLIENT, 0)).toBeUndefined();
  });
});
