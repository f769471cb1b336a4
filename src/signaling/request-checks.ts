/**
 * What a request must be before the server acts on it (RFC 3261 §8.2, §16.3), as a status to answer
 * with. Pure. Checked in the RFC's order: method, URI scheme, required headers and their syntax,
 * then extensions and hop count.
 */
import { nameAddrProblem, viaProblem } from '../protocol/sip/headers.ts';
import { header, headers, type SipRequest } from '../protocol/sip/message.ts';

export const SUPPORTED_METHODS = [
  'REGISTER',
  'INVITE',
  'ACK',
  'BYE',
  'CANCEL',
  'INFO',
  'OPTIONS',
  'PUBLISH',
  'SUBSCRIBE',
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
  if (/[<>\s]/.test(request.uri)) return { status: 400, reason: 'malformed Request-URI' };
  if (!/^sips?:/i.test(request.uri))
    return { status: 416, reason: `URI scheme of '${request.uri.slice(0, 40)}' is not supported` };
  // Escaped headers in a Request-URI (`?Route=…`) must never become real headers (RFC 4475 `escruri`).
  if (request.uri.includes('?')) return { status: 400, reason: 'headers in the Request-URI' };
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
  for (const name of ['From', 'To']) {
    const problem = nameAddrProblem(header(request, name)!);
    if (problem) return { status: 400, reason: `${name}: ${problem}` };
  }
  for (const [name, value] of request.headers) {
    if (name.toLowerCase() !== 'via') continue;
    const problem = viaProblem(value);
    if (problem) return { status: 400, reason: problem };
  }
  // A bare magic cookie is no transaction id (RFC 4475 `badbranch`). No branch, or one without the
  // cookie, is an RFC 2543 element's (RFC 4475 `longreq`): matched by CSeq instead (`transactionKey`).
  if (topBranch(request) === 'z9hG4bK') return { status: 400, reason: 'Via branch is the bare magic cookie' };
  if (request.method === 'REGISTER') {
    // A registrar binds SIP addresses of record only (RFC 4475 `unksm2`), to well-formed contacts.
    if (!/^\s*(?:"(?:[^"\\]|\\.)*"\s*|[^<"]*)<?\s*sips?:/i.test(header(request, 'To')!))
      return { status: 400, reason: 'To is not a SIP address of record' };
    for (const contact of headers(request, 'Contact')) {
      const problem = contact === '*' ? undefined : nameAddrProblem(contact);
      if (problem) return { status: 400, reason: `Contact: ${problem}` };
    }
  }
  const require = header(request, 'Require') ?? header(request, 'Proxy-Require');
  if (require && request.method !== 'ACK' && request.method !== 'CANCEL')
    // We support no extension that a request may require (RFC 3261 §8.2.2.3).
    return { status: 420, reason: 'unsupported extension', extra: [['Unsupported', require.slice(0, 200)]] };
  const maxForwards = header(request, 'Max-Forwards');
  if (maxForwards !== undefined) {
    if (!/^\d{1,10}$/.test(maxForwards.trim()) || Number(maxForwards) > 255)
      return { status: 400, reason: 'bad Max-Forwards' };
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
  return via ? /;\s*branch\s*=\s*([^;,\s]+)/.exec(via)?.[1] : undefined;
}

/**
 * The key matching a response to its request within one dialog: the top Via branch (RFC 3261
 * §17.1.3), or for an RFC 2543 element that sent none, the CSeq (§17.2.3's fallback, narrowed to
 * the dialog the Call-ID already names).
 */
export function transactionKey(message: {
  readonly headers: readonly (readonly [string, string])[];
}): string | undefined {
  const branch = topBranch(message);
  if (branch) return branch;
  const cseq = message.headers.find(([n]) => n.toLowerCase() === 'cseq')?.[1];
  return cseq ? `rfc2543:${cseq.trim().replace(/\s+/g, ' ')}` : undefined;
}
