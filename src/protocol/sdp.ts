/**
 * The SC2C offer/answer body (RFC 4566 SDP, built and parsed with sdp-transform). It carries:
 * - the public endpoint the peer must punch to (c= and the m= port: predicted, or STUN-observed);
 * - the private host candidate (a=candidate ... typ host), for peers behind the same NAT;
 * - ICE-style credentials (a=ice-ufrag / a=ice-pwd): every punch packet is a STUN Binding request
 *   carrying MESSAGE-INTEGRITY under the peer's password, so a stray host cannot take the path;
 * - the observed NAT profile, the traversal mode and how the port was obtained (x-sc2c-* attributes).
 */
import * as sdpTransform from 'sdp-transform';
import { type Endpoint, isIpv4 } from '../net/address.ts';
import { DecodeError } from './decode-error.ts';
import { SHA256_FINGERPRINT } from './dtls/certificate.ts';
import { MAX_BIRTHDAY_PORTS, MAX_PIN_WINDOW } from './sc2c-info.ts';

/**
 * `sc2c-ttl` (issue 21, seed 002): SC2C's prediction without the server's go; each side's first
 * checks leave with a TTL that crosses its own NAT and expires before the peer's (priming).
 */
export const TRAVERSAL_MODES = ['sc2c', 'sc2c-naive', 'c2c', 'stun', 'sc2c-ttl'] as const;
export type TraversalMode = (typeof TRAVERSAL_MODES)[number];
export const PORT_SOURCES = ['exact', 'predicted', 'pinned', 'stun', 'unpredictable', 'mapped'] as const;
/**
 * How the advertised public port was obtained; `pinned`: mapped ahead of the punch (traversal/pin.ts);
 * `mapped`: granted by our router on request (PCP or NAT-PMP, issue 20), open to the peer's checks.
 */
export type PortSource = (typeof PORT_SOURCES)[number];

export type MediaDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
const DIRECTIONS: readonly MediaDirection[] = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];

export interface Codec {
  readonly payloadType: number;
  /** The rtpmap encoding name, e.g. `H264`, `opus`, `PCMU`. */
  readonly name: string;
  readonly clockRate: number;
  readonly channels?: number;
}

/** One m= line. Video and audio share the punched port (bundled, RFC 8843 style). */
export interface MediaLine {
  readonly kind: 'video' | 'audio';
  readonly codecs: readonly Codec[];
  readonly direction: MediaDirection;
}

/** What a description without media lines means: H.264 video both ways (traversal-only calls). */
export const DEFAULT_MEDIA: readonly MediaLine[] = [
  { kind: 'video', codecs: [{ payloadType: 96, name: 'H264', clockRate: 90_000 }], direction: 'sendrecv' },
];

export interface CallDescription {
  readonly publicEndpoint: Endpoint;
  readonly hostEndpoint?: Endpoint;
  readonly ufrag: string;
  readonly pwd: string;
  /** e.g. `address-and-port-dependent/address-and-port-dependent/sequential+1`. */
  readonly nat: string;
  readonly mode: TraversalMode;
  readonly portSource: PortSource;
  /** True when RTCP shares the RTP port (RFC 5761). */
  readonly rtcpMux: boolean;
  /** The public RTCP endpoint (a=rtcp), when a separate RTCP port is offered or used. */
  readonly rtcpEndpoint?: Endpoint;
  /** The m= lines; `DEFAULT_MEDIA` when omitted. */
  readonly media?: readonly MediaLine[];
  /** Our TURN relayed address (an ICE `typ relay` candidate): where the peer sends when no direct path opens. */
  readonly relayEndpoint?: Endpoint;
  /**
   * DTLS-SRTP (RFC 5763): the SHA-256 fingerprint of our DTLS certificate (RFC 8122
   * `a=fingerprint:sha-256`) and our DTLS role (`a=setup`). Absent: plain RTP (`RTP/AVP`).
   */
  readonly dtls?: { readonly fingerprint: string; readonly setup: DtlsSetup };
  /**
   * `a=x-sc2c-pin`. `capable`: this side can pin its mapping (sequential, per-destination, not
   * IPS). A number: the port is pinned (`portSource: 'pinned'`) and the peer sends that many checks.
   */
  readonly pin?: 'capable' | number;
  /**
   * `a=x-sc2c-birthday:N`: this side's NAT allocates at random and it opened N mappings toward the
   * peer's observed endpoint; the peer probes random ports (traversal/birthday.ts).
   */
  readonly birthday?: number;
  /**
   * Issue 21: our TCP candidate for a simultaneous open, an RFC 6544 `tcptype so` candidate (the
   * m= line stays UDP: RFC 4145's a=setup already says our DTLS role, RFC 5763), and how its port
   * was found (`a=x-sc2c-tcp`).
   */
  readonly tcp?: { readonly endpoint: Endpoint; readonly source: TcpSource };
  /** `a=x-sc2c-udp:blocked`: no UDP leaves our network (STUN over UDP never answered). */
  readonly udpBlocked?: boolean;
  /** `a=x-sc2c-transport:tcp`: this side asks for a TCP direct path only (`--transport tcp`). */
  readonly transport?: 'tcp';
}

