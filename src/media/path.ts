/** The punched media path every media object sends on, and the RTP clock helpers they share. */
import type { Endpoint } from '../net/address.ts';
import type { UdpSocket } from '../net/types.ts';

export interface MediaPath {
  readonly socket: UdpSocket;
  readonly remote: Endpoint;
  /** A separate RTCP pair when rtcp-mux was declined. */
  readonly rtcp?: { readonly socket: UdpSocket; readonly remote: Endpoint };
}

export function rtcpOf(path: MediaPath): { socket: UdpSocket; remote: Endpoint } {
  return path.rtcp ?? { socket: path.socket, remote: path.remote };
}

/** A random 32-bit SSRC (RFC 3550 §8.1 wants it random). */
export function randomSsrc(random: () => number = Math.random): number {
  return Math.floor(random() * 0xffffffff) >>> 0;
}

/** Counters every sender and receiver keeps; a snapshot is a plain object for JSON. */
export interface StreamCounters {
  packets: number;
  bytes: number;
  frames: number;
  keyframes: number;
}

export const emptyCounters = (): StreamCounters => ({ packets: 0, bytes: 0, frames: 0, keyframes: 0 });
