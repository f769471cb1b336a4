/**
 * PCP (RFC 6887) and NAT-PMP (RFC 6886) codecs (issue 20): byte layouts as the RFCs draw them,
 * round trips, and hostile input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import {
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
  isNatPmp,
  NatPmpResult,
} from '../../src/protocol/portmap/natpmp.ts';
import {
  decodePcpRequest,
  decodePcpResponse,
  encodePcpRequest,
  encodePcpResponse,
  isPcp,
  PcpOpcode,
  PcpResult,
} from '../../src/protocol/portmap/pcp.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const NONCE = Uint8Array.from({ length: 12 }, (_, i) => i + 1);

describe('PCP (RFC 6887)', () => {
  it('lays out a MAP request as §7.1 and §11.1 draw it', () => {
    const bytes = encodePcpRequest({
      opcode: PcpOpcode.map,
      lifetimeS: 7200,
      clientAddress: '10.0.1.2',
      map: { nonce: NONCE, protocol: 17, internalPort: 40_000, externalPort: 0, externalAddress: '0.0.0.0' },
      options: [],
    });
    expect(bytes.byteLength).toBe(60);
    expect(hex(bytes)).toBe(
      [
        '02010000', // version 2, R=0 opcode MAP, reserved
        '00001c20', // requested lifetime 7200 s
        '00000000000000000000ffff0a000102', // client address ::ffff:10.0.1.2
        '0102030405060708090a0b0c', // mapping nonce
        '11000000', // protocol UDP, reserved
        '9c400000', // internal port 40000, suggested external port 0
        '00000000000000000000ffff00000000', // suggested external address ::ffff:0.0.0.0
      ].join(''),
    );
    expect(isPcp(bytes)).toBe(true);
    expect(decodePcpRequest(bytes)).toEqual({
      opcode: 1,
      lifetimeS: 7200,
      clientAddress: '10.0.1.2',
      map: { nonce: NONCE, protocol: 17, internalPort: 40_000, externalPort: 0, externalAddress: '0.0.0.0' },
      options: [],
    });
  });

  it('round-trips a MAP response with its epoch and an unknown option kept raw', () => {
    const response = {
      opcode: PcpOpcode.map,
      resultCode: PcpResult.success,
      lifetimeS: 3600,
      epochS: 123_456,
      map: {
        nonce: NONCE,
        protocol: 17,
        internalPort: 40_000,
        externalPort: 61_234,
        externalAddress: '198.18.9.1',
      },
      options: [{ code: 200, data: Uint8Array.of(1, 2, 3) }],
    };
    const bytes = encodePcpResponse(response);
    expect(bytes[1]).toBe(0x81); // R=1, MAP
    expect(bytes[3]).toBe(0);
    expect(bytes.byteLength).toBe(24 + 36 + 8); // the option's 3 bytes padded to 4
    expect(decodePcpResponse(bytes)).toEqual(response);
  });

  it('reads an error response that carries no opcode data, and a native IPv6 address', () => {
    const header = encodePcpResponse({
      opcode: PcpOpcode.map,
      resultCode: PcpResult.unsuppVersion,
      lifetimeS: 0,
      epochS: 5,
      options: [],
    });
    expect(decodePcpResponse(header)).toMatchObject({ resultCode: 1, map: undefined });
    const request = encodePcpRequest({
      opcode: PcpOpcode.announce,
      lifetimeS: 0,
      clientAddress: '10.0.1.2',
      options: [],
    });
    request.set(Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1]), 8);
    expect(decodePcpRequest(request).clientAddress).toBe('2001:db8:0:0:0:0:0:1');
  });

  it('refuses what is not a PCP message, saying where', () => {
    const good = encodePcpResponse({ opcode: 1, resultCode: 0, lifetimeS: 1, epochS: 1, options: [] });
    const cases: [Uint8Array, RegExp][] = [
      [good.subarray(0, 20), /24-byte header/],
      [Uint8Array.from([...good, 0, 0]), /whole number of words/],
      [Uint8Array.from([0, ...good.subarray(1)]), /version 0/],
      [new Uint8Array(1104).fill(2), /longer than 1100/],
      [
        encodePcpRequest({ opcode: 1, lifetimeS: 1, clientAddress: '10.0.0.1', options: [] }),
        /R bit says request/,
      ],
    ];
    for (const [bytes, reason] of cases) expect(() => decodePcpResponse(bytes)).toThrow(reason);
    // An option whose length runs past the end.
    const lying = Uint8Array.from([...good, 200, 0, 0, 40]);
    expect(() => decodePcpResponse(lying)).toThrow(DecodeError);
    expect(() => decodePcpResponse(lying)).toThrow(/runs past the message/);
  });

  it('decodes any bytes to a message or a DecodeError, and round-trips any MAP request', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        for (const decode of [decodePcpRequest, decodePcpResponse]) {
          try {
            decode(bytes);
          } catch (error) {
            if (!(error instanceof DecodeError)) throw error;
          }
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.record({
          lifetimeS: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
          clientAddress: fc.ipV4(),
          nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }),
          protocol: fc.integer({ min: 0, max: 255 }),
          internalPort: fc.integer({ min: 0, max: 65535 }),
          externalPort: fc.integer({ min: 0, max: 65535 }),
          externalAddress: fc.ipV4(),
        }),
        (r) => {
          const request = {
            opcode: PcpOpcode.map,
            lifetimeS: r.lifetimeS,
            clientAddress: r.clientAddress,
            map: {
              nonce: r.nonce,
              protocol: r.protocol,
              internalPort: r.internalPort,
              externalPort: r.externalPort,
              externalAddress: r.externalAddress,
            },
            options: [],
          };
          expect(decodePcpRequest(encodePcpRequest(request))).toEqual(request);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('NAT-PMP (RFC 6886)', () => {
  it('lays out the requests as §3.2 and §3.3 draw them', () => {
    expect(hex(encodeNatPmpRequest({ kind: 'external-address' }))).toBe('0000');
    const map = encodeNatPmpRequest({
      kind: 'map',
      protocol: 'udp',
      internalPort: 40_000,
      suggestedExternalPort: 40_000,
      lifetimeS: 7200,
    });
    expect(hex(map)).toBe('000100009c409c4000001c20');
    expect(decodeNatPmpRequest(map)).toEqual({
      kind: 'map',
      protocol: 'udp',
      internalPort: 40_000,
      suggestedExternalPort: 40_000,
      lifetimeS: 7200,
    });
    expect(isNatPmp(map)).toBe(true);
    expect(isPcp(map)).toBe(false);
  });

  it('round-trips both responses', () => {
    const address = {
      kind: 'external-address',
      resultCode: 0,
      epochS: 99,
      externalAddress: '198.18.9.1',
    } as const;
    const bytes = encodeNatPmpResponse(address);
    expect(hex(bytes)).toBe('0080000000000063c6120901');
    expect(decodeNatPmpResponse(bytes)).toEqual(address);
    const mapped = {
      kind: 'map',
      protocol: 'tcp',
      resultCode: NatPmpResult.outOfResources,
      epochS: 7,
      internalPort: 8000,
      externalPort: 0,
      lifetimeS: 0,
    } as const;
    expect(decodeNatPmpResponse(encodeNatPmpResponse(mapped))).toEqual(mapped);
  });

  it('refuses a short, foreign or request-shaped message', () => {
    expect(() => decodeNatPmpResponse(Uint8Array.of(0, 128))).toThrow(/shorter than 8/);
    expect(() => decodeNatPmpResponse(Uint8Array.of(2, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toThrow(
      /version 2/,
    );
    expect(() => decodeNatPmpResponse(new Uint8Array(16))).toThrow(/not a response/);
    expect(() => decodeNatPmpResponse(Uint8Array.of(0, 129, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toThrow(
      /16 bytes/,
    );
    expect(() => decodeNatPmpRequest(Uint8Array.of(0, 1, 0, 0))).toThrow(/12 bytes/);
    expect(() => decodeNatPmpRequest(Uint8Array.of(0, 9))).toThrow(/unknown opcode 9/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 32 }), (bytes) => {
        for (const decode of [decodeNatPmpRequest, decodeNatPmpResponse]) {
          try {
            decode(bytes);
          } catch (error) {
            if (!(error instanceof DecodeError)) throw error;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
