/**
 * The server's dialog table: which authenticated connection is the caller and which the callee of
 * each call, and which of them owes the answer to each request the server forwarded. Pure: no I/O,
 * time passed in. Every table is bounded.
 *
 * Before this table owned its dialogs, responses were routed by Call-ID alone, so any connection
 * could inject a 200 with its own SDP into someone else's call, or end it (issue 16).
 */

import type { MediaStatus } from '../protocol/sc2c-status.ts';

export type PartyRole = 'caller' | 'callee';

export interface Party<C> {
  /**
   * The party's connection; replaced when the same user registers again on a new one. None for a
   * party of a dialog restored after a restart (issue 24) until it comes back.
   */
  connection?: C;
  readonly user: string;
  /** When its connection dropped, while it has not come back. */
  lostAtMs?: number;
  /** Issue 24: the node the party is registered on, when `connection` is a link to that node. */
  node?: string;
  /** The round trip between that node and the party, as the node last reported it. */
  hopRttMs?: number;
}

export interface Dialog<C> {
  readonly callId: string;
  readonly caller: Party<C>;
  readonly callee: Party<C>;
  readonly startedAtMs: number;
  state: 'inviting' | 'confirmed' | 'ended';
  /** When an unanswered or ended dialog is dropped. */
  deadlineMs: number;
  /** Requests forwarded and not yet answered: Via branch -> the party that must answer. */
  readonly transactions: Map<string, PartyRole>;
  /** Issue 24: written to the store (confirmed, or restored from it). */
  persisted?: boolean;
  /** The caller's last media status report (issue 22), and when it came. */
  media?: { readonly status: MediaStatus; readonly atMs: number };
}

export interface DialogTableInit {
  /** Dialogs at once. Default 10 000 (503 beyond). */
  readonly maxDialogs?: number;
  /** Dialogs one user may be party to at once. Default 100: an NVR viewer watching many cameras. */
  readonly maxPerUser?: number;
  /** An INVITE not answered in this long is dropped: RFC 3261 Timer B, 64 × T1 = 32 s. */
  readonly setupTimeoutMs?: number;
  /** An ended dialog waits this long for its BYE's answer. Default 32 s, as Timer B. */
  readonly endedLingerMs?: number;
  /** Unanswered requests kept per dialog; the oldest is forgotten beyond. Default 16. */
  readonly maxTransactions?: number;
}

export type OpenResult<C> =
  | { readonly dialog: Dialog<C> }
  | { readonly refused: 'duplicate' | 'full' | 'busy' };

export class DialogTable<C> {
  readonly #dialogs = new Map<string, Dialog<C>>();
  /** Dialogs by party user: the per-user bound, and no scan of every dialog when a party drops. */
  readonly #byUser = new Map<string, Set<Dialog<C>>>();
  readonly #init: Required<DialogTableInit>;

