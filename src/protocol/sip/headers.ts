/** Parsers for the SIP header values the gateway reads (RFC 3261 §20, §25). */
import { DecodeError } from '../decode-error.ts';

export interface NameAddr {
  readonly uri: string;
  readonly params: Readonly<Record<string, string>>;
}

/** `"Alice" <sip:alice@sc2c.lab>;tag=abc` or `sip:alice@sc2c.lab;tag=abc`. */
export function parseNameAddr(value: string): NameAddr {
  const angle = /<([^>]*)>(.*)$/.exec(value);
  const uri = angle ? angle[1]! : value.split(';')[0]!.trim();
  const rest = angle ? angle[2]! : value.slice(uri.length);
  if (!/^sips?:/.test(uri)) throw new DecodeError('sip', 0, `not a SIP URI: '${uri.slice(0, 60)}'`);
  return { uri, params: parseParams(rest) };
}

export function parseParams(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const part of text.split(';')) {
    const [k, v] = part.split('=');
    if (k?.trim()) params[k.trim().toLowerCase()] = (v ?? '').trim();
  }
  return params;
}

/** The user part of `sip:user@host`. */
export function uriUser(uri: string): string | undefined {
  return /^sips?:([^@;>]+)@/.exec(uri)?.[1];
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

export function parseCSeq(value: string): CSeq {
  const match = /^(\d{1,10})\s+([A-Za-z]+)$/.exec(value.trim());
  if (!match) throw new DecodeError('sip', 0, `bad CSeq '${value.slice(0, 40)}'`);
  return { seq: Number(match[1]), method: match[2]!.toUpperCase() };
}

/** `Digest realm="x", nonce="y", qop=auth` -> { realm: 'x', nonce: 'y', qop: 'auth' }. */
export function parseAuthParams(value: string): { scheme: string; params: Record<string, string> } {
  const space = value.indexOf(' ');
  if (space < 0) throw new DecodeError('sip', 0, 'authentication header without parameters');
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]+)/g;
  for (const m of value.slice(space + 1).matchAll(re)) params[m[1]!.toLowerCase()] = m[3] ?? m[2]!;
  return { scheme: value.slice(0, space), params };
}

export function formatAuthParams(
  scheme: string,
  params: Record<string, string>,
  unquoted: readonly string[] = [],
): string {
  const parts = Object.entries(params).map(([k, v]) =>
    unquoted.includes(k) ? `${k}=${v}` : `${k}="${v.replace(/["\\]/g, '\\$&')}"`,
  );
  return `${scheme} ${parts.join(', ')}`;
}

const TOKEN_CHARS = "A-Za-z0-9.!%*_+`'~\\-";
const TOKEN_RE = new RegExp(`^[${TOKEN_CHARS}]+$`);
/** `;name`, `;name=token`, `;name=host`, `;name=[v6]` or `;name="quoted"`, with LWS around `;` and `=`. */
const PARAM_RE = new RegExp(
  `^\\s*;\\s*[${TOKEN_CHARS}]+(\\s*=\\s*([${TOKEN_CHARS}:]+|\\[[0-9A-Fa-f:.]+\\]|"(?:[^"\\\\]|\\\\.)*"))?`,
);

/** Why a run of `;param` (RFC 3261 §25.1 generic-param) is malformed, or undefined. */
function paramsProblem(text: string): string | undefined {
  let rest = text;
  while (rest.trim().length > 0) {
    const match = PARAM_RE.exec(rest);
    if (!match) return `bad parameter near '${rest.trim().slice(0, 30)}'`;
    rest = rest.slice(match[0].length);
  }
  return undefined;
}

/**
 * Why a From, To or Contact value is not RFC 3261 §20.10/§25.1 syntax (`name-addr` or `addr-spec`,
 * then parameters), or undefined when it is. Strict where RFC 4475 §3.1.2 says a parser must
 * reject: an unterminated quoted display name, a display name with non-token characters, spaces
 * inside `<>`, an addr-spec with `?` headers or `,` outside `<>`, empty parameters.
 */
export function nameAddrProblem(value: string): string | undefined {
  let rest = value.trim();
  if (rest.startsWith('"')) {
    const quoted = /^"(?:[^"\\]|\\.)*"/.exec(rest);
    if (!quoted) return 'unterminated quoted display name';
    rest = rest.slice(quoted[0].length).trimStart();
    if (!rest.startsWith('<')) return 'a quoted display name must be followed by <URI>';
  }
  const angle = rest.indexOf('<');
  let params: string;
  if (angle >= 0) {
    const display = rest.slice(0, angle).trim();
    if (display && !display.split(/\s+/).every((word) => TOKEN_RE.test(word)))
      return 'a display name with non-token characters must be quoted';
    const close = rest.indexOf('>', angle);
    if (close < 0) return 'no > after <';
    const uri = rest.slice(angle + 1, close);
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) return `bad URI in <>: '${uri.slice(0, 40)}'`;
    params = rest.slice(close + 1);
  } else {
    const semi = rest.indexOf(';');
    const uri = (semi < 0 ? rest : rest.slice(0, semi)).trim();
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:[^\s,?]+$/.test(uri))
      return `bad addr-spec '${uri.slice(0, 40)}' (a URI with ?, , or spaces needs <>)`;
    params = semi < 0 ? '' : rest.slice(semi);
  }
  return paramsProblem(params);
}

/** Why a Via value (one or more comma-separated via-parms, §20.42) is malformed, or undefined. */
export function viaProblem(value: string): string | undefined {
  for (const part of value.split(',')) {
    const match = new RegExp(
      `^\\s*SIP\\s*/\\s*2\\.0\\s*/\\s*[${TOKEN_CHARS}]+\\s+(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)(\\s*:\\s*\\d{1,5})?`,
    ).exec(part);
    if (!match) return `bad Via '${part.trim().slice(0, 40)}'`;
    const problem = paramsProblem(part.slice(match[0].length));
    if (problem) return `Via: ${problem}`;
  }
  return undefined;
}
