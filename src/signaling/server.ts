/**
 * `sc2c server`'s signaling core: a SIP registrar and router over persistent connections (paper
 * §2.1: registration stays open on TCP so it never disturbs UDP port prediction), and the SC2C
 * coordinator (paper §2.3, steps 17-19, carried further: it measures each party's round trip on its
 * own connection and sends the two go messages so that they arrive together).
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock, Timer } from '../net/clock.ts';
import type { Network, StreamServer } from '../net/types.ts';
import { parseNameAddr, uriUser } from '../protocol/sip/headers.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import { DigestAuthenticator } from './registrar.ts';
import { newBranch, SipConnection } from './sip-connection.ts';
import { type CredentialIssuer, credentialHeader, withoutCredential } from './turn-credentials.ts';

/** SIP `Event` of the PUBLISH that carries a call record from a gateway to the server (issue 6). */
export const CALL_RECORD_EVENT = 'sc2c-call-record';
export const CALL_RECORD_CONTENT_TYPE = 'application/sc2c-call-record+json';
export const SC2C_CONTENT_TYPE = 'application/sc2c+json';
/** Longest registration we grant; clients re-register before it runs out. */
const MAX_EXPIRES_S = 3600;
/** Go schedules kept for inspection; older ones are dropped so a long-running server stays bounded. */
const MAX_SCHEDULES = 1000;
/** How long the coordinator waits for an OPTIONS answer when measuring a party's round trip. */
const RTT_PROBE_TIMEOUT_MS = 2000;

export interface SignalingServerInit {
  readonly listen: { readonly address?: string; readonly port: number };
  /** Also listen for SIP over TLS (RFC 3261 §26.2) with this PEM certificate and key. */
  readonly tls?: { readonly port: number; readonly cert: string; readonly key: string };
  readonly realm: string;
  readonly users: Readonly<Record<string, string>>;
  /**
   * Re-measure each registered party's round trip this often, so a sync can use a fresh figure
   * instead of measuring while both parties wait (which gives ports more time to move). Default
   * 20 000 ms; figures older than 3 periods are measured again at sync time.
   */
  readonly rttRefreshMs?: number;
  readonly log?: (line: string) => void;
  /**
   * Where a registered gateway's PUBLISH with `Event: sc2c-call-record` goes (its body and the
   * publishing user). Resolves once the record is stored (the 200 promises durability); throws to
   * refuse it (400 with the reason). Without it, such a PUBLISH gets 489 Bad Event.
   */
  readonly onCallRecord?: (body: string, user: string) => Promise<void>;
  /**
   * Issue short-lived TURN credentials (REST form) under this secret: one in the 200 to each
   * REGISTER, one in each INVITE forwarded to the called party. Without it, none are issued and
   * gateways use their long-term credentials.
   */
  readonly turnCredentials?: CredentialIssuer;
}

export interface SignalingServerComponents {
  readonly network: Network;
  readonly clock: Clock;
}

interface Registration {
  readonly user: string;
  readonly connection: SipConnection;
  readonly contact: string;
  expiresAtMs: number;
}

interface Dialog {
  readonly callId: string;
  readonly caller: SipConnection;
  readonly callee: SipConnection;
  readonly callerUser: string;
  readonly calleeUser: string;
  readonly startedAtMs: number;
  state: 'inviting' | 'confirmed' | 'ended';
}

export interface SignalingCounters {
  registrations: number;
  authFailures: number;
  invites: number;
  notFound: number;
  syncs: number;
  malformed: number;
}

export interface GoSchedule {
  readonly callId: string;
  readonly rttMs: { readonly caller: number; readonly callee: number };
  /** Delay before each go was sent; the nearer party waits for the farther one. */
  readonly delayMs: { readonly caller: number; readonly callee: number };
}

export class SignalingServer {
  readonly counters: SignalingCounters = {
    registrations: 0,
    authFailures: 0,
    invites: 0,
    notFound: 0,
    syncs: 0,
    malformed: 0,
  };
  readonly schedules: GoSchedule[] = [];
  readonly #registrations = new Map<string, Registration>();
  readonly #dialogs = new Map<string, Dialog>();
  readonly #connections = new Set<SipConnection>();
  /** Server-originated requests waiting for an answer, by Via branch. */
  readonly #pending = new Map<string, (response: SipResponse) => void>();
  readonly #auth: DigestAuthenticator;
  /** Latest round trip per connection, kept fresh in the background. */
  readonly #rtts = new Map<SipConnection, { rttMs?: number; atMs: number; timer?: Timer }>();
  #cseq = 1;
  #listener?: StreamServer;
  #tlsListener?: StreamServer;

