/**
 * NAT behaviour, in RFC 4787 terms, plus the two behaviours from the SC2C paper
 * (seeds/000, §2.3): Port Knocking Sensitive (PKS) and ICMP Packet Sensitive (IPS).
 */

export const MAPPING_BEHAVIOURS = [
  'endpoint-independent',
  'address-dependent',
  'address-and-port-dependent',
] as const;
export type MappingBehaviour = (typeof MAPPING_BEHAVIOURS)[number];

export const FILTERING_BEHAVIOURS = MAPPING_BEHAVIOURS;
export type FilteringBehaviour = MappingBehaviour;

export const ALLOCATION_TYPES = ['preserve-if-free', 'sequential', 'random'] as const;
export type PortAllocation =
  | { readonly type: 'preserve-if-free' }
  /** Each new session takes the previous allocation + `delta` (paper Table 2: +1 and +2). */
  | { readonly type: 'sequential'; readonly delta: number }
  | { readonly type: 'random' };

export const UNSOLICITED_REPLIES = ['drop', 'icmp-port-unreachable'] as const;
export type UnsolicitedReply = (typeof UNSOLICITED_REPLIES)[number];

export type Protocol = 'udp' | 'tcp';

/**
 * What a NAT answers to an unsolicited TCP segment (issue 21; Ford et al. §4.3, seeds/003): drop
 * it, reset it (a Linux router's own stack answers a SYN for a port it does not listen on with
 * RST), or ICMP port unreachable.
 */
export const UNSOLICITED_TCP_REPLIES = ['drop', 'rst', 'icmp-port-unreachable'] as const;
export type UnsolicitedTcpReply = (typeof UNSOLICITED_TCP_REPLIES)[number];

/** Whether TCP sessions draw from the same port counter as UDP ones, or from their own (issue 21). */
export const TCP_COUNTERS = ['shared', 'separate'] as const;
export type TcpCounter = (typeof TCP_COUNTERS)[number];

/** Port-mapping protocols a NAT's LAN side can answer (issue 20). */
export const PORT_MAPPING_SERVERS = ['pcp', 'nat-pmp', 'upnp'] as const;
export type PortMappingServer = (typeof PORT_MAPPING_SERVERS)[number];

export interface NatBehaviour {
  readonly mapping: MappingBehaviour;
  readonly filtering: FilteringBehaviour;
  readonly allocation: PortAllocation;
  /** Public ports the NAT allocates from, inclusive. */
  readonly portRange: { readonly min: number; readonly max: number };
  /** UDP mapping idle lifetime. RFC 4787 REQ-5: at least 2 min, so the default is 120 000. */
  readonly mappingLifetimeMs: number;
  /** TCP mapping idle lifetime. RFC 5382 REQ-5: at least 2 h 4 min, so the default is 7 440 000. */
  readonly tcpMappingLifetimeMs: number;
  /** RFC 4787 REQ-6: outbound traffic always refreshes; inbound refreshes only when this is set. */
  readonly refreshOnInbound: boolean;
  /** RFC 4787 REQ-9: loop back traffic sent to the NAT's own public address. */
  readonly hairpin: boolean;
  /** What the NAT answers to an inbound packet it does not forward. */
  readonly unsolicitedReply: UnsolicitedReply;
  /** What the NAT answers to an unsolicited inbound TCP segment. */
  readonly unsolicitedTcpReply: UnsolicitedTcpReply;
  /** Sequential allocation: TCP takes ports from the UDP counter (`shared`) or its own. */
  readonly tcpCounter: TcpCounter;
  /** PKS: an unsolicited inbound packet to an unmapped public port blocks ("knocks") that port. */
  readonly pks: boolean;
  /** How long a knocked port stays blocked for inbound traffic and for allocation. */
  readonly pksBlockMs: number;
  /** IPS: an inbound ICMP error for an active mapping closes it. */
  readonly ips: boolean;
  /** How long the port of a mapping closed by ICMP is not reused. */
  readonly ipsBurnMs: number;
  /**
   * Port-mapping protocols answered on the LAN side at the inside address, port 5351 (issue 20;
   * nat/port-mapping-server.ts). Default none, as most profiles in the seeds are measured without.
   */
  readonly portMapping?: readonly PortMappingServer[];
}
