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

export const TRAVERSAL_MODES = ['sc2c', 'sc2c-naive', 'c2c', 'stun'] as const;
export type TraversalMode = (typeof TRAVERSAL_MODES)[number];
export type PortSource = 'exact' | 'predicted' | 'stun' | 'unpredictable';

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
}

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
    invalid: [
      { value: `x-sc2c-nat:${d.nat}` },
      { value: `x-sc2c-mode:${d.mode}` },
      { value: `x-sc2c-port:${d.portSource}` },
    ],
    media: [
      {
        type: 'video',
        port: d.publicEndpoint.port,
        protocol: 'RTP/AVP',
        payloads: '96',
        rtp: [{ payload: 96, codec: 'H264', rate: 90000 }],
        fmtp: [{ payload: 96, config: 'packetization-mode=1' }],
        ...(d.rtcpMux ? { rtcpMux: 'rtcp-mux' as const } : {}),
        ...(d.rtcpEndpoint
          ? { rtcp: { port: d.rtcpEndpoint.port, netType: 'IN', ipVer: 4, address: d.rtcpEndpoint.address } }
          : {}),
        candidates,
      },
    ],
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
  for (const { value } of [...(parsed.invalid ?? []), ...(media.invalid ?? [])]) {
    const colon = value.indexOf(':');
    if (value.startsWith('x-sc2c-') && colon > 0) extra.set(value.slice(0, colon), value.slice(colon + 1));
  }
  const mode = extra.get('x-sc2c-mode') ?? 'sc2c';
  if (!(TRAVERSAL_MODES as readonly string[]).includes(mode))
    throw new DecodeError('sdp', 0, `unknown x-sc2c-mode '${mode}'`);
  const host = media.candidates?.find((c) => c.type === 'host' && isIpv4(c.ip));
  return {
    publicEndpoint: { address, port: media.port },
    hostEndpoint: host ? { address: host.ip, port: host.port } : undefined,
    ufrag,
    pwd,
    nat: extra.get('x-sc2c-nat') ?? 'unknown',
    mode: mode as TraversalMode,
    portSource: (extra.get('x-sc2c-port') as PortSource | undefined) ?? 'exact',
    rtcpMux: media.rtcpMux === 'rtcp-mux',
    rtcpEndpoint:
      media.rtcp && media.rtcp.port > 0 && media.rtcp.port < 65536
        ? {
            address: media.rtcp.address && isIpv4(media.rtcp.address) ? media.rtcp.address : address,
            port: media.rtcp.port,
          }
        : undefined,
  };
}
