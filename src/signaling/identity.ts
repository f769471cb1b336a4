/**
 * Who sent a request, as the server asserts it (RFC 3325): the server rewrites `From` from the
 * sender's registration and sets `P-Asserted-Identity`, dropping whatever a client wrote there, so
 * neither the callee nor a call record can be told a forged caller (issue 16).
 */
import { parseNameAddr } from '../protocol/sip/headers.ts';
import { header, type SipRequest } from '../protocol/sip/message.ts';

/** Identity headers a client may not set: the server asserts them (RFC 3325 §5). */
const IDENTITY_HEADERS = new Set(['p-asserted-identity', 'p-preferred-identity']);

/** `request` with `user`'s identity asserted: `From` rewritten (its tag kept), `P-Asserted-Identity` set. */
export function assertIdentity(request: SipRequest, user: string, realm: string): SipRequest {
  const uri = `sip:${user}@${realm}`;
  const headers: [string, string][] = [];
  for (const [name, value] of request.headers) {
    const lower = name.toLowerCase();
    if (IDENTITY_HEADERS.has(lower)) continue;
    if (lower === 'from') {
      const tag = parseNameAddr(value).params.tag;
      headers.push([name, `<${uri}>${tag ? `;tag=${tag}` : ''}`]);
    } else headers.push([name, value]);
  }
  headers.push(['P-Asserted-Identity', `<${uri}>`]);
  return { ...request, headers };
}

/** The caller of a request our server forwarded: its asserted identity, else `From`. */
export function assertedCaller(request: SipRequest): string {
  const asserted = header(request, 'P-Asserted-Identity') ?? header(request, 'From') ?? '';
  return /sips?:([^@;>]+)@/.exec(asserted)?.[1] ?? 'unknown';
}
