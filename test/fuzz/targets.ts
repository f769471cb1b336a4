/**
 * Every decoder that takes bytes from the network or a config file, as a fuzz target (issue 16):
 * each decodes an input and may throw only its declared error (`DecodeError`, or `ConfigError` for
 * configs); anything else (a TypeError, a RangeError, an endless loop) is a bug. Seeds are valid
 * encodings, which the fuzzer mutates, so inputs get past the first length check.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { gatewaySchema, serverSchema } from '../../src/cli/configs.ts';
import { Fmp4Muxer } from '../../src/media/fmp4.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { DtlsEndpoint } from '../../src/path/dtls-endpoint.ts';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { createIdentity } from '../../src/protocol/dtls/certificate.ts';
import {
  decodeCertificate,
  decodeCertificateRequest,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeHandshakes,
  decodeServerHello,
  decodeServerKeyExchange,
  decodeUseSrtp,
  ExtensionType,
  HandshakeType,
} from '../../src/protocol/dtls/handshake.ts';
import { ContentType, decodeRecords } from '../../src/protocol/dtls/record.ts';
import { H264Depacketizer } from '../../src/protocol/h264-depacketize.ts';
import { parseSps } from '../../src/protocol/h264-sps.ts';
import {
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
} from '../../src/protocol/portmap/natpmp.ts';
import {
  decodePcpRequest,
  decodePcpResponse,
  encodePcpRequest,
  encodePcpResponse,
  PcpOpcode,
} from '../../src/protocol/portmap/pcp.ts';
import {
  decodeHttpResponse,
  decodeSoapResponse,
  decodeSsdpResponse,
  findWanIpService,
  parseHttpUrl,
} from '../../src/protocol/portmap/upnp.ts';
import { Deframer, frame } from '../../src/protocol/rfc4571.ts';
import { decodeRtcp, encodePli, encodeRelayMoved, encodeRr, encodeSr } from '../../src/protocol/rtcp.ts';
import { decodeRtpHeader } from '../../src/protocol/rtp.ts';
import { readStatus } from '../../src/protocol/sc2c-status.ts';
import { decodeSdp, encodeSdp } from '../../src/protocol/sdp.ts';
import { parseAuthParams, parseNameAddr } from '../../src/protocol/sip/headers.ts';
import { decodeSip, encodeSip, SipStreamParser } from '../../src/protocol/sip/message.ts';
import { SrtpSession } from '../../src/protocol/srtp/srtp.ts';
import { decodeStun, encodeStun, StunClass, StunMethod } from '../../src/protocol/stun/message.ts';
import { decodeChannelData, encodeChannelData, TurnStreamDeframer } from '../../src/protocol/stun/turn.ts';
import { splitStunStream } from '../../src/traversal/stun-tcp.ts';
import { ConfigError, parseConfig } from '../../src/util/config-file.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const CONFIG = new URL('../../config/', import.meta.url).pathname;
const TORTURE = new URL('../../../shared/sip-torture/', import.meta.url).pathname;

/** The datagrams of one real DTLS-SRTP handshake: seeds that reach every message decoder. */
function dtlsFlights(): Uint8Array[] {
  const clock = new VirtualClock();
  const a = createIdentity('a');
  const b = createIdentity('b');
  const flights: Uint8Array[] = [];
  let client!: DtlsEndpoint;
  let server!: DtlsEndpoint;
  client = new DtlsEndpoint(
    { clock },
    { role: 'client', identity: a, remoteFingerprint: b.fingerprint },
    (d) => {
      flights.push(d);
      server.handle(d);
    },
  );
  server = new DtlsEndpoint(
    { clock },
    { role: 'server', identity: b, remoteFingerprint: a.fingerprint },
    (d) => {
      flights.push(d);
      client.handle(d);
    },
  );
  server.start();
  client.start();
  client.close();
  server.close();
  return flights;
}

const BODY_DECODERS: Readonly<Record<number, (body: Uint8Array) => unknown>> = {
  [HandshakeType.clientHello]: (body) => {
    for (const e of decodeClientHello(body).extensions)
      if (e.type === ExtensionType.useSrtp) decodeUseSrtp(e.data);
  },
  [HandshakeType.serverHello]: decodeServerHello,
  [HandshakeType.certificate]: decodeCertificate,
  [HandshakeType.serverKeyExchange]: decodeServerKeyExchange,
  [HandshakeType.certificateRequest]: decodeCertificateRequest,
  [HandshakeType.certificateVerify]: decodeCertificateVerify,
  [HandshakeType.clientKeyExchange]: decodeClientKeyExchange,
};

