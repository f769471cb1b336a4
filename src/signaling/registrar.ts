/**
 * REGISTER with digest authentication (RFC 3261 §10, §22). Nonces are stateless: a timestamp and
 * its HMAC under a server secret, so a restart or many clients cost no memory; an old one is
 * answered 401 with stale=true (RFC 2617 §3.2.1).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { digestMatches } from '../protocol/sip/digest.ts';
import { formatAuthParams, parseAuthParams } from '../protocol/sip/headers.ts';
import { header, type SipRequest } from '../protocol/sip/message.ts';

/** A nonce is good for 5 minutes: longer than any REGISTER round trip, short enough to limit replay. */
const NONCE_LIFETIME_MS = 300_000;

export type AuthResult =
  | { readonly ok: true; readonly user: string }
  | { readonly ok: false; readonly status: 401 | 403; readonly challenge?: string; readonly reason: string };

export class DigestAuthenticator {
  readonly #secret: Buffer;

  constructor(
    readonly realm: string,
    private readonly users: Readonly<Record<string, string>>,
    private readonly now: () => number,
    secret?: Uint8Array,
  ) {
    this.#secret = Buffer.from(secret ?? randomBytes(32));
  }

  challenge(stale = false): string {
    const issued = Math.floor(this.now()).toString(36);
    const mac = createHmac('sha256', this.#secret).update(issued).digest('hex').slice(0, 32);
    const params: Record<string, string> = {
      realm: this.realm,
      nonce: `${issued}.${mac}`,
      algorithm: 'SHA-256',
      qop: 'auth',
    };
    if (stale) params.stale = 'true';
    return formatAuthParams('Digest', params, ['algorithm', 'stale']);
  }

  check(request: SipRequest): AuthResult {
    const authorization = header(request, 'Authorization');
    if (!authorization)
      return { ok: false, status: 401, challenge: this.challenge(), reason: 'no credentials' };
    let params: Record<string, string>;
    try {
      ({ params } = parseAuthParams(authorization));
    } catch {
      return { ok: false, status: 401, challenge: this.challenge(), reason: 'malformed Authorization' };
    }
    const { username, nonce, uri, response, realm } = params;
    if (!username || !nonce || !uri || !response || realm !== this.realm) {
      return { ok: false, status: 401, challenge: this.challenge(), reason: 'incomplete Authorization' };
    }
    const [issued, mac] = nonce.split('.');
    const expectedMac = createHmac('sha256', this.#secret)
      .update(issued ?? '')
      .digest('hex')
      .slice(0, 32);
    if (
      !mac ||
      mac.length !== expectedMac.length ||
      !timingSafeEqual(Buffer.from(mac), Buffer.from(expectedMac))
    ) {
      return {
        ok: false,
        status: 401,
        challenge: this.challenge(),
        reason: 'nonce not issued by this server',
      };
    }
    if (this.now() - Number.parseInt(issued!, 36) > NONCE_LIFETIME_MS) {
      return { ok: false, status: 401, challenge: this.challenge(true), reason: 'stale nonce' };
    }
    const password = this.users[username];
    const algorithm = params.algorithm === 'MD5' ? 'MD5' : 'SHA-256';
    const qop = params.qop === 'auth' ? ('auth' as const) : undefined;
    const ok =
      password !== undefined &&
      digestMatches(
        {
          algorithm,
          username,
          realm: this.realm,
          password,
          method: request.method,
          uri,
          nonce,
          qop,
          nc: params.nc,
          cnonce: params.cnonce,
        },
        response,
      );
    if (!ok) return { ok: false, status: 403, reason: `wrong credentials for '${username}'` };
    return { ok: true, user: username };
  }
}
