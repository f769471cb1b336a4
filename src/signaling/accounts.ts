/**
 * SIP accounts: a user's digest password and who may call it. Every look-up by a name from the
 * wire goes through a `Map`, never a plain object: with `users[name]`, every property of
 * `Object.prototype` (`constructor`, `__proto__`, `toString`, …) was an account whose "password" was
 * a function's source text (issue 16).
 */

/** Who may call a user: anyone registered, or only the users listed. */
export type Callers = 'any' | ReadonlySet<string>;

export interface Account {
  readonly password: string;
  /** Who the server lets call this user (403 to anyone else). */
  readonly callers: Callers;
}

export type Accounts = ReadonlyMap<string, Account>;

/** A user as a config file or a test gives it: a password, or a password and an access list. */
export type AccountSpec =
  | string
  | { readonly password: string; readonly callers?: readonly string[] | 'any' };

/**
 * Accounts from a plain record, reading only its own enumerable entries (`Object.entries`), so
 * inherited names never become users. `defaultCallers` applies to users given without `callers`:
 * config files use none ("only the users listed"); tests and simulations pass `'any'`.
 */
export function accountsFrom(
  users: Readonly<Record<string, AccountSpec>> | Accounts,
  defaultCallers: Callers = 'any',
): Accounts {
  if (users instanceof Map) return users;
  const accounts = new Map<string, Account>();
  for (const [name, spec] of Object.entries(users as Readonly<Record<string, AccountSpec>>)) {
    if (typeof spec === 'string') accounts.set(name, { password: spec, callers: defaultCallers });
    else
      accounts.set(name, {
        password: spec.password,
        callers:
          spec.callers === undefined
            ? defaultCallers
            : spec.callers === 'any'
              ? 'any'
              : new Set(spec.callers),
      });
  }
  return accounts;
}

/** The passwords alone, for the TURN server's long-term credentials. */
export function passwordsOf(accounts: Accounts): ReadonlyMap<string, string> {
  return new Map([...accounts].map(([name, account]) => [name, account.password]));
}

/** May `caller` call `callee`? Unknown callees may be called by nobody. */
export function mayCall(accounts: Accounts, caller: string, callee: string): boolean {
  const callers = accounts.get(callee)?.callers;
  if (callers === undefined) return false;
  return callers === 'any' || callers.has(caller);
}
