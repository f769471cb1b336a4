/**
 * What the natcheck client needs from its helper on the public side besides STUN answers. In the
 * virtual network the helper is in-process; in the kernel lab it is a process in the server
 * namespace reached over a control connection.
 */
import type { Endpoint } from '../../net/address.ts';

export interface NatcheckHelperControl {
  /** Primary STUN endpoint (address A, port 1). */
  readonly primary: Endpoint;
  /** Alternate STUN endpoint (address B, port 2). */
  readonly alternate: Endpoint;
  /**
   * Sends one unsolicited datagram from the alternate endpoint to each target and reports how many
   * answered with ICMP port-unreachable within `waitMs`.
   */
  knock(targets: readonly Endpoint[], waitMs: number): Promise<{ icmpReplies: number }>;
  /** Stops (false) or resumes (true) answering on one STUN endpoint. */
  setListening(endpoint: Endpoint, listening: boolean): Promise<void>;
}
