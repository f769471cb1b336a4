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
