/**
 * The registrar's table (RFC 3261 §10): which authenticated connection each user is reachable on,
 * until when. Pure: no I/O, time passed in. Bounded by the accounts (only a known user registers),
 * with a reverse index so "who is on this connection" costs no scan of every registration.
 */

export interface Registration<C> {
  readonly user: string;
  readonly connection: C;
  readonly contact: string;
  readonly expiresAtMs: number;
}

export class Registrar<C> {
  readonly #byUser = new Map<string, Registration<C>>();
  readonly #byConnection = new Map<C, Set<string>>();

  /** Binds `user` to `connection`, replacing any earlier binding (a gateway that reconnected). */
  bind(registration: Registration<C>): void {
    this.unbind(registration.user);
    this.#byUser.set(registration.user, registration);
    let users = this.#byConnection.get(registration.connection);
    if (!users) {
      users = new Set();
      this.#byConnection.set(registration.connection, users);
    }
    users.add(registration.user);
  }

  unbind(user: string): void {
    const old = this.#byUser.get(user);
    if (!old) return;
    this.#byUser.delete(user);
    const users = this.#byConnection.get(old.connection);
    users?.delete(user);
    if (users?.size === 0) this.#byConnection.delete(old.connection);
  }

  /** The live registration of `user`, if any. */
  lookup(user: string, nowMs: number): Registration<C> | undefined {
    const registration = this.#byUser.get(user);
    return registration && registration.expiresAtMs > nowMs ? registration : undefined;
  }

  /** The user registered on `connection` (the first, when one connection carries several). */
  userOf(connection: C, nowMs: number): string | undefined {
    for (const user of this.#byConnection.get(connection) ?? []) if (this.lookup(user, nowMs)) return user;
    return undefined;
  }

  /** Has `connection` any registration, live or not? */
  has(connection: C): boolean {
    return this.#byConnection.has(connection);
  }

  /** Forgets every registration on `connection`; returns their users. */
  drop(connection: C): string[] {
    const users = [...(this.#byConnection.get(connection) ?? [])];
    for (const user of users) this.unbind(user);
    return users;
  }

  list(nowMs: number): Registration<C>[] {
    return [...this.#byUser.values()].filter((r) => r.expiresAtMs > nowMs);
  }

  get size(): number {
    return this.#byUser.size;
  }
}
