/**
 * HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617 §3.2.2, RFC 8760 for SHA-256):
 *   HA1 = H(user:realm:password), HA2 = H(method:uri)
 *   response = H(HA1:nonce:nc:cnonce:qop:HA2) with qop=auth, else H(HA1:nonce:HA2)
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type DigestAlgorithm = 'MD5' | 'SHA-256';

export interface DigestInput {
  readonly algorithm: DigestAlgorithm;
  readonly username: string;
  readonly realm: string;
  readonly password: string;
  readonly method: string;
  readonly uri: string;
  readonly nonce: string;
  readonly qop?: 'auth';
  readonly nc?: string;
  readonly cnonce?: string;
}

function hash(algorithm: DigestAlgorithm, text: string): string {
  return createHash(algorithm === 'MD5' ? 'md5' : 'sha256')
    .update(text)
    .digest('hex');
}

export function digestResponse(input: DigestInput): string {
  const ha1 = hash(input.algorithm, `${input.username}:${input.realm}:${input.password}`);
  const ha2 = hash(input.algorithm, `${input.method}:${input.uri}`);
  if (input.qop === 'auth') {
    return hash(input.algorithm, `${ha1}:${input.nonce}:${input.nc ?? ''}:${input.cnonce ?? ''}:auth:${ha2}`);
  }
  return hash(input.algorithm, `${ha1}:${input.nonce}:${ha2}`);
}

/** Constant-time comparison of a received response with the expected one. */
export function digestMatches(input: DigestInput, received: string): boolean {
  const expected = Buffer.from(digestResponse(input));
  const got = Buffer.from(received);
  return expected.byteLength === got.byteLength && timingSafeEqual(expected, got);
}
