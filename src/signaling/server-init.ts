/** `SignalingServer`'s options, components and counters. */

import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import type { RecentBindings } from '../traversal/recent-bindings.ts';
import type { AccountSpec, Accounts } from './accounts.ts';
import type { DialogTableInit } from './dialogs.ts';
import type { SignalingStore } from './store.ts';
import type { ThrottleInit } from './throttle.ts';
import type { CredentialIssuer } from './turn-credentials.ts';

export interface SignalingLimits {
  /** Connections at once. Default 10 000; more are closed on accept. */
  readonly maxConnections?: number;
  /** Connections from one source address. Default 256: a site's gateways share its NAT's address. */
  readonly maxConnectionsPerSource?: number;
  /** A connection that has not registered within this is closed. Default 10 000 ms. */
  readonly unregisteredIdleMs?: number;
  /** A started message must arrive whole within this. Default 10 000 ms. */
  readonly messageTimeoutMs?: number;
  /** Sync requests per dialog: a second's worth each second, a burst of 4 (three punch attempts and a retry). */
  readonly syncsPerSecond?: number;
  /** How long a party whose connection dropped mid-call may take to come back before the other gets a BYE. Default 10 000 ms. */
  readonly partyGraceMs?: number;
}

export interface SignalingServerInit {
  readonly listen: { readonly address?: string; readonly port: number };
  /** Also listen for SIP over TLS (RFC 3261 §26.2) with this PEM certificate and key. */
  readonly tls?: { readonly port: number; readonly cert: string; readonly key: string };
  readonly realm: string;
  /**
   * Accounts, or a plain record of them (read with `Object.entries`; users given as a bare password
   * may be called by anyone registered: tests and simulations). Config files give access lists.
   */
  readonly users: Accounts | Readonly<Record<string, AccountSpec>>;
  /** Default 20 000 ms (see `CoordinatorInit.rttRefreshMs`). */
  readonly rttRefreshMs?: number;
  /**
   * The server's log: registrations, calls (start, end) and every refusal. `level` is `warn` for
   * refusals and drops, `info` for the normal course; `fields` carry the same facts for JSON logs.
   */
  readonly log?: (line: string, level?: 'info' | 'warn', fields?: Record<string, unknown>) => void;
  /**
   * Where a registered gateway's PUBLISH with `Event: sc2c-call-record` goes (its body and the
   * publishing user). Resolves once the record is stored (the 200 promises durability); throws to
   * refuse it (400 with the reason). Without it, such a PUBLISH gets 489 Bad Event.
   */
  readonly onCallRecord?: (body: string, user: string) => Promise<void>;
  /**
   * Issue 22: state a registered gateway may fetch (RFC 6665 §4.4.3: a SUBSCRIBE with `Expires: 0`,
   * answered 200 and one NOTIFY carrying the state). Keyed by event package (`x-sc2c-cameras`,
   * `x-sc2c-report`); each resolves to a JSON body for the fetching user, or throws to send a 500.
   * An event not here gets 489 Bad Event.
   */
  readonly fetchable?: ReadonlyMap<string, (user: string) => Promise<unknown>>;
  /**
   * Issue short-lived TURN credentials (REST form) under this secret: one in the 200 to each
   * REGISTER, one in each INVITE forwarded to the called party. Without it, none are issued and
   * gateways use their long-term credentials.
   */
  readonly turnCredentials?: CredentialIssuer;
  readonly limits?: SignalingLimits;
  /** Failed-login throttle per source address. Default 5 failures in 30 s. */
  readonly throttle?: ThrottleInit;
  readonly dialogs?: DialogTableInit;
  /**
   * The Bindings our own STUN server just answered (issue 19): a sync may name its pin by the
   * transaction ID of one, and the go then carries the port seen on it.
   */
  readonly bindings?: RecentBindings;
  /**
   * Issue 24: this node's id, under which it writes registrations and dialogs to the store. Default
   * `main`. Two nodes sharing a store need different ids.
   */
  readonly node?: string;
  /**
   * Issue 24: join the other nodes sharing the store (`components.store` is then required): calls
   * to users registered on another node go there over a link that authenticates with `secret`.
   * `advertise` is where the others reach this node (default: the listener's address, which must
   * then not be a wildcard).
   */
  readonly cluster?: {
    readonly secret: string;
    readonly advertise?: Endpoint;
    readonly heartbeatMs?: number;
    readonly nodeTtlMs?: number;
  };
}

export interface SignalingServerComponents {
  readonly network: Network;
  readonly clock: Clock;
  /**
   * Issue 24: where registrations and confirmed dialogs are also written, so that another node can
   * route to them and a restarted node gets its dialogs back. Without it, only this process knows.
   */
  readonly store?: SignalingStore;
}

/** What the server counted; every refusal and drop has its counter (issue 16). */
export interface SignalingCounters {
  registrations: number;
  authFailures: number;
  authThrottled: number;
  invites: number;
  notFound: number;
  forbiddenCalls: number;
  duplicateCallIds: number;
  foreignRequests: number;
  foreignResponses: number;
  syncs: number;
  syncsLimited: number;
  /** Pins read from our own STUN server's Bindings, and those that could not be (no such Binding in time, another address). */
  pinsObserved: number;
  pinsUnresolved: number;
  malformed: number;
  refusedRequests: number;
  connectionsRefused: number;
  idleClosed: number;
  messageTimeouts: number;
  dialogsRefused: number;
  dialogsExpired: number;
  partiesLost: number;
  /** Issue 24: calls forwarded to another node, messages that found their party unreachable, store failures. */
  forwardedCalls: number;
  unreachable: number;
  storeErrors: number;
}

/** Every counter at zero. */
export function newCounters(): SignalingCounters {
  return {
    registrations: 0,
    authFailures: 0,
    authThrottled: 0,
    invites: 0,
    notFound: 0,
    forbiddenCalls: 0,
    duplicateCallIds: 0,
    foreignRequests: 0,
    foreignResponses: 0,
    syncs: 0,
    syncsLimited: 0,
    pinsObserved: 0,
    pinsUnresolved: 0,
    malformed: 0,
    refusedRequests: 0,
    connectionsRefused: 0,
    idleClosed: 0,
    messageTimeouts: 0,
    dialogsRefused: 0,
    dialogsExpired: 0,
    partiesLost: 0,
    forwardedCalls: 0,
    unreachable: 0,
    storeErrors: 0,
  };
}