export const TCP_SOURCES = ['preserved', 'predicted'] as const;
export type TcpSource = (typeof TCP_SOURCES)[number];

/** RFC 4145 §4 as RFC 5763 §5 uses it: the offerer says actpass, the answerer picks. */
export type DtlsSetup = 'actpass' | 'active' | 'passive';
const SETUPS: readonly DtlsSetup[] = ['actpass', 'active', 'passive'];

export function encodeSdp(description: CallDescription, sessionId: number): string {
  const d = description;
  const candidates = [
    {
      foundation: '1',
      component: 1,
      transport: 'UDP',
      priority: 1694498815,
      ip: d.publicEndpoint.address,
      port: d.publicEndpoint.port,
      type: 'srflx',
    },
  ];
  if (d.hostEndpoint) {
    candidates.push({
      foundation: '2',
      component: 1,
      transport: 'UDP',
      priority: 2130706431,
      ip: d.hostEndpoint.address,
      port: d.hostEndpoint.port,
      type: 'host',
    });
  }
  if (d.relayEndpoint) {
    candidates.push({
      foundation: '3',
      component: 1,
      transport: 'UDP',
      priority: 16777215,
      ip: d.relayEndpoint.address,
      port: d.relayEndpoint.port,
      type: 'relay',
    });
  }
  if (d.tcp) {
    candidates.push({
      foundation: '4',
      component: 1,
      transport: 'TCP',
      // RFC 6544 §4.2: below the UDP candidates of the same type.
      priority: 1694498815 - 1024,
      ip: d.tcp.endpoint.address,
      port: d.tcp.endpoint.port,
      type: 'srflx',
      tcptype: 'so',
    } as (typeof candidates)[number]);
  }
  const lines = d.media ?? DEFAULT_MEDIA;
  return sdpTransform.write({
    version: 0,
    origin: {
      username: '-',
      sessionId,
      sessionVersion: 1,
      netType: 'IN',
      ipVer: 4,
      address: d.publicEndpoint.address,
    },
    name: 'sc2c',
    timing: { start: 0, stop: 0 },
    connection: { version: 4, ip: d.publicEndpoint.address },
    iceUfrag: d.ufrag,
    icePwd: d.pwd,
    ...(d.dtls ? { fingerprint: { type: 'sha-256', hash: d.dtls.fingerprint }, setup: d.dtls.setup } : {}),
    invalid: [
      { value: `x-sc2c-nat:${d.nat}` },
      { value: `x-sc2c-mode:${d.mode}` },
      { value: `x-sc2c-port:${d.portSource}` },
      ...(d.pin !== undefined ? [{ value: `x-sc2c-pin:${d.pin}` }] : []),
      ...(d.birthday !== undefined ? [{ value: `x-sc2c-birthday:${d.birthday}` }] : []),
      ...(d.tcp ? [{ value: `x-sc2c-tcp:${d.tcp.source}` }] : []),
      ...(d.udpBlocked ? [{ value: 'x-sc2c-udp:blocked' }] : []),
      ...(d.transport ? [{ value: `x-sc2c-transport:${d.transport}` }] : []),
    ],
    ...(lines.length > 1 ? { groups: [{ type: 'BUNDLE', mids: lines.map((l) => l.kind).join(' ') }] } : {}),
    media: lines.map((line, index) => ({
      type: line.kind,
      port: d.publicEndpoint.port,
      // RFC 5764 §8: DTLS-SRTP media is UDP/TLS/RTP/SAVP.
      protocol: d.dtls ? 'UDP/TLS/RTP/SAVP' : 'RTP/AVP',
      payloads: line.codecs.map((c) => c.payloadType).join(' '),
      rtp: line.codecs.map((c) => ({
        payload: c.payloadType,
        codec: c.name,
        rate: c.clockRate,
        ...(c.channels ? { encoding: c.channels } : {}),
      })),
      fmtp: line.codecs
        .filter((c) => c.name.toUpperCase() === 'H264')
        .map((c) => ({ payload: c.payloadType, config: 'packetization-mode=1' })),
      direction: line.direction,
      mid: line.kind,
      ...(d.rtcpMux ? { rtcpMux: 'rtcp-mux' as const } : {}),
      ...(d.rtcpEndpoint
        ? { rtcp: { port: d.rtcpEndpoint.port, netType: 'IN', ipVer: 4, address: d.rtcpEndpoint.address } }
        : {}),
      // Candidates once: every line shares the port.
      ...(index === 0 ? { candidates } : {}),
    })),
  } as sdpTransform.SessionDescription);
}

