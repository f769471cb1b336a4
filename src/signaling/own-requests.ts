/**
 * Requests the server sends on its own (OPTIONS to measure a round trip, the go INFO, a BYE or
 * CANCEL when a party vanished), matched to their answers by Via branch. An answer counts only
 * from the connection the request went out on.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { SipResponse } from '../protocol/sip/message.ts';
import { topBranch } from './request-checks.ts';
import { newBranch, type SipConnection } from './sip-connection.ts';

/** How long the server waits for an answer to a request of its own. */
const OWN_REQUEST_TIMEOUT_MS = 2000;

export interface OwnRequestsInit {
  readonly clock: Clock;
  readonly realm: string;
  /** Our address for the Via header. */
  readonly local: () => Endpoint;
  /** The user registered on a connection, for the Request-URI and To. */
  readonly userOf: (connection: SipConnection) => string | undefined;
}

export class OwnRequests {
  readonly #pending = new Map<string, { connection: SipConnection; resolve: (r: SipResponse) => void }>();
  #cseq = 1;

  constructor(private readonly init: OwnRequestsInit) {}

  /** Sends `method` on `connection`; resolves with its final response, rejects after 2 s. */
  send(
    connection: SipConnection,
    method: string,
    callId: string,
    extra: [string, string][] = [],
    body = '',
  ): Promise<SipResponse> {
    const branch = newBranch();
    const user = this.init.userOf(connection) ?? 'peer';
    const { realm } = this.init;
    const local = this.init.local();
    connection.send({
      kind: 'request',
      method,
      uri: `sip:${user}@${realm}`,
      headers: [
        ['Via', `SIP/2.0/TCP ${local.address}:${local.port};branch=${branch}`],
        ['From', `<sip:sc2c@${realm}>;tag=server`],
        ['To', `<sip:${user}@${realm}>`],
        ['Call-ID', callId],
        ['CSeq', `${this.#cseq++} ${method}`],
        ['Max-Forwards', '70'],
        ...extra,
      ],
      body,
    });
    return new Promise((resolve, reject) => {
      const timer = this.init.clock.setTimeout(() => {
        this.#pending.delete(branch);
        reject(new Error(`${method} to ${connection.stream.remote.address} timed out`));
      }, OWN_REQUEST_TIMEOUT_MS);
      this.#pending.set(branch, {
        connection,
        resolve: (response) => {
          timer.clear();
          resolve(response);
        },
      });
    });
  }

  /**
   * Takes `response` if it answers one of our requests: 'taken', 'foreign' (ours, but from another
   * connection: dropped), or 'not-ours'.
   */
  take(connection: SipConnection, response: SipResponse): 'taken' | 'foreign' | 'not-ours' {
    const branch = topBranch(response);
    const pending = branch ? this.#pending.get(branch) : undefined;
    if (!pending) return 'not-ours';
    if (pending.connection !== connection) return 'foreign';
    if (response.status >= 200) {
      this.#pending.delete(branch!);
      pending.resolve(response);
    }
    return 'taken';
  }

  /** Forgets what `connection` owed (its timers still reject the waiting promises). */
  forget(connection: SipConnection): void {
    for (const [branch, pending] of this.#pending)
      if (pending.connection === connection) this.#pending.delete(branch);
  }
}
