/**
 * What the server's parts (registrations.ts, invites.ts) share of it: its clock, counters, user
 * table, registrations, dialogs, links to other nodes, store and settings.
 */
import type { Clock } from '../net/clock.ts';
import type { Accounts } from './accounts.ts';
import type { DialogTable } from './dialogs.ts';
import type { NodeLinks } from './node-links.ts';
import type { Registrar } from './registrar.ts';
import type { SignalingCounters } from './server-init.ts';
import type { SipConnection } from './sip-connection.ts';
import type { SignalingStore } from './store.ts';
import type { CredentialIssuer } from './turn-credentials.ts';

export interface ServerParts {
  readonly clock: Clock;
  readonly counters: SignalingCounters;
  readonly realm: string;
  readonly accounts: Accounts;
  readonly registrar: Registrar<SipConnection>;
  readonly dialogs: DialogTable<SipConnection>;
  readonly links: NodeLinks;
  readonly store?: SignalingStore;
  /** This node's id in the store. */
  readonly node: string;
  readonly turnCredentials?: CredentialIssuer;
  readonly log: (line: string, level?: 'info' | 'warn', fields?: Record<string, unknown>) => void;
}