const SRTP_KEYS = { key: new Uint8Array(16).fill(7), salt: new Uint8Array(12).fill(9) };
const srtpSession = new SrtpSession(7, SRTP_KEYS, SRTP_KEYS);

export interface FuzzTarget {
  readonly name: string;
  readonly seeds: readonly Uint8Array[];
  /** Decodes; may throw only what `allowed` accepts. */
  run(input: Uint8Array): void;
  readonly allowed: (error: unknown) => boolean;
}

const decodeErrorOnly = (error: unknown): boolean => error instanceof DecodeError;
/** x264's baseline SPS for 640x360. */
const SPS_SEED = Uint8Array.from(Buffer.from('6742c01ed900a02ff970110000030001000003003c0f162e48', 'hex'));

function torture(): Uint8Array[] {
  try {
    return readdirSync(TORTURE)
      .filter((f) => f.endsWith('.dat'))
      .map((f) => new Uint8Array(readFileSync(join(TORTURE, f))));
  } catch {
    return [];
  }
}

const INVITE = encodeSip({
  kind: 'request',
  method: 'INVITE',
  uri: 'sip:bob@sc2c.lab',
  headers: [
    ['Via', 'SIP/2.0/TCP 10.0.1.2:5060;branch=z9hG4bK776asdhds'],
    ['From', '"Alice" <sip:alice@sc2c.lab>;tag=1928301774'],
    ['To', '<sip:bob@sc2c.lab>'],
    ['Call-ID', 'a84b4c76e66710@sc2c'],
    ['CSeq', '314159 INVITE'],
    ['Content-Type', 'application/sdp'],
  ],
  body: 'v=0\r\n',
});

const SDP = encodeSdp(
  {
    publicEndpoint: { address: '198.18.1.1', port: 20_000 },
    relayEndpoint: { address: '198.18.0.10', port: 50_000 },
    ufrag: 'abcd',
    pwd: 'a'.repeat(24),
    nat: 'symmetric',
    mode: 'sc2c',
    portSource: 'predicted',
    rtcpMux: true,
    tcp: { endpoint: { address: '198.18.1.1', port: 20_001 }, source: 'predicted' },
    udpBlocked: true,
    transport: 'tcp',
  },
  1,
);

const STUN = encodeStun({
  method: StunMethod.binding,
  cls: StunClass.request,
  transactionId: new Uint8Array(12).fill(7),
  attributes: [
    { type: 0x0006, value: te.encode('bob:alice') },
    { type: 0x0008, value: new Uint8Array(20) },
  ],
});

const RTP = Uint8Array.from([0x90, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 42, 0, 1, 0, 1, 0xab, 0xcd, 0x65, 1, 2, 3]);

/** Runs every decoder of a protocol on the input; a DecodeError from one does not stop the next. */
function eachDecoder(...decoders: ((input: Uint8Array) => unknown)[]): (input: Uint8Array) => void {
  return (input) => {
    for (const decode of decoders) {
      try {
        decode(input);
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
      }
    }
  };
}