  private constructor(
    private readonly c: SignalingServerComponents,
    private readonly init: SignalingServerInit,
  ) {
    this.#auth = new DigestAuthenticator(init.realm, init.users, () => c.clock.now());
  }

  static async start(
    components: SignalingServerComponents,
    init: SignalingServerInit,
  ): Promise<SignalingServer> {
    const server = new SignalingServer(components, init);
    server.#listener = await components.network.listen({
      address: init.listen.address,
      port: init.listen.port,
    });
    server.#listener.on('connection', (stream) =>
      server.#accept(new SipConnection(stream, 'server', (l) => server.#log(l))),
    );
    if (init.tls) {
      server.#tlsListener = await components.network.listen({
        address: init.listen.address,
        port: init.tls.port,
        tls: init.tls,
      });
      server.#tlsListener.on('connection', (stream) =>
        server.#accept(new SipConnection(stream, 'server', (l) => server.#log(l))),
      );
    }
    return server;
  }

  get local(): Endpoint {
    return this.#listener!.local;
  }

  /** The SIP-over-TLS listener, when TLS is configured. */
  get tlsLocal(): Endpoint | undefined {
    return this.#tlsListener?.local;
  }

  registrations(): { user: string; contact: string; expiresInS: number; remote: Endpoint }[] {
    const now = this.c.clock.now();
    return [...this.#registrations.values()]
      .filter((r) => r.expiresAtMs > now)
      .map((r) => ({
        user: r.user,
        contact: r.contact,
        expiresInS: Math.round((r.expiresAtMs - now) / 1000),
        remote: r.connection.stream.remote,
      }));
  }

  calls(): { callId: string; caller: string; callee: string; state: string }[] {
    return [...this.#dialogs.values()].map((d) => ({
      callId: d.callId,
      caller: d.callerUser,
      callee: d.calleeUser,
      state: d.state,
    }));
  }

  /** Idempotent: stops listening and closes every connection. */
  close(): void {
    for (const entry of this.#rtts.values()) entry.timer?.clear();
    this.#rtts.clear();
    this.#listener?.close();
    this.#tlsListener?.close();
    for (const connection of this.#connections) connection.close('server closing');
    this.#connections.clear();
  }

  #log(line: string): void {
    this.init.log?.(line);
  }

  #accept(connection: SipConnection): void {
    this.#connections.add(connection);
    connection.on('request', (request) => this.#onRequest(connection, request));
    connection.on('response', (response) => this.#onResponse(connection, response));
    connection.on('close', () => {
      this.#rtts.get(connection)?.timer?.clear();
      this.#rtts.delete(connection);
      this.#connections.delete(connection);
      this.counters.malformed += connection.malformed;
      for (const [user, registration] of this.#registrations)
        if (registration.connection === connection) this.#registrations.delete(user);
      for (const [callId, dialog] of this.#dialogs) {
        if (dialog.caller === connection || dialog.callee === connection) this.#dialogs.delete(callId);
      }
    });
  }

  #userOf(connection: SipConnection): string | undefined {
    const now = this.c.clock.now();
    for (const registration of this.#registrations.values()) {
      if (registration.connection === connection && registration.expiresAtMs > now) return registration.user;
    }
    return undefined;
  }

  #onRequest(connection: SipConnection, request: SipRequest): void {
    try {
      switch (request.method) {
        case 'REGISTER':
          this.#register(connection, request);
          return;
        case 'INVITE':
          this.#invite(connection, request);
          return;
        case 'OPTIONS':
          connection.respond(request, 200);
          return;
        case 'PUBLISH':
          this.#publish(connection, request);
          return;
        case 'ACK':
        case 'BYE':
        case 'CANCEL':
        case 'INFO':
          this.#inDialog(connection, request);
          return;
        default:
          connection.respond(request, 405, [
            ['Allow', 'REGISTER, INVITE, ACK, BYE, CANCEL, INFO, OPTIONS, PUBLISH'],
          ]);
      }
    } catch (error) {
      this.counters.malformed++;
      this.#log(`bad ${request.method}: ${(error as Error).message}`);
      if (request.method !== 'ACK') connection.respond(request, 400);
    }
  }

  #register(connection: SipConnection, request: SipRequest): void {
    const auth = this.#auth.check(request);
    if (!auth.ok) {
      // A 401 without credentials is the normal first half of digest authentication: not worth a line.
      if (auth.status === 403) this.counters.authFailures++;
      if (auth.reason !== 'no credentials') this.#log(`REGISTER refused (${auth.status}): ${auth.reason}`);
      connection.respond(request, auth.status, auth.challenge ? [['WWW-Authenticate', auth.challenge]] : []);
      return;
    }
    const to = uriUser(parseNameAddr(header(request, 'To') ?? '').uri);
    if (to !== auth.user) {
      connection.respond(request, 403);
      return;
    }
    const contact = header(request, 'Contact') ?? `<sip:${auth.user}@${connection.stream.remote.address}>`;
    const asked = Number(header(request, 'Expires') ?? /expires=(\d+)/.exec(contact)?.[1] ?? MAX_EXPIRES_S);
    const expiresS = Number.isFinite(asked) ? Math.max(0, Math.min(MAX_EXPIRES_S, asked)) : MAX_EXPIRES_S;
    if (expiresS === 0) this.#registrations.delete(auth.user);
    else {
      this.#registrations.set(auth.user, {
        user: auth.user,
        connection,
        contact,
        expiresAtMs: this.c.clock.now() + expiresS * 1000,
      });
      this.counters.registrations++;
      if (!this.#rtts.has(connection)) this.#trackRtt(connection);
    }
    const issuer = this.init.turnCredentials;
    connection.respond(request, 200, [
      ['Contact', `${contact.replace(/;expires=\d+/, '')};expires=${expiresS}`],
      ['Expires', String(expiresS)],
      ...(issuer && expiresS > 0 ? [credentialHeader(issuer, auth.user, this.c.clock.epochMs())] : []),
    ]);
  }

  /** A call record from a registered gateway (RFC 3903 PUBLISH, our event package). */
  #publish(connection: SipConnection, request: SipRequest): void {
    const user = this.#userOf(connection);
    if (!user) {
      connection.respond(request, 403);
      return;
    }
    if (header(request, 'Event') !== CALL_RECORD_EVENT || !this.init.onCallRecord) {
      connection.respond(request, 489);
      return;
    }
    this.init.onCallRecord(request.body, user).then(
      () => connection.respond(request, 200),
      (error: Error) => {
        this.#log(`call record from ${user} refused: ${error.message}`);
        connection.respond(request, 400, [
          ['Warning', `399 sc2c "${error.message.replace(/["\r\n]/g, "'")}"`],
        ]);
      },
    );
  }

  #invite(connection: SipConnection, request: SipRequest): void {
    this.counters.invites++;
    const callerUser = this.#userOf(connection);
    if (!callerUser) {
      connection.respond(request, 403);
      return;
    }
    const calleeUser = uriUser(request.uri);
    const callee = calleeUser ? this.#registrations.get(calleeUser) : undefined;
    if (!callee || callee.expiresAtMs <= this.c.clock.now() || callee.connection.closed) {
      this.counters.notFound++;
      connection.respond(request, 404);
      return;
    }
    const callId = header(request, 'Call-ID');
    if (!callId) {
      connection.respond(request, 400);
      return;
    }
    this.#dialogs.set(callId, {
      callId,
      caller: connection,
      callee: callee.connection,
      callerUser,
      calleeUser: calleeUser!,
      startedAtMs: this.c.clock.now(),
      state: 'inviting',
    });
    const issuer = this.init.turnCredentials;
    const forwarded = withoutCredential(request);
    callee.connection.send(
      issuer
        ? {
            ...forwarded,
            headers: [...forwarded.headers, credentialHeader(issuer, callee.user, this.c.clock.epochMs())],
          }
        : forwarded,
    );
  }

  #inDialog(connection: SipConnection, request: SipRequest): void {
    const dialog = this.#dialogs.get(header(request, 'Call-ID') ?? '');
    if (!dialog || (connection !== dialog.caller && connection !== dialog.callee)) {
      if (request.method !== 'ACK') connection.respond(request, 481);
      return;
    }
    if (request.method === 'INFO' && header(request, 'Content-Type') === SC2C_CONTENT_TYPE) {
      const body = JSON.parse(request.body) as { type?: string; schedule?: string };
      if (body.type === 'sync') {
        connection.respond(request, 200);
        this.counters.syncs++;
        void this.#sync(dialog, body.schedule === 'naive').catch((error) =>
          this.#log(`sync ${dialog.callId} failed: ${(error as Error).message}`),
        );
        return;
      }
    }
    if (request.method === 'ACK') dialog.state = 'confirmed';
    if (request.method === 'BYE') dialog.state = 'ended';
    (connection === dialog.caller ? dialog.callee : dialog.caller).send(request);
  }

  #onResponse(connection: SipConnection, response: SipResponse): void {
    const branch = /branch=([^;,\s]+)/.exec(header(response, 'Via') ?? '')?.[1];
    const pending = branch ? this.#pending.get(branch) : undefined;
    if (pending) {
      this.#pending.delete(branch!);
      pending(response);
      return;
    }
    const dialog = this.#dialogs.get(header(response, 'Call-ID') ?? '');
    if (!dialog) return;
    const cseq = header(response, 'CSeq') ?? '';
    if (/INVITE$/.test(cseq) && response.status >= 300) this.#dialogs.delete(dialog.callId);
    if (/BYE$/.test(cseq) && response.status >= 200) this.#dialogs.delete(dialog.callId);
    (connection === dialog.caller ? dialog.callee : dialog.caller).send(response);
  }

  /** Sends a request of our own on `connection` and resolves with its final response. */
  #request(
    connection: SipConnection,
    method: string,
    callId: string,
    extra: [string, string][] = [],
    body = '',
  ): Promise<SipResponse> {
    const branch = newBranch();
    const host = this.local.address;
    connection.send({
      kind: 'request',
      method,
      uri: `sip:${this.#userOf(connection) ?? 'peer'}@${this.init.realm}`,
      headers: [
        ['Via', `SIP/2.0/TCP ${host}:${this.local.port};branch=${branch}`],
        ['From', `<sip:sc2c@${this.init.realm}>;tag=server`],
        ['To', `<sip:${this.#userOf(connection) ?? 'peer'}@${this.init.realm}>`],
        ['Call-ID', callId],
        ['CSeq', `${this.#cseq++} ${method}`],
        ['Max-Forwards', '70'],
        ...extra,
      ],
      body,
    });
    return new Promise((resolve, reject) => {
      const timer = this.c.clock.setTimeout(() => {
        this.#pending.delete(branch);
        reject(new Error(`${method} to ${connection.stream.remote.address} timed out`));
      }, RTT_PROBE_TIMEOUT_MS);
      this.#pending.set(branch, (response) => {
        timer.clear();
        resolve(response);
      });
    });
  }

  /** Measures a registered connection's round trip now and then every `rttRefreshMs`. */
  #trackRtt(connection: SipConnection): void {
    const entry: { rttMs?: number; atMs: number; timer?: Timer } = { atMs: 0 };
    this.#rtts.set(connection, entry);
    const measure = (): void => {
      if (connection.closed || this.#rtts.get(connection) !== entry) return;
      this.#rtt(connection, `rtt-${newBranch()}`)
        .then((rttMs) => {
          entry.rttMs = rttMs;
          entry.atMs = this.c.clock.now();
        })
        .catch(() => {})
        .finally(() => {
          if (this.#rtts.get(connection) === entry)
            entry.timer = this.c.clock.setTimeout(measure, this.init.rttRefreshMs ?? 20_000);
        });
    };
    measure();
  }

  /** A recent round trip for `connection`, measuring it now only when none is fresh enough. */
  async #recentRtt(connection: SipConnection, callId: string): Promise<number> {
    const entry = this.#rtts.get(connection);
    const maxAgeMs = 3 * (this.init.rttRefreshMs ?? 20_000);
    if (entry?.rttMs !== undefined && this.c.clock.now() - entry.atMs <= maxAgeMs) return entry.rttMs;
    return this.#rtt(connection, callId);
  }

  /** Round trip to a party over its own connection: the least of two OPTIONS exchanges. */
  async #rtt(connection: SipConnection, callId: string): Promise<number> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 2; i++) {
      const sent = this.c.clock.now();
      await this.#request(connection, 'OPTIONS', `${callId}-rtt`);
      best = Math.min(best, this.c.clock.now() - sent);
    }
    return best;
  }

  /**
   * Steps 17-19. Each go should arrive when the other does, so the party with the shorter one-way
   * delay (half its round trip) gets its go later, by the difference. `naive` sends both at once,
   * as the paper does, for comparison.
   */
  async #sync(dialog: Dialog, naive: boolean): Promise<void> {
    const [caller, callee] = await Promise.all([
      this.#recentRtt(dialog.caller, dialog.callId),
      this.#recentRtt(dialog.callee, dialog.callId),
    ]);
    const far = Math.max(caller, callee) / 2;
    const delayMs = naive ? { caller: 0, callee: 0 } : { caller: far - caller / 2, callee: far - callee / 2 };
    this.schedules.push({ callId: dialog.callId, rttMs: { caller, callee }, delayMs });
    if (this.schedules.length > MAX_SCHEDULES)
      this.schedules.splice(0, this.schedules.length - MAX_SCHEDULES);
    const go = (connection: SipConnection): void => {
      void this.#request(
        connection,
        'INFO',
        dialog.callId,
        [['Content-Type', SC2C_CONTENT_TYPE]],
        JSON.stringify({ type: 'go' }),
      ).catch(() => {});
    };
    this.c.clock.setTimeout(() => go(dialog.caller), delayMs.caller);
    this.c.clock.setTimeout(() => go(dialog.callee), delayMs.callee);
  }
}
