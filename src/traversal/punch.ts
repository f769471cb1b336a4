/**
 * The punch (paper §2.4, steps 20-21) as authenticated connectivity checks: STUN Binding requests
 * from the media socket to the peer's public endpoint, USERNAME `peer:local` and MESSAGE-INTEGRITY
 * under the peer's password (the per-call token), as ICE does (RFC 8445 §7.2). A valid response
 * proves both directions. Valid requests from the peer are answered, from wherever they come; one
 * from an endpoint we were not checking (a peer-reflexive candidate: the peer's NAT mapped it to a
 * port nobody could predict) joins the candidates with a triggered check at once (RFC 8445
 * §7.3.1.4), so a cone NAT with permissive filtering still connects to a random-port peer. After
 * that, a Binding indication every `keepaliveMs` keeps the NAT mappings open.
 */
import { randomBytes } from 'node:crypto';
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import { type Clock, sleep, type Timer } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import { encodeText, encodeXorAddress } from '../protocol/stun/attributes.ts';
import { encodeCheck, encodeCheckAnswer, isValidAnswer, isValidCheck } from '../protocol/stun/check.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  isStun,
  StunClass,
  StunMethod,
} from '../protocol/stun/message.ts';

export interface Credentials {
  readonly ufrag: string;
  readonly pwd: string;
}

export interface PunchInit {
  readonly local: Credentials;
  readonly remote: Credentials;
  /** Gap between checks. RFC 8445 paces checks at Ta = 50 ms; a punch wants them closer. Default 20 ms. */
  readonly intervalMs?: number;
  /** Give up after this long. Default 3000 ms. */
  readonly timeoutMs?: number;
  /** Binding indications on the established pair. Mappings can expire after 20 s (seed 003), so 15 s. */
  readonly keepaliveMs?: number;
  /**
   * Low-TTL priming (issue 21, seed 002): the first check to each candidate leaves with this TTL,
   * which crosses our own NAT (opening the mapping) and expires before the peer's (so a PKS peer
   * sees no early packet); full checks follow `waitMs` later.
   */
  readonly prime?: { readonly ttl: number; readonly waitMs: number };
}

export interface PunchComponents {
  readonly socket: UdpSocket;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface PunchSuccess {
  /** The peer endpoint that answered. */
  readonly remote: Endpoint;
  readonly checksSent: number;
  readonly elapsedMs: number;
}

export class PunchError extends Error {
  constructor(
    message: string,
    readonly checksSent: number,
  ) {
    super(message);
    this.name = 'PunchError';
  }
}

export interface PunchCounters {
  checksSent: number;
  checksAnswered: number;
  /** Packets that looked like checks but failed USERNAME or MESSAGE-INTEGRITY. */
  rejected: number;
  /** Peers' checks from endpoints we were not checking, which then became candidates. */
  peerReflexive: number;
  /** Low-TTL priming checks (issue 21), counted in `checksSent` too. */
  primed: number;
}

export class Puncher {
  readonly counters: PunchCounters = {
    checksSent: 0,
    checksAnswered: 0,
    rejected: 0,
    peerReflexive: 0,
    primed: 0,
  };
  readonly #pending = new Set<string>();
  readonly #offMessage: () => void;
  #onSuccess?: (remote: Endpoint) => void;
  /** The running punch's candidates; peer-reflexive ones are added as their checks arrive. */
  #candidates?: Endpoint[];
  #username?: Uint8Array;
  #keepalive?: Timer;
  #closed = false;
  /** Endpoints that proved the call's credentials: a valid check from them, or a valid answer. */
  readonly #verified = new Set<string>();
  /** Called once per endpoint when it first proves the call's credentials. */
  onVerified?: (from: Endpoint) => void;
  readonly #localKey: Uint8Array;
  readonly #remoteKey: Uint8Array;
  /** USERNAME of our checks: `peer:local` (RFC 8445 §7.2.2). */
  readonly #checkUsername: Uint8Array;

  constructor(
    private readonly c: PunchComponents,
    private readonly init: PunchInit,
  ) {
    this.#localKey = encodeText(init.local.pwd);
    this.#remoteKey = encodeText(init.remote.pwd);
    this.#checkUsername = encodeText(`${init.remote.ufrag}:${init.local.ufrag}`);
    // Answer the peer's checks from the start: in C2C the peer may punch first.
    this.#offMessage = c.socket.on('message', (data, from) => this.#onMessage(data, from));
  }

  /** Sends checks to `candidates` until one is answered; resolves with the pair that works. */
  async punch(candidates: readonly Endpoint[], signal?: AbortSignal): Promise<PunchSuccess> {
    const started = this.c.clock.now();
    const intervalMs = this.init.intervalMs ?? 20;
    const deadline = started + (this.init.timeoutMs ?? 3000);
    let answered: Endpoint | undefined;
    // An answer ends the wait between rounds at once: confirming at the next round's turn cost up
    // to `intervalMs` on every call (issue 19's set-up time).
    let wake = new AbortController();
    this.#onSuccess = (remote) => {
      answered ??= remote;
      wake.abort();
    };
    const username = this.#checkUsername;
    const checked = [...candidates];
    this.#candidates = checked;
    this.#username = username;
    try {
      if (this.init.prime) await this.#prime(checked, username, this.init.prime, signal);
      while (!answered && !this.#closed && this.c.clock.now() < deadline) {
        for (const candidate of checked) this.#sendCheck(candidate, username);
        const round = signal ? AbortSignal.any([signal, wake.signal]) : wake.signal;
        try {
          await sleep(this.c.clock, intervalMs, round);
        } catch (error) {
          if (signal?.aborted) throw error;
        }
        wake = new AbortController();
      }
    } finally {
      this.#onSuccess = undefined;
      this.#candidates = undefined;
    }
    if (!answered) {
      throw new PunchError(
        `no answer from ${checked.map(formatEndpoint).join(', ')} after ${this.counters.checksSent} checks in ${Math.round(this.c.clock.now() - started)} ms`,
        this.counters.checksSent,
      );
    }
    this.#startKeepalive(answered);
    return {
      remote: answered,
      checksSent: this.counters.checksSent,
      elapsedMs: this.c.clock.now() - started,
    };
  }