export const TARGETS: readonly FuzzTarget[] = [
  {
    name: 'sip message',
    seeds: [INVITE, ...torture()],
    run: (input) => void decodeSip(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'sip stream framing',
    seeds: [INVITE, te.encode('\r\n\r\n'), ...torture()],
    run: (input) => {
      // The same bytes whole and cut in three: framing must not depend on where TCP cuts.
      const parser = new SipStreamParser('server');
      const third = Math.max(1, Math.floor(input.byteLength / 3));
      for (let i = 0; i < input.byteLength; i += third) {
        try {
          parser.push(input.subarray(i, i + third));
        } catch (error) {
          if (parser.error !== error) throw error;
          return;
        }
      }
    },
    allowed: decodeErrorOnly,
  },
  {
    name: 'sip header values',
    seeds: [
      te.encode('"Alice" <sip:alice@sc2c.lab>;tag=1'),
      te.encode('Digest realm="x", nonce="y", qop=auth'),
    ],
    run: (input) => {
      const text = td.decode(input);
      try {
        parseNameAddr(text);
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
      }
      parseAuthParams(text);
    },
    allowed: decodeErrorOnly,
  },
  {
    name: 'sdp',
    seeds: [te.encode(SDP)],
    run: (input) => void decodeSdp(td.decode(input)),
    allowed: decodeErrorOnly,
  },
  {
    name: 'stun/turn',
    seeds: [STUN],
    run: (input) => void decodeStun(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'pcp',
    seeds: [
      encodePcpRequest({
        opcode: PcpOpcode.map,
        lifetimeS: 7200,
        clientAddress: '10.0.1.2',
        map: {
          nonce: new Uint8Array(12),
          protocol: 17,
          internalPort: 40_000,
          externalPort: 0,
          externalAddress: '0.0.0.0',
        },
        options: [{ code: 1, data: new Uint8Array(20) }],
      }),
      encodePcpResponse({ opcode: PcpOpcode.announce, resultCode: 0, lifetimeS: 0, epochS: 1, options: [] }),
    ],
    run: eachDecoder(decodePcpRequest, decodePcpResponse),
    allowed: decodeErrorOnly,
  },
  {
    name: 'nat-pmp',
    seeds: [
      encodeNatPmpRequest({
        kind: 'map',
        protocol: 'udp',
        internalPort: 1,
        suggestedExternalPort: 1,
        lifetimeS: 60,
      }),
      encodeNatPmpResponse({
        kind: 'external-address',
        resultCode: 0,
        epochS: 1,
        externalAddress: '198.18.9.1',
      }),
    ],
    run: eachDecoder(decodeNatPmpRequest, decodeNatPmpResponse),
    allowed: decodeErrorOnly,
  },
  {
    name: 'upnp',
    seeds: [
      new TextEncoder().encode(
        'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://10.0.2.1:45777/rootDesc.xml\r\n\r\n',
      ),
      new TextEncoder().encode(
        `HTTP/1.1 200 OK\r\nContent-Length: 190\r\n\r\n<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ctl/IPConn</controlURL></service></serviceList></device></root>`,
      ),
      new TextEncoder().encode(
        'HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n2f\r\n<UPnPError><errorCode>718</errorCode></UPnPError>\r\n0\r\n\r\n',
      ),
    ],
    run: eachDecoder(
      decodeSsdpResponse,
      (input) => {
        const response = decodeHttpResponse(input, true);
        if (!response) return;
        const base = { host: '10.0.2.1', port: 80, path: '/' };
        try {
          findWanIpService(response.body, base);
        } catch (error) {
          if (!(error instanceof DecodeError)) throw error;
        }
        decodeSoapResponse(response, ['NewExternalIPAddress', 'NewReservedPort']);
      },
      (input) => parseHttpUrl(new TextDecoder().decode(input), 'fuzz'),
    ),
    allowed: decodeErrorOnly,
  },
  {
    name: 'channeldata',
    seeds: [encodeChannelData(0x4001, RTP)],
    run: (input) => void decodeChannelData(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'rfc4571 framing',
    seeds: [frame(RTP), new Uint8Array([...frame(STUN), ...frame(RTP)])],
    run: (input) => {
      // Whole and cut in three, as over TCP (issue 21's direct-tcp path).
      const deframer = new Deframer(1500);
      const third = Math.max(1, Math.floor(input.byteLength / 3));
      for (let i = 0; i < input.byteLength; i += third) deframer.push(input.subarray(i, i + third));
    },
    allowed: decodeErrorOnly,
  },
  {
    // Issue 22: RTP payloads from a camera into the browser's fMP4: never a throw, never unbounded.
    name: 'h264 depacketize and fmp4 mux',
    seeds: [
      Uint8Array.of(0x7c, 0x85, 1, 2, 3),
      Uint8Array.of(0x78, 0, 4, ...SPS_SEED.subarray(0, 4), 0, 2, 0x68, 0xce),
      Uint8Array.of(0x65, 0x88, 0x84),
    ],
    run: (input) => {
      const depacketizer = new H264Depacketizer();
      const muxer = new Fmp4Muxer();
      const third = Math.max(1, Math.floor(input.byteLength / 3));
      for (let i = 0, ts = 0; i < input.byteLength; i += third, ts += 3000)
        for (const unit of depacketizer.push(input.subarray(i, i + third), ts, (i / third) % 2 === 1))
          muxer.push({ ...unit, nals: [SPS_SEED, Uint8Array.of(0x68, 0xce, 0x3c, 0x80), ...unit.nals] });
    },
    allowed: () => false,
  },
  {
    name: 'h264 sps',
    seeds: [SPS_SEED],
    run: (input) => {
      parseSps(Uint8Array.of(0x67, ...input));
    },
    allowed: decodeErrorOnly,
  },
  {
    name: 'media status body',
    seeds: [new TextEncoder().encode('{"route":"direct","transport":"udp","directBytes":1,"relayBytes":0}')],
    run: (input) => {
      readStatus(new TextDecoder().decode(input));
    },
    allowed: () => false,
  },
  {
    name: 'stun over tcp',
    seeds: [STUN, new Uint8Array([...STUN, ...STUN])],
    run: (input) => {
      const split = splitStunStream(input);
      for (const message of split?.messages ?? []) decodeStun(message);
    },
    allowed: decodeErrorOnly,
  },
  {
    name: 'turn stream framing',
    seeds: [STUN, encodeChannelData(0x4001, RTP, true)],
    run: (input) => void new TurnStreamDeframer(2048).push(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'rtp',
    seeds: [RTP],
    run: (input) => void decodeRtpHeader(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'rtcp',
    seeds: [
      encodeSr({ ssrc: 1, ntp: 1n << 40n, rtpTimestamp: 3, packetCount: 4, octetCount: 5 }),
      encodeRr(1, [
        { ssrc: 2, fractionLost: 0, packetsLost: 1, highestSequence: 3, jitter: 4, lsr: 5, dlsr: 6 },
      ]),
      encodePli(1, 2),
      encodeRelayMoved(1, { address: '198.18.0.10', port: 50_000 }, new Uint8Array(24)),
    ],
    run: (input) => void decodeRtcp(input),
    allowed: decodeErrorOnly,
  },
  {
    name: 'dtls records and handshake messages',
    seeds: dtlsFlights(),
    run: (input) => {
      for (const record of decodeRecords(input)) {
        if (record.type !== ContentType.handshake || record.epoch !== 0) continue;
        for (const message of decodeHandshakes(record.fragment)) BODY_DECODERS[message.type]?.(message.body);
      }
    },
    allowed: decodeErrorOnly,
  },
  {
    // Unprotecting never throws: a packet it cannot take is dropped and counted.
    name: 'srtp and srtcp unprotect',
    seeds: [srtpSession.protectRtp(RTP), srtpSession.protectRtcp(encodePli(1, 2))],
    run: (input) => {
      srtpSession.unprotectRtp(input);
      srtpSession.unprotectRtcp(input);
    },
    allowed: () => false,
  },
  {
    name: 'server config',
    seeds: [readFileSync(join(CONFIG, 'server.yaml'))],
    run: (input) => void parseConfig(td.decode(input), 'fuzz', serverSchema),
    allowed: (error) => error instanceof ConfigError,
  },
  {
    name: 'gateway config',
    seeds: [readFileSync(join(CONFIG, 'gateway.yaml'))],
    run: (input) => void parseConfig(td.decode(input), 'fuzz', gatewaySchema),
    allowed: (error) => error instanceof ConfigError,
  },
];

/** Random bytes, or a seed with a few bytes changed, cut, or repeated. */
export function inputs(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .tuple(
      fc.constantFrom(...seeds),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.integer({ min: 1, max: 3 }),
    )
    .map(([seed, flips, cut, repeat]) => {
      const out = new Uint8Array(seed.byteLength * repeat);
      for (let i = 0; i < repeat; i++) out.set(seed, i * seed.byteLength);
      for (const [at, value] of flips) if (out.byteLength > 0) out[at % out.byteLength] = value;
      return cut === undefined || out.byteLength === 0 ? out : out.subarray(0, cut % (out.byteLength + 1));
    });
  return fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 512 }), weight: 1 },
    { arbitrary: mutated, weight: 3 },
  );
}

/** Runs `target` on `runs` inputs; throws (with fast-check's shrunk counterexample) on a bug. */
export function fuzz(target: FuzzTarget, runs: number, seed?: number): void {
  fc.assert(
    fc.property(inputs(target.seeds), (input) => {
      try {
        target.run(input);
      } catch (error) {
        if (!target.allowed(error)) throw error;
      }
    }),
    { numRuns: runs, seed },
  );
}
