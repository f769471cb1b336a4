/**
 * The gateway's signaling client: one persistent connection to the server (paper §2.1), REGISTER
 * with digest authentication and re-registration before expiry, RFC 5626 keepalive pings, and
 * request/response transactions matched by Via branch.
 */

import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import type { Clock, Timer } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import { OBSERVED_PIN_OPTION } from '../protocol/sc2c-info.ts';
import { digestResponse } from '../protocol/sip/digest.ts';
import { formatAuthParams, parseAuthParams } from '../protocol/sip/headers.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import type { ShortLivedCredentials } from '../relay/credentials.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { NAT_HEADER } from './presence.ts';
import { newBranch, newTag, SipConnection } from './sip-connection.ts';
import { readCredential } from './turn-credentials.ts';

export interface SignalingClientInit {
  readonly server: Endpoint;
  readonly domain: string;
  readonly user: string;
  readonly password: string;
  /** Registration lifetime asked for. Default 3600 s; re-registers at 80 % of what is granted. */
  readonly expiresS?: number;
  /** RFC 5626 keepalive ping interval. Default 30 s, well inside any NAT's TCP mapping lifetime. */
  readonly keepaliveMs?: number;
  /** How long a request waits for its final response. Default 8 s. */
  readonly timeoutMs?: number;
  /**
   * How long connecting (TCP, and TLS when used) may take. Default 10 s: a host that drops SYNs
   * would otherwise hold a starting gateway for the kernel's two minutes.
   */
  readonly connectTimeoutMs?: number;
  /** Use SIP over TLS; `ca` is the PEM the server certificate must chain to (default: system CAs). */
  readonly tls?: { readonly ca?: string; readonly servername?: string; readonly fingerprint?: string };
  /** More headers for every REGISTER (a server node's link names itself with `Sc2c-Node`). */
  readonly registerHeaders?: readonly [string, string][];
}

export interface SignalingClientComponents {
  readonly network: Network;
  readonly clock: Clock;
}

export type SignalingClientEvents = {
  request: [
    request: SipRequest,
    respond: (status: number, extra?: [string, string][], body?: string) => void,
  ];
  close: [reason?: string];
};

/** Connecting to the server took longer than `connectTimeoutMs`. */
export class ConnectTimeoutError extends Error {
  constructor(server: Endpoint) {
    super(`no answer from ${server.address}:${server.port} while connecting`);
    this.name = 'ConnectTimeoutError';
  }
}

export class SipRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'SipRequestError';
  }
}

export class SignalingClient extends TypedEmitter<SignalingClientEvents> {
  readonly #pending = new Map<string, (response: SipResponse) => void>();
  /** Fetches waiting for their NOTIFY, by Call-ID. */
  readonly #notifies = new Map<string, (body: string) => void>();
  /**
   * Our NAT as the gateway's probe classified it, sent in every REGISTER (`Sc2c-Nat`, issue 22) for
   * the server's camera list and admin page.
   */
  nat?: string;
  #cseq = 1;
  #keepalive?: Timer;
  #reregister?: Timer;
  readonly #registerCallId = `${randomBytes(8).toString('hex')}@sc2c`;
  /** The short-lived TURN credential the server issued with the last registration, if any. */
  turnCredential?: ShortLivedCredentials;
  /** The server reads a sync's pin from its own STUN server's Binding (issue 19). */
  observedPin = false;
  readonly #tag = newTag();
  #closed = false;

