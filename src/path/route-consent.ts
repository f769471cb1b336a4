/**
 * Consent on a media route (issue 16, in the manner of RFC 7675): media goes to an address only
 * while it answers STUN checks with the call's credentials (USERNAME `remote:local`,
 * MESSAGE-INTEGRITY under the peer's password, as the punch's checks).
 *
 * On the relay route the first answer is what allows media at all: before this, a callee sent video
 * to whatever relay address an INVITE advertised, so any address on the internet could be made the
 * target of a camera's stream. The check goes out over our relay leg to the peer's relayed address;
 * the peer answers back over its own, so a valid answer arriving through our allocation proves
 * that whoever holds that address knows the call's password. The peer's own checks arriving through
 * our allocation are answered the same way, and trigger a check of ours at once.
 *
 * On the direct route the punch already confirmed the address; consent starts given, is refreshed,
 * and the peer's puncher (which stays on the media socket for the whole call) answers.
 *
 * Checks are paced and bounded: 10 a second while unconfirmed, for at most `giveUpMs`, so an
 * address that never answers receives at most a hundred small packets, never media. Once
 * confirmed, a check every `refreshMs`; no valid answer for `timeoutMs` withdraws consent.
 */
import { randomBytes } from 'node:crypto';
import { type Clock, every, type Timer } from '../net/clock.ts';
import { encodeText } from '../protocol/stun/attributes.ts';
import { encodeCheck, encodeCheckAnswer, isValidAnswer, isValidCheck } from '../protocol/stun/check.ts';
import { decodeStun, isStun, StunClass, StunMethod } from '../protocol/stun/message.ts';

/** The call's ICE-style credentials from both SDPs. */
export interface ConsentCredentials {
  readonly localUfrag: string;
  readonly localPwd: string;
  readonly remoteUfrag: string;
  readonly remotePwd: string;
}

export interface RouteConsentInit {
  /** Gap between checks while unconfirmed. Default 100 ms. */
  readonly checkEveryMs?: number;
  /** Stop checking an address that has not answered after this long. Default 10 000 ms. */
  readonly giveUpMs?: number;
  /** Gap between checks once confirmed. Default 5000 ms (RFC 7675 §5.1: about every 5 s). */
  readonly refreshMs?: number;
  /** No valid answer for this long withdraws consent. Default 30 000 ms (RFC 7675 §5.1). */
  readonly timeoutMs?: number;
}

export interface RouteConsentOptions extends RouteConsentInit {
  /** Start confirmed (a direct pair the punch just confirmed). Default false. */
  readonly confirmed?: boolean;
  /** Answer the peer's checks (false where the puncher on the same socket already does). Default true. */
  readonly answer?: boolean;
}

export interface ConsentCounters {
  checksSent: number;
  checksAnswered: number;
  /** STUN on the route with a wrong USERNAME, MESSAGE-INTEGRITY or transaction: dropped. */
  rejected: number;
}

/** Outstanding transactions kept: a few seconds of checks. */
const MAX_PENDING = 64;

export class RouteConsent {
  readonly counters: ConsentCounters = { checksSent: 0, checksAnswered: 0, rejected: 0 };
  #confirmed = false;
  #startedAtMs: number;
  #lastCheckAtMs = Number.NEGATIVE_INFINITY;
  #lastAnswerAtMs = Number.NEGATIVE_INFINITY;
  readonly #pending = new Set<string>();
  readonly #tick: Timer;
  readonly #localKey: Uint8Array;
  readonly #remoteKey: Uint8Array;
  readonly #username: Uint8Array;