  /**
   * One check to `to` outside the punch's rounds (a birthday probe, traversal/birthday.ts): a valid
   * answer ends a running punch with `to` as the pair, as an answer to any of its checks does.
   */
  probe(to: Endpoint): void {
    if (this.#closed) return;
    this.#sendCheck(to, this.#checkUsername);
  }

  /**
   * One low-TTL check to each candidate, one at a time (a TTL set for one send may hold for the
   * next), then the wait. An answer during the wait (the peer's check, our triggered reply) ends it.
   */
  async #prime(
    candidates: readonly Endpoint[],
    username: Uint8Array,
    prime: { readonly ttl: number; readonly waitMs: number },
    signal?: AbortSignal,
  ): Promise<void> {
    for (const candidate of [...candidates]) {
      if (this.#closed) return;
      const transactionId = this.c.transactionId?.() ?? new Uint8Array(randomBytes(12));
      this.#pending.add(Buffer.from(transactionId).toString('hex'));
      this.counters.checksSent++;
      this.counters.primed++;
      await this.c.socket.sendWithTtl(
        encodeCheck(transactionId, username, this.#remoteKey),
        candidate,
        prime.ttl,
      );
    }
    await sleep(this.c.clock, prime.waitMs, signal).catch(() => {});
  }

  /** The endpoints being checked while a punch runs (peer-reflexive ones included). */
  get targets(): readonly Endpoint[] {
    return this.#candidates ?? [];
  }

  /**
   * True when `from` sent a check with the call's credentials or answered one of ours: the peer
   * is there, so other traffic of the call (the DTLS handshake) may go to it.
   */
  verified(from: Endpoint): boolean {
    return this.#verified.has(formatEndpoint(from));
  }

  #verify(from: Endpoint): void {
    const key = formatEndpoint(from);
    // Only the peer holds the credentials; the bound is for a peer that misbehaves.
    if (this.#verified.has(key) || this.#verified.size >= 64) return;
    this.#verified.add(key);
    this.onVerified?.(from);
  }

  /** Idempotent. Stops answering checks and sending keepalives; the socket stays open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#offMessage();
    this.#keepalive?.clear();
  }

  #sendCheck(to: Endpoint, username: Uint8Array): void {
    const transactionId = this.c.transactionId?.() ?? new Uint8Array(randomBytes(12));
    this.#pending.add(Buffer.from(transactionId).toString('hex'));
    this.counters.checksSent++;
    this.c.socket.send(encodeCheck(transactionId, username, this.#remoteKey), to);
  }

  #startKeepalive(remote: Endpoint): void {
    const keepaliveMs = this.init.keepaliveMs ?? 15_000;
    const tick = (): void => {
      if (this.#closed) return;
      const indication = encodeStun({
        method: StunMethod.binding,
        cls: StunClass.indication,
        transactionId: this.c.transactionId?.() ?? new Uint8Array(randomBytes(12)),
        attributes: [],
      });
      this.c.socket.send(addFingerprint(indication), remote);
      this.#keepalive = this.c.clock.setTimeout(tick, keepaliveMs);
    };
    this.#keepalive = this.c.clock.setTimeout(tick, keepaliveMs);
  }

  #onMessage(data: Uint8Array, from: Endpoint): void {
    if (this.#closed || !isStun(data)) return;
    let message: ReturnType<typeof decodeStun>;
    try {
      message = decodeStun(data);
    } catch {
      this.counters.rejected++;
      return;
    }
    if (message.method !== StunMethod.binding || message.cls === StunClass.indication) return;
    try {
      if (message.cls === StunClass.request) {
        const expected = `${this.init.local.ufrag}:${this.init.remote.ufrag}`;
        if (!isValidCheck(data, message, expected, this.#localKey)) throw new Error('credentials');
        this.counters.checksAnswered++;
        this.#verify(from);
        this.c.socket.send(
          encodeCheckAnswer(message.transactionId, this.#localKey, [
            { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from) },
          ]),
          from,
        );
        const checked = this.#candidates;
        if (checked && !checked.some((c) => c.address === from.address && c.port === from.port)) {
          checked.push(from);
          this.counters.peerReflexive++;
          this.#sendCheck(from, this.#username!);
        }
        return;
      }
      if (message.cls === StunClass.success) {
        const id = Buffer.from(message.transactionId).toString('hex');
        if (!this.#pending.has(id) || !isValidAnswer(data, message, this.#remoteKey))
          throw new Error('unknown or unsigned');
        this.#verify(from);
        this.#onSuccess?.(from);
      }
    } catch {
      this.counters.rejected++;
    }
  }
}
