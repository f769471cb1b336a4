/**
 * SIP message codec (RFC 3261 §7): a start line, header fields, an empty line, and a body whose
 * length is Content-Length (mandatory on stream transports, §18.3). Headers are kept in order as
 * raw name/value pairs; unknown ones are never dropped. Compact header names (§7.3.3) are expanded.
 *
 *   INVITE sip:bob@sc2c.lab SIP/2.0          SIP/2.0 200 OK
 *   Via: SIP/2.0/TCP 10.0.1.2;branch=...      Via: ...
 *   ...                                       ...
 *   Content-Length: 142                       Content-Length: 0
 *
 *   <body>
 */
import { DecodeError } from '../decode-error.ts';

/** Largest header section we accept; real SIP headers are a few hundred bytes. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** Largest body we accept: an SDP offer with many candidates is a few KB. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface SipRequest {
  readonly kind: 'request';
  readonly method: string;
  readonly uri: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
}

export interface SipResponse {
  readonly kind: 'response';
  readonly status: number;
  readonly reason: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
}

export type SipMessage = SipRequest | SipResponse;

const COMPACT: Record<string, string> = {
  i: 'Call-ID',
  m: 'Contact',
  e: 'Content-Encoding',
  l: 'Content-Length',
  c: 'Content-Type',
  f: 'From',
  s: 'Subject',
  k: 'Supported',
  t: 'To',
  v: 'Via',
};

const TOKEN = /^[A-Za-z0-9.!%*_+`'~-]+$/;

/** First value of header `name` (case-insensitive), or undefined. */
export function header(message: SipMessage, name: string): string | undefined {
  const lower = name.toLowerCase();
  return message.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

/** Every value of header `name`, with comma-separated lists split (not inside quotes or <>). */
export function headers(message: SipMessage, name: string): string[] {
  const lower = name.toLowerCase();
  return message.headers.filter(([n]) => n.toLowerCase() === lower).flatMap(([, v]) => splitList(v));
}

function splitList(value: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '"' && value[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && ch === '<') depth++;
    else if (!quoted && ch === '>') depth--;
    else if (!quoted && depth === 0 && ch === ',') {
      parts.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(value.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

/** The unfolded lines of a header section (§7.3.1: a line starting with SP or HT continues the last). */
function unfold(text: string): string[] {
  return text.replace(/\r\n[ \t]+/g, ' ').split('\r\n');
}

/** Decodes the header section (start line + headers, no blank line) of one message. */
function decodeHead(text: string, offset: number): Omit<SipRequest, 'body'> | Omit<SipResponse, 'body'> {
  const lines = unfold(text);
  const start = lines[0] ?? '';
  const parsed: [string, string][] = [];
  for (const [i, line] of lines.slice(1).entries()) {
    // A bare CR or LF is not a line end (RFC 3261 §7.3.1); passed on, it would split the header
    // wherever the value is written again.
    if (/[\r\n]/.test(line)) throw new DecodeError('sip', offset, `header line ${i + 2} has a bare CR or LF`);
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw new DecodeError('sip', offset, `header line ${i + 2} has no name: '${line.slice(0, 40)}'`);
    const rawName = line.slice(0, colon).trim();
    if (!TOKEN.test(rawName))
      throw new DecodeError('sip', offset, `bad header name '${rawName.slice(0, 40)}'`);
    parsed.push([COMPACT[rawName.toLowerCase()] ?? rawName, line.slice(colon + 1).trim()]);
  }
  const status = /^SIP\/2\.0 ([1-6]\d\d) (.*)$/.exec(start);
  if (status) return { kind: 'response', status: Number(status[1]), reason: status[2]!, headers: parsed };
  // Methods are case-sensitive tokens (RFC 3261 §7.1, §25.1): `intmeth` in RFC 4475 is legal.
  const request = /^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP\/2\.0$/.exec(start);
  if (request) return { kind: 'request', method: request[1]!, uri: request[2]!, headers: parsed };
  throw new DecodeError('sip', offset, `bad start line '${start.slice(0, 60)}'`);
}

/** The body length a header section announces, read leniently (before the headers are validated). */
function announcedLength(lines: readonly string[], offset: number): number {
  return lengthOf(
    lines
      .slice(1)
      .map((line) => /^\s*(content-length|l)\s*:(.*)$/i.exec(line)?.[2]?.trim())
      .filter((v): v is string => v !== undefined),
    offset,
  );
}

function contentLength(head: Omit<SipMessage, 'body'>, offset: number): number {
  return lengthOf(
    head.headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v),
    offset,
  );
}

/** The one Content-Length among `values` (§20.14; mandatory on a stream, §18.3), bounded. */
function lengthOf(values: readonly string[], offset: number): number {
  if (values.length === 0)
    throw new DecodeError('sip', offset, 'Content-Length is required on a stream transport');
  if (values.length > 1) throw new DecodeError('sip', offset, `${values.length} Content-Length headers`);
  const value = values[0]!;
  if (!/^\d{1,9}$/.test(value))
    throw new DecodeError('sip', offset, `bad Content-Length '${value.slice(0, 20)}'`);
  const length = Number(value);
  if (length > MAX_BODY_BYTES)
    throw new DecodeError('sip', offset, `body of ${length} bytes exceeds ${MAX_BODY_BYTES}`);
  return length;
}

/** Headers copied into a response (RFC 3261 §8.2.6.2). */
const ANSWER_HEADERS = new Set(['via', 'from', 'to', 'call-id', 'cseq']);

/**
 * A message that could not be decoded, with what is needed to answer it: whether it was a request,
 * the status it deserves (400, or 505 for another SIP version), and the headers a response copies,
 * read leniently and only where they are clean.
 */
export interface InvalidMessage {
  readonly request: boolean;
  readonly status: 400 | 505;
  readonly reason: string;
  readonly headers: readonly (readonly [string, string])[];
}

function invalidMessage(lines: readonly string[], reason: string): InvalidMessage {
  const start = lines[0] ?? '';
  const request = !start.startsWith('SIP/');
  const version = /^\S+ \S+ SIP\/(\d+\.\d+)$/.exec(start)?.[1];
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const match = /^([A-Za-z0-9.!%*_+`'~-]+)\s*:(.*)$/.exec(line);
    const name = match && (COMPACT[match[1]!.toLowerCase()] ?? match[1]!);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: a value with control characters is not copied
    if (name && ANSWER_HEADERS.has(name.toLowerCase()) && !/[\x00-\x1f\x7f]/.test(match![2]!))
      headers.push([name, match![2]!.trim()]);
  }
  return {
    request,
    status: request && version !== undefined && version !== '2.0' ? 505 : 400,
    reason: version !== undefined && version !== '2.0' ? `SIP version ${version} is not supported` : reason,
    headers,
  };
}

/** Decodes exactly one complete message. */
export function decodeSip(bytes: Uint8Array): SipMessage {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) throw new DecodeError('sip', 0, 'no empty line after the headers');
  if (end > MAX_HEADER_BYTES)
    throw new DecodeError('sip', 0, `header section exceeds ${MAX_HEADER_BYTES} bytes`);
  const head = decodeHead(text.slice(0, end), 0);
  const length = contentLength(head, 0);
  const bodyBytes = bytes.subarray(Buffer.byteLength(text.slice(0, end + 4)));
  if (bodyBytes.byteLength !== length) {
    throw new DecodeError(
      'sip',
      end + 4,
      `Content-Length ${length} does not match ${bodyBytes.byteLength} body bytes`,
    );
  }
  return { ...head, body: new TextDecoder().decode(bodyBytes) } as SipMessage;
}

/** Cheap sniff: does this look like the start of a SIP message? */
export function isSip(bytes: Uint8Array): boolean {
  const start = new TextDecoder().decode(bytes.subarray(0, 16));
  return /^(SIP\/2\.0 |[A-Z]+ \S)/.test(start);
}

export function encodeSip(message: SipMessage): Uint8Array {
  const body = new TextEncoder().encode(message.body);
  const start =
    message.kind === 'request'
      ? `${message.method} ${message.uri} SIP/2.0`
      : `SIP/2.0 ${message.status} ${message.reason}`;
  const lines = [start];
  for (const [name, value] of message.headers) {
    if (name.toLowerCase() === 'content-length') continue;
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value))
      throw new RangeError(`header ${name} contains a line break`);
    lines.push(`${name}: ${value}`);
  }
  lines.push(`Content-Length: ${body.byteLength}`, '', '');
  const head = new TextEncoder().encode(lines.join('\r\n'));
  const out = new Uint8Array(head.byteLength + body.byteLength);
  out.set(head);
  out.set(body, head.byteLength);
  return out;
}

export type StreamEvent =
  | { readonly kind: 'message'; readonly message: SipMessage }
  | { readonly kind: 'keepalive'; readonly ping: boolean }
  /**
   * A message whose framing held but whose content did not decode (RFC 4475 §3.1.2): it can be
   * answered (400, 505) and the stream goes on. When the framing itself is lost (no, several or a
   * bad Content-Length) this event comes first, then `push` throws.
   */
  | { readonly kind: 'invalid'; readonly invalid: InvalidMessage };

/**
 * Splits a TCP byte stream into SIP messages and RFC 5626 keepalives (a double CRLF is a ping, a
 * single CRLF a pong). Throws DecodeError on a malformed or oversized message; the connection is
 * then unusable (framing is lost) and should be closed. Messages framed before the bad one in the
 * same `push` are returned first, and the error is thrown by the next `push` (and kept in `error`).
 *
 * Linear in the bytes received however they are cut: the buffer grows by doubling, the search for
 * the blank line resumes where it stopped, and a parsed header section waits for its body without
 * being parsed again (a sender trickling one byte at a time once cost quadratic time).
 */
export class SipStreamParser {
  #buffer = new Uint8Array(1024);
  #start = 0;
  #end = 0;
  /** Where the search for CRLFCRLF resumes (absolute index in `#buffer`). */
  #scan = 0;
  /** The current message's header section, parsed (or found invalid), while its body arrives. */
  #head?: {
    readonly head?: Omit<SipMessage, 'body'>;
    readonly invalid?: InvalidMessage;
    readonly headerBytes: number;
    readonly length: number;
  };
  /** A framing error found after its message's `invalid` event was returned: thrown next. */
  #fatal?: DecodeError;
  #consumed = 0;
  #error?: DecodeError;
  #examined = 0;

  /**
   * @param role `server` (receives pings: a lone CRLF waits for a possible second one) or `client`
   * (receives pongs: a CRLF is a pong at once). RFC 5626 §4.4.1.
   */
  constructor(private readonly role: 'server' | 'client' = 'server') {}

  /** The error that ended this stream's framing, if any. */
  get error(): DecodeError | undefined {
    return this.#error;
  }

  /**
   * Bytes examined in the search for header ends, over the stream's life: stays within a small
   * multiple of the bytes received however they are cut (the test of linear framing).
   */
  get examined(): number {
    return this.#examined;
  }

  /** Bytes held that do not yet make a whole message. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  push(chunk: Uint8Array): StreamEvent[] {
    if (this.#error) throw this.#error;
    this.#append(chunk);
    const events: StreamEvent[] = [];
    for (;;) {
      let event: StreamEvent | undefined;
      try {
        if (this.#fatal) throw this.#fatal;
        event = this.#next();
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.#error = error;
        if (events.length === 0) throw error;
        return events;
      }
      if (!event) break;
      events.push(event);
    }
    return events;
  }

  #append(chunk: Uint8Array): void {
    const live = this.#end - this.#start;
    if (this.#end + chunk.byteLength > this.#buffer.byteLength) {
      const needed = live + chunk.byteLength;
      const target =
        needed <= this.#buffer.byteLength / 2
          ? this.#buffer
          : new Uint8Array(Math.max(needed, this.#buffer.byteLength * 2));
      target.set(this.#buffer.subarray(this.#start, this.#end));
      this.#scan -= this.#start;
      this.#buffer = target;
      this.#start = 0;
      this.#end = live;
    }
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.byteLength;
  }

  #next(): StreamEvent | undefined {
    const b = this.#buffer;
    const s = this.#start;
    const n = this.#end - s;
    if (n === 0) return undefined;
    if (!this.#head && b[s] === 13) {
      if (n < 2) return undefined;
      if (b[s + 1] !== 10) throw new DecodeError('sip', this.#consumed, 'CR without LF');
      const maybePing = n < 3 || (b[s + 2] === 13 && (n < 4 || b[s + 3] === 10));
      if (this.role === 'server' && maybePing && n < 4) return undefined;
      const ping = n >= 4 && b[s + 2] === 13 && b[s + 3] === 10;
      this.#take(ping ? 4 : 2);
      return { kind: 'keepalive', ping };
    }
    if (!this.#head) {
      const limit = Math.min(this.#end, s + MAX_HEADER_BYTES + 4);
      let end = -1;
      for (let i = Math.max(s, this.#scan); i + 3 < limit; i++) {
        this.#examined++;
        if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
          end = i - s;
          break;
        }
      }
      if (end < 0) {
        this.#scan = Math.max(s, limit - 3);
        if (n > MAX_HEADER_BYTES)
          throw new DecodeError('sip', this.#consumed, `header section exceeds ${MAX_HEADER_BYTES} bytes`);
        return undefined;
      }
      const text = new TextDecoder().decode(b.subarray(s, s + end));
      const lines = unfold(text);
      let length: number;
      try {
        length = announcedLength(lines, this.#consumed);
      } catch (error) {
        // The framing is lost: answer what can be answered, then the stream ends.
        if (!(error instanceof DecodeError)) throw error;
        this.#fatal = error;
        return { kind: 'invalid', invalid: invalidMessage(lines, error.reason) };
      }
      try {
        this.#head = { head: decodeHead(text, this.#consumed), headerBytes: end + 4, length };
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        this.#head = { invalid: invalidMessage(lines, error.reason), headerBytes: end + 4, length };
      }
    }
    const { head, invalid, headerBytes, length } = this.#head;
    if (n < headerBytes + length) return undefined;
    const body = new TextDecoder().decode(b.subarray(s + headerBytes, s + headerBytes + length));
    this.#take(headerBytes + length);
    if (invalid) return { kind: 'invalid', invalid };
    return { kind: 'message', message: { ...head!, body } as SipMessage };
  }

  #take(count: number): void {
    this.#start += count;
    this.#scan = this.#start;
    this.#consumed += count;
    this.#head = undefined;
    if (this.#start === this.#end) {
      this.#start = 0;
      this.#end = 0;
      this.#scan = 0;
    }
  }
}