  constructor(
    private readonly c: { readonly clock: Clock },
    private readonly credentials: ConsentCredentials,
    /** Sends a datagram to the peer's address on this route. */
    private send: (data: Uint8Array) => void,
    private readonly init: RouteConsentOptions = {},
    private readonly onChange: (confirmed: boolean, why: string) => void = () => {},
  ) {
    this.#localKey = encodeText(credentials.localPwd);
    this.#remoteKey = encodeText(credentials.remotePwd);
    this.#username = encodeText(`${credentials.remoteUfrag}:${credentials.localUfrag}`);
    this.#startedAtMs = c.clock.now();
    this.#tick = every(c.clock, init.checkEveryMs ?? 100, () => this.#onTick());
    if (init.confirmed) this.#given();
    else this.#check();
  }

  get confirmed(): boolean {
    return this.#confirmed;
  }

  /**
   * A new leg on this route (a re-allocation, a fresh punch): unconfirmed until it answers, unless
   * it comes `confirmed` (the punch just confirmed it).
   */
  restart(send: (data: Uint8Array) => void, confirmed = false): void {
    this.send = send;
    this.#pending.clear();
    this.#startedAtMs = this.c.clock.now();
    if (confirmed) this.#given();
    else {
      this.#set(false, 'the address changed');
      this.#check();
    }
  }

  #given(): void {
    this.#lastAnswerAtMs = this.c.clock.now();
    this.#lastCheckAtMs = this.c.clock.now();
    this.#set(true, 'the punch confirmed the address');
  }

  close(): void {
    this.#tick.clear();
  }

  /** Takes a datagram that arrived over the relay route; true when it was STUN (ours to handle). */
  handle(data: Uint8Array): boolean {
    if (!isStun(data)) return false;
    try {
      const message = decodeStun(data);
      if (message.method !== StunMethod.binding || message.cls === StunClass.indication) return true;
      if (message.cls === StunClass.request) {
        const expected = `${this.credentials.localUfrag}:${this.credentials.remoteUfrag}`;
        if (!isValidCheck(data, message, expected, this.#localKey)) throw new Error('credentials');
        if (this.init.answer === false) return true;
        this.counters.checksAnswered++;
        this.send(encodeCheckAnswer(message.transactionId, this.#localKey));
        if (!this.#confirmed && this.#mayCheck()) this.#check(); // triggered check: the peer is there
        return true;
      }
      const id = Buffer.from(message.transactionId).toString('hex');
      if (!isValidAnswer(data, message, this.#remoteKey) || !this.#pending.delete(id))
        throw new Error('unknown or unsigned');
      this.#lastAnswerAtMs = this.c.clock.now();
      this.#set(true, 'the peer answered a check');
    } catch {
      this.counters.rejected++;
    }
    return true;
  }

  #onTick(): void {
    const now = this.c.clock.now();
    if (this.#confirmed) {
      if (now - this.#lastAnswerAtMs > (this.init.timeoutMs ?? 30_000)) {
        this.#set(false, 'the peer stopped answering checks');
        this.#startedAtMs = now;
      } else if (now - this.#lastCheckAtMs >= (this.init.refreshMs ?? 5000)) this.#check();
      return;
    }
    if (this.#mayCheck()) this.#check();
  }

  /** While unconfirmed: within the patience, and no faster than one check per period in all. */
  #mayCheck(): boolean {
    const now = this.c.clock.now();
    return (
      now - this.#startedAtMs <= (this.init.giveUpMs ?? 10_000) &&
      now - this.#lastCheckAtMs >= (this.init.checkEveryMs ?? 100)
    );
  }

  #check(): void {
    const transactionId = new Uint8Array(randomBytes(12));
    this.#pending.add(Buffer.from(transactionId).toString('hex'));
    if (this.#pending.size > MAX_PENDING) this.#pending.delete(this.#pending.values().next().value!);
    this.counters.checksSent++;
    this.#lastCheckAtMs = this.c.clock.now();
    this.send(encodeCheck(transactionId, this.#username, this.#remoteKey));
  }

  #set(confirmed: boolean, why: string): void {
    if (confirmed === this.#confirmed) return;
    this.#confirmed = confirmed;
    this.onChange(confirmed, why);
  }
}