  private constructor(
    readonly connection: SipConnection,
    private readonly c: SignalingClientComponents,
    readonly init: SignalingClientInit,
  ) {
    super();
    connection.on('response', (response) => {
      const branch = /branch=([^;,\s]+)/.exec(header(response, 'Via') ?? '')?.[1];
      if (!branch || response.status < 200) return;
      const resolve = this.#pending.get(branch);
      this.#pending.delete(branch);
      resolve?.(response);
    });
    connection.on('request', (request) => {
      const respond = (status: number, extra: [string, string][] = [], body = ''): void =>
        connection.respond(request, status, extra, body);
      if (request.method === 'OPTIONS') {
        respond(200);
        return;
      }
      const notified =
        request.method === 'NOTIFY' ? this.#notifies.get(header(request, 'Call-ID') ?? '') : undefined;
      if (notified) {
        respond(200);
        notified(request.body);
        return;
      }
      if (!this.emit('request', request, respond) && request.method !== 'ACK') respond(405);
    });
    connection.on('close', (reason) => this.#finish(reason));
  }

  static async connect(
    components: SignalingClientComponents,
    init: SignalingClientInit,
    signal?: AbortSignal,
  ): Promise<SignalingClient> {
    const timeout = new AbortController();
    const timer = components.clock.setTimeout(
      () => timeout.abort(new ConnectTimeoutError(init.server)),
      init.connectTimeoutMs ?? 10_000,
    );
    const stream = await components.network
      .connect(init.server, {
        signal: signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal,
        tls: init.tls,
      })
      .catch((error: unknown) => {
        throw timeout.signal.aborted && !signal?.aborted ? timeout.signal.reason : error;
      })
      .finally(() => timer.clear());
    const client = new SignalingClient(new SipConnection(stream, 'client'), components, init);
    client.#scheduleKeepalive();
    return client;
  }

  get user(): string {
    return this.init.user;
  }

  uri(user = this.init.user): string {
    return `sip:${user}@${this.init.domain}`;
  }

  /** REGISTER, answering one digest challenge. Throws SipRequestError on refusal. */
  async register(): Promise<number> {
    const expires = String(this.init.expiresS ?? 3600);
    const extra: [string, string][] = [
      [
        'Contact',
        `<sip:${this.init.user}@${this.connection.stream.local.address}:${this.connection.stream.local.port};transport=tcp>`,
      ],
      ['Expires', expires],
      ...(this.nat ? [[NAT_HEADER, this.nat] as [string, string]] : []),
      ...(this.init.registerHeaders ?? []),
    ];
    let response = await this.request('REGISTER', `sip:${this.init.domain}`, extra, {
      callId: this.#registerCallId,
      to: this.uri(),
    });
    if (response.status === 401) {
      const challenge = header(response, 'WWW-Authenticate');
      if (!challenge) throw new SipRequestError(401, 'REGISTER challenged without WWW-Authenticate');
      const { params } = parseAuthParams(challenge);
      const uri = `sip:${this.init.domain}`;
      const cnonce = randomBytes(8).toString('hex');
      const algorithm = params.algorithm === 'MD5' ? 'MD5' : 'SHA-256';
      const qop = params.qop
        ?.split(',')
        .map((q) => q.trim())
        .includes('auth')
        ? ('auth' as const)
        : undefined;
      const digest = digestResponse({
        algorithm,
        username: this.init.user,
        realm: params.realm ?? '',
        password: this.init.password,
        method: 'REGISTER',
        uri,
        nonce: params.nonce ?? '',
        qop,
        nc: '00000001',
        cnonce,
      });
      const authorization = formatAuthParams(
        'Digest',
        {
          username: this.init.user,
          realm: params.realm ?? '',
          nonce: params.nonce ?? '',
          uri,
          response: digest,
          algorithm,
          ...(qop ? { qop, nc: '00000001', cnonce } : {}),
        },
        ['algorithm', 'qop', 'nc'],
      );
      response = await this.request('REGISTER', uri, [...extra, ['Authorization', authorization]], {
        callId: this.#registerCallId,
        to: this.uri(),
      });
    }
    if (response.status !== 200)
      throw new SipRequestError(response.status, `REGISTER refused: ${response.status} ${response.reason}`);
    const granted = Number(header(response, 'Expires') ?? expires);
    this.turnCredential = readCredential(response);
    this.observedPin = (header(response, 'Supported') ?? '')
      .split(',')
      .some((tag) => tag.trim() === OBSERVED_PIN_OPTION);
    this.#reregister?.clear();
    if (granted > 0) {
      // Re-register at 80 % of the registration or of the TURN credential, whichever ends first.
      const credentialS = this.turnCredential
        ? this.turnCredential.expiresAtS - this.c.clock.epochMs() / 1000
        : granted;
      this.#reregister = this.c.clock.setTimeout(
        () => {
          this.register().catch(() => this.connection.close('re-registration failed'));
        },
        Math.max(1, Math.min(granted, credentialS)) * 800,
      );
    }
    return granted;
  }

