/**
 * A SIP connection over a stream: frames messages, answers keepalive pings (RFC 5626), and gives
 * request/response helpers. Malformed input closes the connection (its framing is lost) after a
 * log line and a counter; it never throws into the event loop.
 */
import { randomBytes } from 'node:crypto';
import type { StreamConnection } from '../net/types.ts';
import { DecodeError } from '../protocol/decode-error.ts';
import {
  encodeSip,
  header,
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
  close: [reason?: string];
};

export const REASONS: Record<number, string> = {
  100: 'Trying',
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

export function newBranch(): string {
  return `z9hG4bK${randomBytes(8).toString('hex')}`;
}

export function newTag(): string {
  return randomBytes(6).toString('hex');
}

export class SipConnection extends TypedEmitter<SipConnectionEvents> {
  readonly #parser: SipStreamParser;
  #closed = false;
  /** Messages that could not be parsed (the connection closes on the first). */
  malformed = 0;

  constructor(
    readonly stream: StreamConnection,
    role: 'server' | 'client',
    private readonly log: (line: string) => void = () => {},
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
    if (!this.#closed) this.stream.write(encodeSip(message));
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
    this.emit('close', reason);
  }

  #onData(chunk: Uint8Array): void {
    let events: ReturnType<SipStreamParser['push']>;
    try {
      events = this.#parser.push(chunk);
    } catch (error) {
      this.malformed++;
      const why = error instanceof DecodeError ? error.message : String(error);
      this.log(
        `malformed SIP from ${this.stream.remote.address}:${this.stream.remote.port}: ${why}; closing`,
      );
      this.close(`malformed SIP: ${why}`);
      return;
    }
    for (const event of events) {
      if (event.kind === 'keepalive') {
        if (event.ping) this.stream.write(new TextEncoder().encode('\r\n'));
        else this.emit('pong');
      } else if (event.message.kind === 'request') this.emit('request', event.message);
      else this.emit('response', event.message);
    }
  }
}
