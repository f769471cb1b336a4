/**
 * What a request must be before the server acts on it (RFC 3261 §8.2, §16.3), as a status to answer
 * with. Pure. Checked in the RFC's order: method, URI scheme, required headers and their syntax,
 * then extensions and hop count.
 */
import { header, type SipRequest } from '../protocol/sip/message.ts';

export const SUPPORTED_METHODS = [
  'REGISTER',
  'INVITE',
  'ACK',
  'BYE',
  'CANCEL',
  'INFO',
  'OPTIONS',
  'PUBLISH',
] as const;
const METHODS = new Set<string>(SUPPORTED_METHODS);
/** Headers that may appear once only (RFC 3261 §7.3.1; RFC 4475 `multi01`). */
const SINGLE = ['call-id', 'to', 'from', 'cseq', 'max-forwards', 'content-length'] as const;
/** Largest CSeq number (RFC 3261 §8.1.1.5: less than 2**31; RFC 4475 `scalar02` goes past 2**32). */
const MAX_CSEQ = 2 ** 31 - 1;

export interface Refusal {
  readonly status: number;
  readonly reason: string;
  readonly extra?: [string, string][];
}

/** The refusal `request` deserves, or undefined when the server may go on with it. */
export function checkRequest(request: SipRequest): Refusal | undefined {
  if (!METHODS.has(request.method))
    return {
      status: 501,
      reason: `method ${request.method.slice(0, 32)} is not implemented`,
      extra: [['Allow', SUPPORTED_METHODS.join(', ')]],
    };
  if (!/^sips?:/i.test(request.uri))
    return { status: 416, reason: `URI scheme of '${request.uri.slice(0, 40)}' is not supported` };
  for (const name of ['Via', 'From', 'To', 'Call-ID', 'CSeq']) {
    if (!header(request, name)) return { status: 400, reason: `missing ${name}` };
  }
  for (const name of SINGLE) {
    const count = request.headers.filter(([n]) => n.toLowerCase() === name).length;
    if (count > 1) return { status: 400, reason: `${name} appears ${count} times` };
  }
  const cseq = /^(\d{1,10})\s+(\S+)$/.exec(header(request, 'CSeq')!.trim());
  if (!cseq || Number(cseq[1]) > MAX_CSEQ) return { status: 400, reason: 'bad CSeq' };
  if (cseq[2] !== request.method) return { status: 400, reason: 'CSeq method does not match the request' };
  if (!/;\s*branch=z9hG4bK[^;,\s]+/.test(header(request, 'Via')!))
    return { status: 400, reason: 'Via has no RFC 3261 branch' };
  const require = header(request, 'Require') ?? header(request, 'Proxy-Require');
  if (require && request.method !== 'ACK' && request.method !== 'CANCEL')
    // We support no extension that a request may require (RFC 3261 §8.2.2.3).
    return { status: 420, reason: 'unsupported extension', extra: [['Unsupported', require.slice(0, 200)]] };
  const maxForwards = header(request, 'Max-Forwards');
  if (maxForwards !== undefined) {
    if (!/^\d{1,3}$/.test(maxForwards.trim())) return { status: 400, reason: 'bad Max-Forwards' };
    // Only requests we forward spend a hop; REGISTER, OPTIONS and PUBLISH end here.
    if (Number(maxForwards) === 0 && !['REGISTER', 'OPTIONS', 'PUBLISH'].includes(request.method))
      return { status: 483, reason: 'Max-Forwards reached 0' };
  }
  return undefined;
}

/** The branch of the top Via, which names the request's transaction (RFC 3261 §17.2.3). */
export function topBranch(message: {
  readonly headers: readonly (readonly [string, string])[];
}): string | undefined {
  const via = message.headers.find(([n]) => n.toLowerCase() === 'via')?.[1];
  return via ? /;\s*branch=([^;,\s]+)/.exec(via)?.[1] : undefined;
}