  /**
   * Fetches state from the server (RFC 6665 §4.4.3): SUBSCRIBE to `event` with `Expires: 0`; the
   * server answers 200 and sends the state in one NOTIFY, whose body this resolves with. Rejects
   * with `SipRequestError` on a refusal, and on no NOTIFY within `timeoutMs`.
   */
  async fetchState(event: string): Promise<string> {
    const callId = `${randomBytes(8).toString('hex')}@sc2c`;
    let timer: Timer | undefined;
    // Waiting before the SUBSCRIBE leaves: the NOTIFY may overtake the 200 (§4.1.2.4).
    const notified = new Promise<string>((resolve, reject) => {
      this.#notifies.set(callId, resolve);
      timer = this.c.clock.setTimeout(
        () => reject(new SipRequestError(408, `no NOTIFY for ${event}`)),
        this.init.timeoutMs ?? 8000,
      );
    });
    notified.catch(() => undefined);
    try {
      const response = await this.request(
        'SUBSCRIBE',
        `sip:${this.init.domain}`,
        [
          ['Event', event],
          ['Expires', '0'],
          ['Accept', 'application/json'],
          ['Contact', `<${this.uri()}>`],
        ],
        { callId },
      );
      if (response.status !== 200)
        throw new SipRequestError(
          response.status,
          `SUBSCRIBE ${event} refused: ${response.status} ${response.reason}`,
        );
      return await notified;
    } finally {
      timer?.clear();
      this.#notifies.delete(callId);
    }
  }

  /** Sends a request and resolves with its final response (or rejects on timeout or close). */
  request(
    method: string,
    uri: string,
    extra: [string, string][] = [],
    options: { callId?: string; to?: string; toTag?: string; body?: string } = {},
  ): Promise<SipResponse> {
    if (this.#closed) return Promise.reject(new Error('signaling connection is closed'));
    const branch = newBranch();
    const local = this.connection.stream.local;
    const to = `<${options.to ?? uri}>${options.toTag ? `;tag=${options.toTag}` : ''}`;
    this.connection.send({
      kind: 'request',
      method,
      uri,
      headers: [
        ['Via', `SIP/2.0/TCP ${local.address}:${local.port};branch=${branch}`],
        ['Max-Forwards', '70'],
        ['From', `<${this.uri()}>;tag=${this.#tag}`],
        ['To', to],
        ['Call-ID', options.callId ?? `${randomBytes(8).toString('hex')}@sc2c`],
        ['CSeq', `${this.#cseq++} ${method}`],
        ...extra,
      ],
      body: options.body ?? '',
    });
    if (method === 'ACK')
      return Promise.resolve({ kind: 'response', status: 200, reason: 'OK', headers: [], body: '' });
    return new Promise((resolve, reject) => {
      const timer = this.c.clock.setTimeout(() => {
        this.#pending.delete(branch);
        reject(new SipRequestError(408, `${method} timed out`));
      }, this.init.timeoutMs ?? 8000);
      this.#pending.set(branch, (response) => {
        timer.clear();
        if (response.status === 0) reject(new Error('signaling connection closed'));
        else resolve(response);
      });
    });
  }

  /** Idempotent. Unregisters nothing: closing the connection ends the registration on our server. */
  close(): void {
    this.connection.close('client closing');
    this.#finish('client closing');
  }

  #scheduleKeepalive(): void {
    const every = this.init.keepaliveMs ?? 30_000;
    const tick = (): void => {
      if (this.#closed) return;
      this.connection.ping();
      this.#keepalive = this.c.clock.setTimeout(tick, every);
    };
    this.#keepalive = this.c.clock.setTimeout(tick, every);
  }

  #finish(reason?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#keepalive?.clear();
    this.#reregister?.clear();
    for (const resolve of this.#pending.values())
      resolve({ kind: 'response', status: 0, reason: 'closed', headers: [], body: '' });
    this.#pending.clear();
    this.emit('close', reason);
  }
}
