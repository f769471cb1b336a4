/**
 * What the TURN server checks before it relays: who the client is (long-term credentials, or
 * short-lived per-call ones), whether its nonce is fresh, how fast unauthenticated requests come,
 * and whether a peer address may be relayed to.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Cidr, cidrContains, parseCidr } from '../net/address.ts';

/**
 * Short-lived credentials in the TURN REST API form (draft-uberti-behave-turn-rest; coturn's
 * `use-auth-secret`): username `<expiry unix s>:<user>`, password base64(HMAC-SHA1(secret, username)).
 * The signaling server issues them per call, so no long-term password reaches the relay.
 */
export interface ShortLivedCredentials {
  readonly username: string;
  readonly password: string;
  readonly expiresAtS: number;
}

export function issueCredentials(
  secret: string,
  user: string,
  nowS: number,
  ttlS: number,
): ShortLivedCredentials {
  const expiresAtS = Math.floor(nowS + ttlS);
  const username = `${expiresAtS}:${user}`;
  return { username, password: restPassword(secret, username), expiresAtS };
}

export function restPassword(secret: string, username: string): string {
  return createHmac('sha1', secret).update(username).digest('base64');
}

/** The user a username stands for: `<expiry>:<user>` (REST form) is `<user>`. */
export function quotaUser(username: string): string {
  return /^\d{1,12}:(.+)$/.exec(username)?.[1] ?? username;
}

export interface CredentialStore {
  /**
   * Long-term users and passwords. A plain record is read with `Object.hasOwn`, never by a bare
   * index: `users[name]` made every `Object.prototype` property a user (issue 16).
   */
  readonly users?: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** Shared secret for short-lived credentials. */
  readonly secret?: string;
  /**
   * Longest a short-lived credential may still have to run, in seconds: one that claims to expire
   * further ahead was not issued by us (the signaling server issues `credentialTtlS`) and would
   * dodge the per-user quota for years. Default 86 400 s.
   */
  readonly maxCredentialTtlS?: number;
}

/** Slack for clocks a little apart between the signaling server and a relay. */
const CLOCK_SKEW_S = 60;

function ownPassword(users: CredentialStore['users'], username: string): string | undefined {
  if (!users) return undefined;
  if (users instanceof Map) return users.get(username);
  const record = users as Readonly<Record<string, string>>;
  return Object.hasOwn(record, username) ? record[username] : undefined;
}

/** The password for `username` at `nowS`, or `undefined` when unknown, expired or too far ahead. */
export function passwordFor(store: CredentialStore, username: string, nowS: number): string | undefined {
  const own = ownPassword(store.users, username);
  if (typeof own === 'string') return own;
  if (!store.secret) return undefined;
  const match = /^(\d{1,12}):(.+)$/.exec(username);
  if (!match) return undefined;
  const expiresS = Number(match[1]);
  if (expiresS < nowS || expiresS > nowS + (store.maxCredentialTtlS ?? 86_400) + CLOCK_SKEW_S)
    return undefined;
  return restPassword(store.secret, username);
}

/**
 * Stateless nonces: the issue time and an HMAC over it and the client's address, so a nonce
 * cannot be moved to another client and its age needs no table.
 */
export class Nonces {
  readonly #key = randomBytes(32);
  constructor(private readonly lifetimeMs: number) {}

  issue(client: string, nowMs: number): string {
    const issued = Math.floor(nowMs).toString(16).padStart(12, '0');
    return `${issued}${this.#mac(issued, client)}`;
  }

  /** 'ok', 'stale' (ours but too old) or 'invalid'. */
  check(nonce: string, client: string, nowMs: number): 'ok' | 'stale' | 'invalid' {
    if (!/^[0-9a-f]{12}[0-9a-f]{32}$/.test(nonce)) return 'invalid';
    const issued = nonce.slice(0, 12);
    const expected = Buffer.from(this.#mac(issued, client));
    if (!timingSafeEqual(expected, Buffer.from(nonce.slice(12)))) return 'invalid';
    return nowMs - Number.parseInt(issued, 16) > this.lifetimeMs ? 'stale' : 'ok';
  }

  #mac(issued: string, client: string): string {
    return createHmac('sha256', this.#key).update(`${issued}|${client}`).digest('hex').slice(0, 32);
  }
}

/**
 * Peer ranges a relay refuses by default (RFC 8656 §21.1.2 warns of relaying into the operator's
 * own networks): "this" network and loopback, private (RFC 1918) and shared (RFC 6598) space,
 * link-local, multicast and reserved. IPv6 peers are refused outright: the relay is IPv4.
 */
export const DEFAULT_DENIED_PEERS = [
  '0.0.0.0/8',
  '127.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '169.254.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
] as const;

export class PeerPolicy {
  readonly #denied: Cidr[];
  readonly #allowed: Cidr[];

  /** `allowed` punches holes in `denied` (the lab allows its own ranges this way). */
  constructor(denied: readonly string[] = DEFAULT_DENIED_PEERS, allowed: readonly string[] = []) {
    this.#denied = denied.map(parseCidr);
    this.#allowed = allowed.map(parseCidr);
  }

  permits(address: string): boolean {
    if (this.#allowed.some((c) => cidrContains(c, address))) return true;
    return !this.#denied.some((c) => cidrContains(c, address));
  }
}