  constructor(init: DialogTableInit = {}) {
    this.#init = {
      maxDialogs: init.maxDialogs ?? 10_000,
      maxPerUser: init.maxPerUser ?? 100,
      setupTimeoutMs: init.setupTimeoutMs ?? 32_000,
      endedLingerMs: init.endedLingerMs ?? 32_000,
      maxTransactions: init.maxTransactions ?? 16,
    };
  }

  get(callId: string): Dialog<C> | undefined {
    return this.#dialogs.get(callId);
  }

  get size(): number {
    return this.#dialogs.size;
  }

  list(): Dialog<C>[] {
    return [...this.#dialogs.values()];
  }

  /** A new dialog; a Call-ID already in use is refused, whoever asks (a re-INVITE is in-dialog). */
  open(
    callId: string,
    caller: { connection: C; user: string; node?: string },
    callee: { connection: C; user: string; node?: string },
    nowMs: number,
  ): OpenResult<C> {
    if (this.#dialogs.has(callId)) return { refused: 'duplicate' };
    if (this.#dialogs.size >= this.#init.maxDialogs) return { refused: 'full' };
    for (const user of new Set([caller.user, callee.user]))
      if ((this.#byUser.get(user)?.size ?? 0) >= this.#init.maxPerUser) return { refused: 'busy' };
    const dialog: Dialog<C> = {
      callId,
      caller: { ...caller },
      callee: { ...callee },
      startedAtMs: nowMs,
      state: 'inviting',
      deadlineMs: nowMs + this.#init.setupTimeoutMs,
      transactions: new Map(),
    };
    this.#add(dialog);
    return { dialog };
  }

  /**
   * Issue 24: a confirmed dialog read back from the store after a restart. Both parties are lost
   * (no connection yet) until each registers again, or its node's link comes back.
   */
  restore(
    stored: {
      readonly callId: string;
      readonly caller: { readonly user: string; readonly node?: string };
      readonly callee: { readonly user: string; readonly node?: string };
    },
    nowMs: number,
  ): Dialog<C> | undefined {
    if (this.#dialogs.has(stored.callId) || this.#dialogs.size >= this.#init.maxDialogs) return undefined;
    const party = (p: { readonly user: string; readonly node?: string }): Party<C> => ({
      user: p.user,
      lostAtMs: nowMs,
      ...(p.node === undefined ? {} : { node: p.node }),
    });
    const dialog: Dialog<C> = {
      callId: stored.callId,
      caller: party(stored.caller),
      callee: party(stored.callee),
      startedAtMs: nowMs,
      state: 'confirmed',
      persisted: true,
      deadlineMs: nowMs + this.#init.endedLingerMs,
      transactions: new Map(),
    };
    this.#add(dialog);
    return dialog;
  }

  #add(dialog: Dialog<C>): void {
    this.#dialogs.set(dialog.callId, dialog);
    for (const user of [dialog.caller.user, dialog.callee.user]) {
      let set = this.#byUser.get(user);
      if (!set) {
        set = new Set();
        this.#byUser.set(user, set);
      }
      set.add(dialog);
    }
  }

  /** Which party `connection` is in `dialog`, or undefined for a third party. */
  roleOf(dialog: Dialog<C>, connection: C): PartyRole | undefined {
    if (dialog.caller.connection === connection) return 'caller';
    if (dialog.callee.connection === connection) return 'callee';
    return undefined;
  }

  /** Records that `responder` owes the answer to the request with Via `branch`. */
  expect(dialog: Dialog<C>, branch: string, responder: PartyRole): void {
    dialog.transactions.delete(branch);
    dialog.transactions.set(branch, responder);
    if (dialog.transactions.size > this.#init.maxTransactions) {
      const oldest = dialog.transactions.keys().next().value;
      if (oldest !== undefined) dialog.transactions.delete(oldest);
    }
  }

  /**
   * Takes a response from `connection` to the request with Via `branch`: true only when that
   * request was forwarded to this very party. A final response closes the transaction.
   */
  answered(dialog: Dialog<C>, branch: string, connection: C, status: number): boolean {
    const responder = dialog.transactions.get(branch);
    if (!responder || this.roleOf(dialog, connection) !== responder) return false;
    if (status >= 200) dialog.transactions.delete(branch);
    return true;
  }

  confirm(dialog: Dialog<C>): void {
    if (dialog.state === 'inviting') dialog.state = 'confirmed';
  }

  end(dialog: Dialog<C>, nowMs: number): void {
    dialog.state = 'ended';
    dialog.deadlineMs = nowMs + this.#init.endedLingerMs;
  }

  remove(callId: string): void {
    const dialog = this.#dialogs.get(callId);
    if (!dialog) return;
    this.#dialogs.delete(callId);
    for (const user of [dialog.caller.user, dialog.callee.user]) {
      const set = this.#byUser.get(user);
      set?.delete(dialog);
      if (set?.size === 0) this.#byUser.delete(user);
    }
  }

  /** Marks the parties of `users` on `connection` lost; returns the dialogs they were in. */
  lose(users: readonly string[], connection: C, nowMs: number): Dialog<C>[] {
    const hit = new Set<Dialog<C>>();
    for (const user of users)
      for (const dialog of this.#byUser.get(user) ?? [])
        for (const party of [dialog.caller, dialog.callee])
          if (party.user === user && party.connection === connection && party.lostAtMs === undefined) {
            party.lostAtMs = nowMs;
            hit.add(dialog);
          }
    return [...hit];
  }

  /** `user` is back on `connection` (on this node): its lost parties move there. */
  rebind(user: string, connection: C): void {
    for (const dialog of this.#byUser.get(user) ?? [])
      for (const party of [dialog.caller, dialog.callee])
        if (party.user === user && party.lostAtMs !== undefined) {
          party.connection = connection;
          party.lostAtMs = undefined;
          party.node = undefined;
          party.hopRttMs = undefined;
        }
  }

  /** Issue 24: a link (`connection`) dropped; its parties are lost. Returns their dialogs. */
  loseConnection(connection: C, nowMs: number): Dialog<C>[] {
    const hit: Dialog<C>[] = [];
    for (const dialog of this.#dialogs.values())
      for (const party of [dialog.caller, dialog.callee])
        if (party.connection === connection && party.lostAtMs === undefined) {
          party.lostAtMs = nowMs;
          hit.push(dialog);
        }
    return hit;
  }

  /** Issue 24: a link to `node` is up: the lost parties registered there move onto it. */
  rebindNode(node: string, connection: C): number {
    let moved = 0;
    for (const dialog of this.#dialogs.values())
      for (const party of [dialog.caller, dialog.callee])
        if (party.node === node && party.lostAtMs !== undefined) {
          party.connection = connection;
          party.lostAtMs = undefined;
          moved++;
        }
    return moved;
  }

  /** Dialogs past their deadline (unanswered or ended), removed from the table. */
  expire(nowMs: number): Dialog<C>[] {
    const gone = [...this.#dialogs.values()].filter((d) => d.state !== 'confirmed' && d.deadlineMs <= nowMs);
    for (const dialog of gone) this.remove(dialog.callId);
    return gone;
  }
}
