/**
 * Short-lived TURN credentials carried in SIP (issue 6): the server puts one in the 200 to each
 * REGISTER (for the gateway's own calls) and one in each INVITE it forwards (for the called side's
 * allocation in that call). Both go over the gateway's authenticated connection, so no long-term
 * password has to reach a relay, and coturn with `use-auth-secret` needs no user table.
 */
import { formatAuthParams, parseAuthParams } from '../protocol/sip/headers.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import { issueCredentials, type ShortLivedCredentials } from '../relay/credentials.ts';

export const TURN_CREDENTIAL_HEADER = 'SC2C-TURN-Credential';
const SCHEME = 'REST';

export interface CredentialIssuer {
  /** The shared secret the relay (ours or coturn's `static-auth-secret`) checks against. */
  readonly secret: string;
  readonly ttlS: number;
}

export function credentialHeader(issuer: CredentialIssuer, user: string, nowMs: number): [string, string] {
  const issued = issueCredentials(issuer.secret, user, nowMs / 1000, issuer.ttlS);
  return [
    TURN_CREDENTIAL_HEADER,
    formatAuthParams(
      SCHEME,
      { username: issued.username, password: issued.password, expires: String(issued.expiresAtS) },
      ['expires'],
    ),
  ];
}

/** The credential a message carries, or undefined when it has none or the header is malformed. */
export function readCredential(message: SipRequest | SipResponse): ShortLivedCredentials | undefined {
  const value = header(message, TURN_CREDENTIAL_HEADER);
  if (!value) return undefined;
  try {
    const { scheme, params } = parseAuthParams(value);
    const expiresAtS = Number(params.expires);
    if (scheme !== SCHEME || !params.username || !params.password || !Number.isInteger(expiresAtS))
      return undefined;
    return { username: params.username, password: params.password, expiresAtS };
  } catch {
    return undefined;
  }
}

/** `message` without any TURN credential header (a caller must not hand the callee its own). */
export function withoutCredential<M extends SipRequest | SipResponse>(message: M): M {
  const lower = TURN_CREDENTIAL_HEADER.toLowerCase();
  return { ...message, headers: message.headers.filter(([name]) => name.toLowerCase() !== lower) };
}
