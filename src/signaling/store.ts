/**
 * What server nodes share (issue 24): where each user is registered (which node holds its
 * connection, its contact, NAT class and round trip), which nodes are alive and where they listen,
 * and each node's confirmed dialogs, so that a restarted node still routes their BYE. Every entry
 * expires by itself (a TTL): a node that dies leaves nothing behind for longer than its entries' lives.
 *
 * Two implementations: `MemoryStore` here (one host needs no extra server; several servers in one
 * process share one in tests) and `RedisStore` (redis-store.ts) for nodes on several hosts.
 */

import type { Clock } from '../net/clock.ts';

export interface StoredRegistration {
  readonly user: string;
  /** The node whose connection the user registered on. */
  readonly node: string;
  readonly contact: string;
  readonly natClass?: string;
  readonly rttMs?: number;
  readonly expiresAtMs: number;
  /**
   * Set by a node that restarted and found this registration of its own: the connection it names
   * is gone. Cleared when the gateway registers again.
   */
  readonly stale?: boolean;
}

export interface StoredParty {
  readonly user: string;
  /** The node the party's connection is on, when not the dialog's own node. */
  readonly node?: string;
}

export interface StoredDialog {
  readonly callId: string;
  readonly caller: StoredParty;
  readonly callee: StoredParty;
  readonly startedAtMs: number;
}

export interface StoredNode {
  readonly id: string;
  /** Where other nodes reach its SIP listener. */
  readonly address: string;
  readonly port: number;
}

export interface SignalingStore {
  /** Writes `registration`; it expires at its `expiresAtMs`. */
  putRegistration(registration: StoredRegistration): Promise<void>;
  getRegistration(user: string): Promise<StoredRegistration | undefined>;
  /** Removes `user`'s registration if `node` still holds it (a newer one elsewhere stays). */
  removeRegistration(user: string, node: string): Promise<void>;
  /** The live registrations `node` wrote (for a restarted node to mark them stale). */
  registrationsOf(node: string): Promise<StoredRegistration[]>;
  /** Announces `node` alive for `ttlMs`. */
  putNode(node: StoredNode, ttlMs: number): Promise<void>;
  getNode(id: string): Promise<StoredNode | undefined>;
  /** Keeps `dialog` for `node` for `ttlMs` (a call longer than that is written again before). */
  putDialog(node: string, dialog: StoredDialog, ttlMs: number): Promise<void>;
  removeDialog(node: string, callId: string): Promise<void>;
  dialogsOf(node: string): Promise<StoredDialog[]>;
  /**
   * Takes a call record's key once (`ttlMs`): true the first time, false for a record already taken
   * by any node (a gateway that failed over and published again).
   */
  claimRecord(key: string, ttlMs: number): Promise<boolean>;
  /** Gives a claimed key back (the record could not be stored after all). */
  releaseRecord(key: string): Promise<void>;
  close(): Promise<void>;
}

/** Node ids appear in keys and in SIP user names. */
export const NODE_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** Registrations at most, in memory: one per account, and accounts are bounded by the config. */
const MAX_ENTRIES = 1_000_000;

interface Expiring<T> {
  readonly value: T;
  readonly expiresAtMs: number;
}

/**
 * The store in this process's memory, on the clock passed in. Entries past their time are dropped
 * when read and by a sweep every so many writes; each table is bounded.
 */
export class MemoryStore implements SignalingStore {
  readonly #registrations = new Map<string, Expiring<StoredRegistration>>();
  readonly #nodes = new Map<string, Expiring<StoredNode>>();
  readonly #dialogs = new Map<string, Map<string, Expiring<StoredDialog>>>();
  readonly #records = new Map<string, number>();
  #writes = 0;

  constructor(private readonly clock: Clock) {}

  async putRegistration(registration: StoredRegistration): Promise<void> {
    this.#sweepSometimes();
    if (this.#registrations.size >= MAX_ENTRIES && !this.#registrations.has(registration.user))
      throw new Error('registration store full');
    this.#registrations.set(registration.user, {
      value: registration,
      expiresAtMs: registration.expiresAtMs,
    });
  }

  async getRegistration(user: string): Promise<StoredRegistration | undefined> {
    return this.#live(this.#registrations, user);
  }

  async removeRegistration(user: string, node: string): Promise<void> {
    if (this.#registrations.get(user)?.value.node === node) this.#registrations.delete(user);
  }

  async registrationsOf(node: string): Promise<StoredRegistration[]> {
    const now = this.clock.epochMs();
    return [...this.#registrations.values()]
      .filter((e) => e.expiresAtMs > now && e.value.node === node)
      .map((e) => e.value);
  }

  async putNode(node: StoredNode, ttlMs: number): Promise<void> {
    this.#nodes.set(node.id, { value: node, expiresAtMs: this.clock.epochMs() + ttlMs });
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    return this.#live(this.#nodes, id);
  }

  async putDialog(node: string, dialog: StoredDialog, ttlMs: number): Promise<void> {
    this.#sweepSometimes();
    let dialogs = this.#dialogs.get(node);
    if (!dialogs) {
      dialogs = new Map();
      this.#dialogs.set(node, dialogs);
    }
    if (dialogs.size >= MAX_ENTRIES && !dialogs.has(dialog.callId)) throw new Error('dialog store full');
    dialogs.set(dialog.callId, { value: dialog, expiresAtMs: this.clock.epochMs() + ttlMs });
  }

  async removeDialog(node: string, callId: string): Promise<void> {
    this.#dialogs.get(node)?.delete(callId);
  }

  async dialogsOf(node: string): Promise<StoredDialog[]> {
    const now = this.clock.epochMs();
    return [...(this.#dialogs.get(node)?.values() ?? [])]
      .filter((e) => e.expiresAtMs > now)
      .map((e) => e.value);
  }

  async claimRecord(key: string, ttlMs: number): Promise<boolean> {
    this.#sweepSometimes();
    const now = this.clock.epochMs();
    if ((this.#records.get(key) ?? 0) > now) return false;
    if (this.#records.size >= MAX_ENTRIES) throw new Error('record keys full');
    this.#records.set(key, now + ttlMs);
    return true;
  }

  async releaseRecord(key: string): Promise<void> {
    this.#records.delete(key);
  }

  async close(): Promise<void> {}

  #live<T>(table: Map<string, Expiring<T>>, key: string): T | undefined {
    const entry = table.get(key);
    if (!entry) return undefined;
    if (entry.expiresAtMs > this.clock.epochMs()) return entry.value;
    table.delete(key);
    return undefined;
  }

  /** Every 10 000 writes, drops what has expired: the tables never hold dead entries for long. */
  #sweepSometimes(): void {
    if (++this.#writes % 10_000 !== 0) return;
    const now = this.clock.epochMs();
    for (const [key, e] of this.#registrations) if (e.expiresAtMs <= now) this.#registrations.delete(key);
    for (const [key, e] of this.#nodes) if (e.expiresAtMs <= now) this.#nodes.delete(key);
    for (const dialogs of this.#dialogs.values())
      for (const [key, e] of dialogs) if (e.expiresAtMs <= now) dialogs.delete(key);
    for (const [key, at] of this.#records) if (at <= now) this.#records.delete(key);
  }
}
