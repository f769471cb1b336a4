/**
 * Requests that ask the server for state or give it some, outside any call: a fetch (SUBSCRIBE with
 * `Expires: 0`, issue 22) and a call record (PUBLISH, issue 6). Only from a registered user.
 */
import { header, type SipRequest } from '../protocol/sip/message.ts';
import type { OwnRequests } from './own-requests.ts';
import type { SignalingServerInit } from './server-init.ts';
import { quoteWire, type SipConnection } from './sip-connection.ts';

/** SIP `Event` of the PUBLISH that carries a call record from a gateway to the server (issue 6). */
export const CALL_RECORD_EVENT = 'sc2c-call-record';
/** Fetches answered at once per connection, at most. */
const MAX_FETCHES = 4;

export interface StateRequestsInit {
  /** The user registered on `connection`, if any. */
  readonly userOf: (connection: SipConnection) => string | undefined;
  readonly own: OwnRequests;
  readonly fetchable: SignalingServerInit['fetchable'];
  readonly onCallRecord: SignalingServerInit['onCallRecord'];
  readonly log: (line: string) => void;
}

export class StateRequests {
  /** Fetches being answered per connection. */
  readonly #fetching = new Map<SipConnection, number>();

  constructor(private readonly init: StateRequestsInit) {}

  forget(connection: SipConnection): void {
    this.#fetching.delete(connection);
  }

  /**
   * Issue 22: a fetch of state (RFC 6665 §4.4.3): SUBSCRIBE with `Expires: 0`, answered 200 and one
   * NOTIFY whose `Subscription-State` is `terminated`. Only registered users; a subscription that
   * asks to last is granted as a fetch all the same (`Expires: 0` in the 200, §4.2.1.1 lets the
   * notifier shorten it).
   */
  subscribe(connection: SipConnection, request: SipRequest): void {
    const user = this.init.userOf(connection);
    if (!user) {
      connection.respond(request, 403, [['Warning', '399 sc2c "not registered"']]);
      return;
    }
    const event = (header(request, 'Event') ?? '').split(';')[0]!.trim();
    const fetch = this.init.fetchable?.get(event);
    if (!fetch) {
      connection.respond(request, 489, [
        ['Allow-Events', [...(this.init.fetchable?.keys() ?? [])].join(', ')],
      ]);
      return;
    }
    const inFlight = this.#fetching.get(connection) ?? 0;
    if (inFlight >= MAX_FETCHES) {
      connection.respond(request, 503, [['Retry-After', '1']]);
      return;
    }
    this.#fetching.set(connection, inFlight + 1);
    connection.respond(request, 200, [['Expires', '0']]);
    const callId = header(request, 'Call-ID')!;
    fetch(user)
      .then((state) =>
        this.init.own.send(
          connection,
          'NOTIFY',
          callId,
          [
            ['Event', event],
            ['Subscription-State', 'terminated;reason=timeout'],
            ['Content-Type', 'application/json'],
          ],
          JSON.stringify(state),
        ),
      )
      .catch((error: Error) =>
        this.init.log(`fetch of ${event} by ${user} failed: ${quoteWire(error.message)}`),
      )
      .finally(() => {
        const left = (this.#fetching.get(connection) ?? 1) - 1;
        if (left > 0) this.#fetching.set(connection, left);
        else this.#fetching.delete(connection);
      });
  }

  /** A call record from a registered gateway (RFC 3903 PUBLISH, our event package). */
  publish(connection: SipConnection, request: SipRequest): void {
    const user = this.init.userOf(connection);
    if (!user) {
      connection.respond(request, 403);
      return;
    }
    if (header(request, 'Event') !== CALL_RECORD_EVENT || !this.init.onCallRecord) {
      connection.respond(request, 489);
      return;
    }
    this.init.onCallRecord(request.body, user).then(
      () => connection.respond(request, 200),
      (error: Error) => {
        this.init.log(`call record from ${user} refused: ${quoteWire(error.message)}`);
        connection.respond(request, 400, [
          ['Warning', `399 sc2c "${error.message.replace(/["\r\n\\]/g, "'")}"`],
        ]);
      },
    );
  }
}