export function decodeSdp(text: string): CallDescription {
  if (text.length > 16_384) throw new DecodeError('sdp', 0, 'SDP longer than 16 KiB');
  let parsed: sdpTransform.SessionDescription;
  try {
    parsed = sdpTransform.parse(text);
  } catch (error) {
    throw new DecodeError('sdp', 0, `unparseable SDP: ${(error as Error).message}`);
  }
  const media = parsed.media?.[0];
  const address = media?.connection?.ip ?? parsed.connection?.ip;
  if (media?.type !== 'video') throw new DecodeError('sdp', 0, 'no m=video line');
  if (!address || !isIpv4(address)) throw new DecodeError('sdp', 0, 'no IPv4 c= address');
  if (!(media.port > 0 && media.port < 65536))
    throw new DecodeError('sdp', 0, `bad media port ${media.port}`);
  const ufrag = media.iceUfrag ?? parsed.iceUfrag;
  const pwd = media.icePwd ?? parsed.icePwd;
  if (!ufrag || !pwd || pwd.length < 22)
    throw new DecodeError('sdp', 0, 'missing a=ice-ufrag or a=ice-pwd (at least 22 characters, RFC 8839)');
  const extra = new Map<string, string>();
  for (const { value: raw } of [...(parsed.invalid ?? []), ...(media.invalid ?? [])]) {
    // sdp-transform turns a numeric-looking line into a number (found by the fuzzer).
    const value = String(raw);
    const colon = value.indexOf(':');
    if (value.startsWith('x-sc2c-') && colon > 0) extra.set(value.slice(0, colon), value.slice(colon + 1));
  }
  const mode = extra.get('x-sc2c-mode') ?? 'sc2c';
  if (!(TRAVERSAL_MODES as readonly string[]).includes(mode))
    throw new DecodeError('sdp', 0, `unknown x-sc2c-mode '${mode}'`);
  const portSource = extra.get('x-sc2c-port') ?? 'exact';
  if (!(PORT_SOURCES as readonly string[]).includes(portSource))
    throw new DecodeError('sdp', 0, `unknown x-sc2c-port '${portSource}'`);
  const pinText = extra.get('x-sc2c-pin');
  let pin: CallDescription['pin'];
  if (pinText === 'capable') pin = 'capable';
  else if (pinText !== undefined) {
    pin = /^\d{1,2}$/.test(pinText) ? Number(pinText) : 0;
    if (pin < 1 || pin > MAX_PIN_WINDOW)
      throw new DecodeError('sdp', 0, `x-sc2c-pin must be 'capable' or 1..${MAX_PIN_WINDOW}`);
  }
  if ((portSource === 'pinned') !== (typeof pin === 'number'))
    throw new DecodeError('sdp', 0, 'a pinned port needs x-sc2c-pin with its window, and only it');
  const birthdayText = extra.get('x-sc2c-birthday');
  const birthday =
    birthdayText === undefined ? undefined : /^\d{1,4}$/.test(birthdayText) ? Number(birthdayText) : 0;
  if (birthday !== undefined && (birthday < 1 || birthday > MAX_BIRTHDAY_PORTS))
    throw new DecodeError('sdp', 0, `x-sc2c-birthday must be 1..${MAX_BIRTHDAY_PORTS}`);
  const host = media.candidates?.find((c) => c.type === 'host' && isIpv4(c.ip));
  const relay = media.candidates?.find(
    (c) => c.type === 'relay' && isIpv4(c.ip) && c.port > 0 && c.port < 65536,
  );
  const tcpCandidate = media.candidates?.find(
    (c) =>
      String(c.transport).toUpperCase() === 'TCP' &&
      c.tcptype === 'so' &&
      isIpv4(c.ip) &&
      c.port > 0 &&
      c.port < 65536,
  );
  const tcpSource = extra.get('x-sc2c-tcp');
  if (tcpSource !== undefined && !(TCP_SOURCES as readonly string[]).includes(tcpSource))
    throw new DecodeError('sdp', 0, `unknown x-sc2c-tcp '${tcpSource}'`);
  const transport = extra.get('x-sc2c-transport');
  if (transport !== undefined && transport !== 'tcp')
    throw new DecodeError('sdp', 0, `unknown x-sc2c-transport '${transport}'`);
  const lines = parsed.media.slice(0, 8).flatMap((m): MediaLine[] => {
    if (m.type !== 'video' && m.type !== 'audio') return [];
    const codecs = (m.rtp ?? []).slice(0, 32).map((r) => ({
      payloadType: r.payload,
      name: r.codec,
      clockRate: r.rate ?? 0,
      ...(r.encoding ? { channels: Number(r.encoding) } : {}),
    }));
    const direction = DIRECTIONS.includes(m.direction as MediaDirection)
      ? (m.direction as MediaDirection)
      : 'sendrecv';
    return [{ kind: m.type, codecs, direction }];
  });
  const fingerprint = media.fingerprint ?? parsed.fingerprint;
  const setup = media.setup ?? parsed.setup;
  // sdp-transform turns numeric-looking fields into numbers (the fuzzer found `m=video 200 0 …`).
  const protocol = String(media.protocol ?? '');
  let dtls: CallDescription['dtls'];
  if (fingerprint || setup || protocol.includes('SAVP')) {
    if (String(fingerprint?.type ?? '').toLowerCase() !== 'sha-256')
      throw new DecodeError('sdp', 0, 'DTLS-SRTP needs a=fingerprint:sha-256');
    const hash = String(fingerprint?.hash ?? '').toUpperCase();
    if (!SHA256_FINGERPRINT.test(hash)) throw new DecodeError('sdp', 0, 'a=fingerprint is not 32 hex pairs');
    if (!SETUPS.includes(setup as DtlsSetup))
      throw new DecodeError('sdp', 0, 'DTLS-SRTP needs a=setup:actpass, active or passive');
    dtls = { fingerprint: hash, setup: setup as DtlsSetup };
  }
  return {
    publicEndpoint: { address, port: media.port },
    hostEndpoint: host ? { address: host.ip, port: host.port } : undefined,
    ufrag,
    pwd,
    nat: extra.get('x-sc2c-nat') ?? 'unknown',
    mode: mode as TraversalMode,
    portSource: portSource as PortSource,
    ...(pin !== undefined ? { pin } : {}),
    ...(birthday !== undefined ? { birthday } : {}),
    rtcpMux: media.rtcpMux === 'rtcp-mux',
    rtcpEndpoint:
      media.rtcp && media.rtcp.port > 0 && media.rtcp.port < 65536
        ? {
            address: media.rtcp.address && isIpv4(media.rtcp.address) ? media.rtcp.address : address,
            port: media.rtcp.port,
          }
        : undefined,
    media: lines,
    ...(relay ? { relayEndpoint: { address: relay.ip, port: relay.port } } : {}),
    ...(dtls ? { dtls } : {}),
    ...(tcpCandidate
      ? {
          tcp: {
            endpoint: { address: tcpCandidate.ip, port: tcpCandidate.port },
            source: (tcpSource ?? 'predicted') as TcpSource,
          },
        }
      : {}),
    ...(extra.get('x-sc2c-udp') === 'blocked' ? { udpBlocked: true } : {}),
    ...(transport === 'tcp' ? { transport: 'tcp' as const } : {}),
  };
}
