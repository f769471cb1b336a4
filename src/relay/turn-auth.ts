/**
 * Who may ask the TURN server for anything, and how a request is turned down: long-term or
 * short-lived credentials checked against stateless nonces (RFC 8489 §9.2.4: 401 with a nonce, 438
 * for a stale one), with unauthenticated requests rate-limited per source address.
 */
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import { verifyMessageIntegrity } from '../protocol/stun/integrity.ts';
import { AttributeType, findAttribute, type StunMessage } from '../protocol/stun/message.ts';
import { longTermKey, TurnAttribute } from '../protocol/stun/turn.ts';
import { RateLimiter } from '../util/rate-limiter.ts';
import { type CredentialStore, Nonces, passwordFor } from './credentials.ts';

export const TURN_ERRORS: Readonly<Record<number, string>> = {
  300: 'Try Alternate',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  420: 'Unknown Attribute',
  437: 'Allocation Mismatch',
  438: 'Stale Nonce',
  440: 'Address Family not Supported',
  441: 'Wrong Credentials',
  442: 'Unsupported Transport Protocol',
  443: 'Peer Address Family Mismatch',
  486: 'Allocation Quota Reached',
  508: 'Insufficient Capacity',
};

/** A request turned down: the error code and why. */
export class Refusal extends Error {
  constructor(
    readonly code: number,
    readonly why: string,
  ) {
    super(why);
  }
}

export type AuthResult =
  | { readonly ok: true; readonly username: string; readonly key: Uint8Array }
  /** Answer with `code`, the realm and this fresh nonce. */
  | { readonly ok: false; readonly code: 401 | 438; readonly why: string; readonly nonce: string }
  /** Too many unauthenticated requests from this address: drop without an answer. */
  | { readonly ok: false; readonly rateLimited: true };

export interface TurnAuthInit extends CredentialStore {
  readonly realm: string;
  readonly nonceLifetimeMs: number;
  readonly unauthenticatedPerSecond: number;
}

export class TurnAuthenticator {
  readonly #nonces: Nonces;
  readonly #limiter: RateLimiter;

  constructor(private readonly init: TurnAuthInit) {
    this.#nonces = new Nonces(init.nonceLifetimeMs);
    this.#limiter = new RateLimiter(init.unauthenticatedPerSecond, init.unauthenticatedPerSecond * 2);
  }

  /** Checks one request; throws `Refusal(400)` for integrity without the attributes it needs. */
  /** `nowMs` is monotonic (nonces, rate limit); `epochMs` is wall-clock (REST credential expiry). */
  check(raw: Uint8Array, message: StunMessage, from: Endpoint, nowMs: number, epochMs: number): AuthResult {
    const client = formatEndpoint(from);
    const challenge = (code: 401 | 438, why: string): AuthResult =>
      this.#limiter.allow(from.address, nowMs)
        ? { ok: false, code, why, nonce: this.#nonces.issue(client, nowMs) }
        : { ok: false, rateLimited: true };
    const text = (type: number): string | undefined => {
      const attribute = findAttribute(message, type);
      return attribute && new TextDecoder().decode(attribute.value);
    };
    if (!findAttribute(message, AttributeType.MESSAGE_INTEGRITY))
      return challenge(401, 'credentials required');
    const username = text(AttributeType.USERNAME);
    const realm = text(TurnAttribute.REALM);
    const nonce = text(TurnAttribute.NONCE);
    if (username === undefined || realm === undefined || nonce === undefined)
      throw new Refusal(400, 'MESSAGE-INTEGRITY without USERNAME, REALM and NONCE');
    const freshness = this.#nonces.check(nonce, client, nowMs);
    if (freshness !== 'ok') return challenge(438, freshness === 'stale' ? 'nonce expired' : 'nonce not ours');
    if (realm !== this.init.realm) return challenge(401, `realm must be ${this.init.realm}`);
    const password = passwordFor(this.init, username, epochMs / 1000);
    if (password === undefined) return challenge(401, 'unknown or expired username');
    const key = longTermKey(username, realm, password);
    let valid = false;
    try {
      valid = verifyMessageIntegrity(raw, key);
    } catch {
      valid = false;
    }
    return valid ? { ok: true, username, key } : challenge(401, 'wrong credentials');
  }

  /** Forgets idle rate-limit buckets. */
  prune(nowMs: number): void {
    this.#limiter.prune(nowMs);
  }
}
