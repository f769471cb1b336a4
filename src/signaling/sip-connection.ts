/**
 * A SIP connection over a stream: frames messages, answers keepalive pings (RFC 5626), and gives
 * request/response helpers. Malformed input closes the connection (its framing is lost) after a
 * log line and a counter; it never throws into the event loop.
 */
import { randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../net/clock.ts';
import type { StreamConnection } from '../net/types.ts';
import { DecodeError } from '../protocol/decode-error.ts';
import {
  encodeSip,
  header,
  type InvalidMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  SipStreamParser,
} from '../protocol/sip/message.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';

export type SipConnectionEvents = {
  request: [request: SipRequest];
  response: [response: SipResponse];
  /** A pong to our ping (client side). */
  pong: [];
  /** A message that did not decode was answered or dropped; the connection goes on. */
  invalid: [reason: string];
  close: [reason?: string];
};

export const REASONS: Record<number, string> = {
  100: 'Trying',
  406: 'Not Acceptable',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  483: 'Too Many Hops',
  489: 'Bad Event',
  501: 'Not Implemented',
  505: 'Version Not Supported',
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  486: 'Busy Here',
  488: 'Not Acceptable Here',
  500: 'Server Internal Error',
  503: 'Service Unavailable',
};

/**
 * How long a started message may take to arrive whole. A sender that trickles a header (slowloris)
 * or announces a Content-Length it never sends (RFC 4475 `clerr`) is closed after this; a real
 * message arrives in one or two round trips. 10 s.
 */
export const MESSAGE_TIMEOUT_MS = 10_000;

/** Bytes queued unread by the peer beyond which the connection is closed: about 1000 messages. */
const MAX_QUEUED_BYTES = 1024 * 1024;

export interface SipConnectionInit {
  /** Starts the message timeout; without it a partial message may wait forever. */
  readonly clock?: Clock;
  /** Default `MESSAGE_TIMEOUT_MS`. */
  readonly messageTimeoutMs?: number;
}

export function newBranch(): string {
  return `z9hG4bK${randomBytes(8).toString('hex')}`;
}

export function newTag(): string {
  return randomBytes(6).toString('hex');
}

export class SipConnection extends TypedEmitter<SipConnectionEvents> {
  readonly #parser: SipStreamParser;
  #closed = false;
  #partialTimer?: Timer;
  /** Messages that could not be parsed (the connection closes on the first). */
  malformed = 0;
  /** Messages that did not decode but could be skipped (answered 400/505, or dropped). */
  invalid = 0;
  /** Closed because a started message did not arrive whole in time. */
  timedOut = false;

  constructor(
    readonly stream: StreamConnection,
    role: 'server' | 'client',
    private readonly log: (line: string) => void = () => {},
    private readonly init: SipConnectionInit = {},
  ) {
    super();
    this.#parser = new SipStreamParser(role);
    stream.on('data', (chunk) => this.#onData(chunk));
    stream.on('close', () => this.#finish('peer closed the connection'));
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(message: SipMessage): void {
    if (this.#closed) return;
    // A peer that stops reading must not make us buffer without bound: its messages are lost anyway.
    if (this.stream.bufferedBytes > MAX_QUEUED_BYTES) {
      this.close('the peer is not reading');
      return;
    }
    this.stream.write(encodeSip(message));
  }

  ping(): void {
    if (!this.#closed) this.stream.write(new TextEncoder().encode('\r\n\r\n'));
  }

  /** A response to `request` that copies Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6.2). */
  respond(request: SipRequest, status: number, extra: [string, string][] = [], body = ''): void {
    const copied = request.headers.filter(([n]) =>
      ['via', 'from', 'to', 'call-id', 'cseq'].includes(n.toLowerCase()),
    );
    const to = header(request, 'To');
    const headers = copied.map(([n, v]): [string, string] =>
      n.toLowerCase() === 'to' && to && !/;tag=/.test(to) && status >= 200 && status !== 100
        ? [n, `${v};tag=${newTag()}`]
        : [n, v],
    );
    this.send({
      kind: 'response',
      status,
      reason: REASONS[status] ?? 'Unknown',
      headers: [...headers, ...extra],
      body,
    });
  }

  /** Idempotent. */
  close(reason?: string): void {
    if (this.#closed) return;
    this.stream.close();
    this.#finish(reason);
  }

  #finish(reason?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#partialTimer?.clear();
    this.emit('close', reason);
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    let events: ReturnType<SipStreamParser['push']> = [];
    try {
      events = this.#parser.push(chunk);
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
    }
    for (const event of events) {
      if (this.#closed) return;
      if (event.kind === 'keepalive') {
        if (event.ping) this.stream.write(new TextEncoder().encode('\r\n'));
        else this.emit('pong');
      } else if (event.kind === 'invalid') this.#onInvalid(event.invalid);
      else if (event.message.kind === 'request') this.emit('request', event.message);
      else this.emit('response', event.message);
    }
    const error = this.#parser.error;
    if (error) {
      // Messages framed before the bad one were handled above; the framing is lost from here on.
      this.malformed++;
      this.log(
        `malformed SIP from ${this.stream.remote.address}:${this.stream.remote.port}: ${quoteWire(error.message)}; closing`,
      );
      this.close(`malformed SIP: ${error.message}`);
      return;
    }
    if (events.length > 0) {
      // Progress: the timeout is for one message, not for a busy stream.
      this.#partialTimer?.clear();
      this.#partialTimer = undefined;
    }
    this.#watchPartial();
  }

  /**
   * A message that did not decode but whose framing held: a request is answered (400, or 505 for
   * another SIP version, RFC 3261 §8.2.2, RFC 4475 §3.1.2), a response is dropped (§18.1.2).
   */
  #onInvalid(invalid: InvalidMessage): void {
    this.invalid++;
    this.emit('invalid', invalid.reason);
    this.log(
      `invalid SIP ${invalid.request ? 'request' : 'response'} from ${this.stream.remote.address}:${this.stream.remote.port}: ${quoteWire(invalid.reason)}`,
    );
    if (!invalid.request) return;
    const request: SipRequest = { kind: 'request', method: '', uri: '', headers: invalid.headers, body: '' };
    this.respond(request, invalid.status, [
      ['Warning', `399 sc2c "${invalid.reason.replace(/["\\]/g, "'").slice(0, 120)}"`],
    ]);
  }

  /** Arms the message timeout while a message is half in, and disarms it when none is. */
  #watchPartial(): void {
    const clock = this.init.clock;
    if (!clock || this.#closed) return;
    if (this.#parser.buffered === 0) {
      this.#partialTimer?.clear();
      this.#partialTimer = undefined;
    } else if (!this.#partialTimer) {
      this.#partialTimer = clock.setTimeout(() => {
        this.#partialTimer = undefined;
        if (this.#parser.buffered === 0) return;
        this.timedOut = true;
        this.close('a message did not arrive whole in time');
      }, this.init.messageTimeoutMs ?? MESSAGE_TIMEOUT_MS);
    }
  }
}

/**
 * Text from the wire made safe for a log line: control characters escaped (no forged lines, no
 * terminal escapes) and at most `max` characters kept.
 */
export function quoteWire(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping them is the point
  return cut.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
