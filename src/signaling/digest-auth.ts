/**
 * Digest authentication of REGISTER (RFC 3261 §22, RFC 7616 for SHA-256, RFC 8760 for SIP).
 *
 * - Nonces are bound to the client: the issue time and an HMAC over it and the client's id (one
 *   per signaling connection), so an Authorization captured on one connection is refused on any
 *   other. They go stale after 5 minutes (401 with stale=true, RFC 7616 §3.3).
 * - `qop=auth` is required, and each nonce's `nc` must grow: a replay on the same connection is
 *   refused too. The table of counts is bounded; evicting an entry makes every nonce issued before
 *   it stale, so eviction can never re-open a replay.
 * - The server decides the algorithm: it challenges with SHA-256 and refuses any other answer, so
 *   a client (or a man in the middle) cannot downgrade to MD5.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { digestMatches } from '../protocol/sip/digest.ts';
import { formatAuthParams, parseAuthParams } from '../protocol/sip/headers.ts';
import { header, type SipRequest } from '../protocol/sip/message.ts';

/** A nonce is good for 5 minutes: longer than any REGISTER round trip, short enough to limit replay. */
export const NONCE_LIFETIME_MS = 300_000;
/** Nonce counts remembered at once; a gateway uses one nonce per (re-)registration. */
const MAX_TRACKED_NONCES = 100_000;
const ALGORITHM = 'SHA-256';

export type AuthResult =
  | { readonly ok: true; readonly user: string }
  | {
      readonly ok: false;
      readonly status: 401 | 403;
      readonly challenge?: string;
      readonly reason: string;
      /** The username the client claimed, when it got that far (for throttling and logs). */
      readonly user?: string;
    };

/** Where passwords are looked up by user name: the accounts, or the cluster's node secret. */
export interface PasswordBook {
  get(user: string): { readonly password: string } | undefined;
}

export class DigestAuthenticator {
  readonly #secret: Buffer;
  /** Highest `nc` accepted per nonce, oldest first. */
  readonly #counts = new Map<string, { nc: number; issuedMs: number }>();
  /** Nonces issued before this are stale: their counts may have been evicted. */
  #floorMs = Number.NEGATIVE_INFINITY;

  constructor(
    readonly realm: string,
    private readonly accounts: PasswordBook,
    private readonly now: () => number,
    secret?: Uint8Array,
  ) {
    this.#secret = Buffer.from(secret ?? randomBytes(32));
  }

  /** A `WWW-Authenticate` value for `client` (the connection's id). */
  challenge(client: string, stale = false): string {
    const issued = Math.floor(this.now()).toString(36);
    const params: Record<string, string> = {
      realm: this.realm,
      nonce: `${issued}.${this.#mac(issued, client)}`,
      algorithm: ALGORITHM,
      qop: 'auth',
    };
    if (stale) params.stale = 'true';
    return formatAuthParams('Digest', params, ['algorithm', 'stale']);
  }

  check(request: SipRequest, client: string): AuthResult {
    const refuse = (reason: string, stale = false, user?: string): AuthResult => ({
      ok: false,
      status: 401,
      challenge: this.challenge(client, stale),
      reason,
      user,
    });
    const authorization = header(request, 'Authorization');
    if (!authorization) return refuse('no credentials');
    let params: Record<string, string>;
    try {
      ({ params } = parseAuthParams(authorization));
    } catch {
      return refuse('malformed Authorization');
    }
    const { username, nonce, uri, response, realm, nc, cnonce } = params;
    if (!username || !nonce || !uri || !response || !cnonce || realm !== this.realm)
      return refuse('incomplete Authorization');
    if ((params.algorithm ?? 'MD5').toUpperCase() !== ALGORITHM)
      return refuse(
        `algorithm ${(params.algorithm ?? 'MD5').slice(0, 20)} refused; the server asks for ${ALGORITHM}`,
      );
    if (params.qop !== 'auth' || !nc || !/^[0-9a-fA-F]{8}$/.test(nc))
      return refuse('qop=auth with nc required');
    if (uri !== request.uri) return refuse('digest uri does not match the Request-URI');
    const [issued, mac] = nonce.split('.');
    const expectedMac = this.#mac(issued ?? '', client);
    if (
      !issued ||
      !mac ||
      mac.length !== expectedMac.length ||
      !timingSafeEqual(Buffer.from(mac), Buffer.from(expectedMac))
    )
      return refuse('nonce not issued to this connection');
    const issuedMs = Number.parseInt(issued, 36);
    if (this.now() - issuedMs > NONCE_LIFETIME_MS || issuedMs < this.#floorMs)
      return refuse('stale nonce', true);
    const count = Number.parseInt(nc, 16);
    const seen = this.#counts.get(nonce);
    if (seen && count <= seen.nc) return refuse(`nonce count ${nc} replayed`, false, username);
    const password = this.accounts.get(username)?.password;
    const ok =
      password !== undefined &&
      digestMatches(
        {
          algorithm: ALGORITHM,
          username,
          realm: this.realm,
          password,
          method: request.method,
          uri,
          nonce,
          qop: 'auth',
          nc,
          cnonce,
        },
        response,
      );
    if (!ok)
      return {
        ok: false,
        status: 403,
        reason: password === undefined ? 'no such user' : 'wrong password',
        user: username,
      };
    this.#remember(nonce, count, issuedMs);
    return { ok: true, user: username };
  }

  #remember(nonce: string, nc: number, issuedMs: number): void {
    this.#counts.delete(nonce);
    this.#counts.set(nonce, { nc, issuedMs });
    const horizon = this.now() - NONCE_LIFETIME_MS;
    for (const [key, entry] of this.#counts) {
      if (this.#counts.size <= MAX_TRACKED_NONCES && entry.issuedMs >= horizon) break;
      this.#counts.delete(key);
      // Forgetting a live nonce's count would let it be replayed: make it (and older ones) stale.
      if (entry.issuedMs >= horizon) this.#floorMs = Math.max(this.#floorMs, entry.issuedMs + 1);
    }
  }

  #mac(issued: string, client: string): string {
    return createHmac('sha256', this.#secret).update(`${issued}|${client}`).digest('hex').slice(0, 32);
  }
}
