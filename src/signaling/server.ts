/**
 * `sc2c server`'s signaling core: SIP over persistent connections (paper §2.1: registration stays
 * open on TCP so it never disturbs UDP port prediction). It composes the registrar's table, the
 * dialog table and the SC2C coordinator, and is where every SIP message from the network enters:
 * each is checked, bounded and answered here (issue 16).
 *
 * Who may do what:
 * - only an authenticated, registered connection may call or publish; the callee's access list
 *   decides who may call it (403 otherwise, before anything reaches the callee);
 * - the server asserts the caller's identity (`P-Asserted-Identity`, RFC 3325, and `From` rewritten
 *   from the registration): what a client wrote there is never passed on;
 * - a response is taken only from the party the request was forwarded to, an in-dialog request
 *   only from one of the dialog's two parties.
 */
import type { Endpoint } from '../net/address.ts';
import type { Timer } from '../net/clock.ts';
import type { StreamConnection, StreamServer } from '../net/types.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import { type Accounts, accountsFrom } from './accounts.ts';
import { Admission } from './admission.ts';
import { Coordinator, type GoSchedule } from './coordinator.ts';
import { type Dialog, DialogTable, type Party } from './dialogs.ts';
import { storedDialog } from './forwarding.ts';
import { assertIdentity } from './identity.ts';
import { Invites } from './invites.ts';
import { NodeLinks } from './node-links.ts';
import { OwnRequests } from './own-requests.ts';
import { Presence } from './presence.ts';
import { Registrar } from './registrar.ts';
import { Registrations } from './registrations.ts';
import { checkRequest, transactionKey } from './request-checks.ts';
import {
  newCounters,
  type SignalingCounters,
  type SignalingServerComponents,
  type SignalingServerInit,
} from './server-init.ts';
import { quoteWire, SipConnection } from './sip-connection.ts';
import { StateRequests } from './state-requests.ts';
import { SC2C_CONTENT_TYPE, Syncs } from './syncs.ts';
import { FailureThrottle } from './throttle.ts';
import {
  type CallView,
  type CameraView,
  callView,
  cameraViews,
  type RegistrationView,
  registrationView,
} from './views.ts';

export type { GoSchedule } from './coordinator.ts';
export type {
  SignalingCounters,
  SignalingLimits,
  SignalingServerComponents,
  SignalingServerInit,
} from './server-init.ts';

import type { ServerParts } from './server-parts.ts';

export { CALL_RECORD_EVENT } from './state-requests.ts';
export type { CallView, CameraView, RegistrationView } from './views.ts';
export const CALL_RECORD_CONTENT_TYPE = 'application/sc2c-call-record+json';
export { SC2C_CONTENT_TYPE } from './syncs.ts';

/** How long the store keeps a confirmed dialog (issue 24): a day; a BYE removes it before. */
const STORED_DIALOG_TTL_MS = 24 * 3600_000;

interface ConnectionState {
  readonly id: string;
  readonly source: string;
  idleTimer?: Timer;
}

export class SignalingServer {
  readonly counters: SignalingCounters = newCounters();
  readonly #accounts: Accounts;
  readonly #registrar = new Registrar<SipConnection>();
  readonly #presence = new Presence();
  readonly #state: StateRequests;
  readonly #dialogs: DialogTable<SipConnection>;
  readonly #coordinator: Coordinator<SipConnection>;
  readonly #registrations: Registrations;
  readonly #throttle: FailureThrottle;
  readonly #syncs: Syncs;
  readonly #connections = new Map<SipConnection, ConnectionState>();
  readonly #admission: Admission;
  readonly #own: OwnRequests;
  /** INVITEs waiting for their final answer, to answer the caller if the callee vanishes. */
  readonly #invites = new Map<string, SipRequest>();
  readonly #router: Invites;
  #storeHealthy = true;
  readonly #timers = new Set<Timer>();
  #sweepTimer?: Timer;
  #serial = 0;
  #closed = false;
  #listener?: StreamServer;
  #tlsListener?: StreamServer;
  /** Issue 24: links to the other nodes, when this one is in a cluster. */
  readonly #links: NodeLinks;

  private constructor(
    private readonly c: SignalingServerComponents,
    private readonly init: SignalingServerInit,
  ) {
    this.#accounts = accountsFrom(init.users);
    this.#throttle = new FailureThrottle(init.throttle);
    this.#dialogs = new DialogTable(init.dialogs);
    this.#admission = new Admission(init.limits);
    this.#own = new OwnRequests({
      clock: c.clock,
      realm: init.realm,
      local: () => this.local,
      userOf: (connection) => this.#registrar.userOf(connection, c.clock.now()),
    });
    this.#links = new NodeLinks({
      onRequest: (connection, request) => this.#onRequest(connection, request),
      onResponse: (connection, response) => this.#onResponse(connection, response),
      up: (node, connection) => this.#linkUp(node, connection),
      down: (node, connection) => this.#linkDown(node, connection),
      announced: (ok) => {
        this.#storeHealthy = ok;
      },
      authFailed: (source, reason) => {
        this.counters.authFailures++;
        this.#log(`REGISTER from ${source} refused (403): ${reason}`);
        if (this.#throttle.fail(source, c.clock.now()))
          this.#log(`throttling logins from ${source}: repeated failures`);
      },
    });
    this.#state = new StateRequests({
      userOf: (connection) => this.#registrar.userOf(connection, c.clock.now()),
      own: this.#own,
      fetchable: init.fetchable,
      onCallRecord: init.onCallRecord,
      log: (line) => this.#log(line),
    });
    this.#coordinator = new Coordinator({
      clock: c.clock,
      rttRefreshMs: init.rttRefreshMs,
      request: (connection, method, callId, body) =>
        this.#own.send(
          connection,
          method,
          callId,
          body ? [['Content-Type', SC2C_CONTENT_TYPE]] : [],
          body ?? '',
        ),
    });
    const parts: ServerParts = {
      clock: c.clock,
      counters: this.counters,
      realm: init.realm,
      accounts: this.#accounts,
      registrar: this.#registrar,
      dialogs: this.#dialogs,
      links: this.#links,
      store: c.store,
      node: init.node ?? 'main',
      turnCredentials: init.turnCredentials,
      log: (line, level, fields) => this.#log(line, level, fields),
    };
    this.#registrations = new Registrations({
      ...parts,
      throttle: this.#throttle,
      presence: this.#presence,
      coordinator: this.#coordinator,
      observedPins: init.bindings !== undefined,
      stored: (what, write) => this.#stored(what, write),
      settled: (connection) => {
        const state = this.#connections.get(connection);
        state?.idleTimer?.clear();
        if (state) state.idleTimer = undefined;
      },
      unsettled: (connection) => {
        const state = this.#connections.get(connection);
        if (state) this.#armIdle(connection, state);
      },
    });
    this.#router = new Invites({
      ...parts,
      invites: this.#invites,
      opened: () => this.#scheduleSweep(),
      inDialog: (connection, request) => this.#inDialog(connection, request),
      pass: (from, to, message) => this.#pass(from, to, message),
    });
    this.#syncs = new Syncs({
      clock: c.clock,
      counters: this.counters,
      realm: init.realm,
      bindings: init.bindings,
      coordinator: this.#coordinator,
      dialogs: this.#dialogs,
      pass: (from, to, message) => this.#pass(from, to, message),
      log: (line) => this.#log(line),
      syncsPerSecond: init.limits?.syncsPerSecond ?? 1,
      maxDialogs: init.dialogs?.maxDialogs ?? 10_000,
    });
  }

  static async start(
    components: SignalingServerComponents,
    init: SignalingServerInit,
  ): Promise<SignalingServer> {
    if (init.cluster && !components.store) throw new Error('a cluster node needs a shared store');
    const server = new SignalingServer(components, init);
    server.#listener = await components.network.listen({
      address: init.listen.address,
      port: init.listen.port,
    });
    server.#listener.on('connection', (stream) => server.#accept(stream));
    if (init.tls) {
      server.#tlsListener = await components.network.listen({
        address: init.listen.address,
        port: init.tls.port,
        tls: init.tls,
      });
      server.#tlsListener.on('connection', (stream) => server.#accept(stream));
    }
    try {
      await server.#joinStore();
    } catch (error) {
      server.close();
      throw error;
    }
    return server;
  }

  /** This node's id in the store (issue 24). */
  get node(): string {
    return this.init.node ?? 'main';
  }

  /**
   * Issue 24, at start: the dialogs this node had confirmed before it stopped come back (their
   * parties lost until they return), its registrations are marked stale (their connections are
   * gone), and in a cluster it announces itself and links to the nodes its dialogs reach.
   */
  async #joinStore(): Promise<void> {
    const store = this.c.store;
    if (!store) return;
    const now = this.c.clock.now();
    const restored = await store.dialogsOf(this.node);
    for (const stored of restored) {
      const dialog = this.#dialogs.restore(stored, now);
      if (dialog) this.#partyLost(dialog);
    }
    const stale = await store.registrationsOf(this.node);
    await Promise.all(stale.map((r) => store.putRegistration({ ...r, stale: true })));
    if (restored.length > 0 || stale.length > 0)
      this.#log(
        `node ${this.node}: ${restored.length} dialogs restored, ${stale.length} registrations marked stale until their gateways return`,
        'info',
        { event: 'restored', dialogs: restored.length, staleRegistrations: stale.length },
      );
    const cluster = this.init.cluster;
    if (!cluster) return;
    const advertise = cluster.advertise ?? this.local;
    if (advertise.address === '0.0.0.0' || advertise.address === '::')
      throw new Error('a cluster node listening on a wildcard address needs cluster.advertise');
    await this.#links.join(
      { network: this.c.network, clock: this.c.clock, store },
      { ...cluster, node: this.node, advertise, realm: this.init.realm },
      restored.flatMap((d) => [d.caller.node, d.callee.node]).filter((n): n is string => n !== undefined),
    );
  }

  /** A link to `node` is up (either side opened it): track its round trip, re-bind its calls. */
  #linkUp(node: string, connection: SipConnection): void {
    this.#coordinator.track(connection);
    const moved = this.#dialogs.rebindNode(node, connection);
    this.#log(`link to node ${node} up${moved ? ` (${moved} call parties back)` : ''}`, 'info', {
      event: 'link-up',
      node,
    });
  }

  #linkDown(node: string, connection: SipConnection): void {
    this.#coordinator.forget(connection);
    this.#own.forget(connection);
    if (this.#closed) return;
    this.#log(`link to node ${node} closed`, 'warn', { event: 'link-down', node });
    for (const dialog of this.#dialogs.loseConnection(connection, this.c.clock.now()))
      this.#partyLost(dialog);
  }

  /** Writes to the store in the background; a failure is counted and logged, never thrown. */
  #stored(what: string, write: Promise<unknown> | undefined): void {
    write?.then(
      () => {
        this.#storeHealthy = true;
      },
      (error: Error) => {
        this.#storeHealthy = false;
        this.counters.storeErrors++;
        this.#log(`store: ${what} failed: ${quoteWire(error.message)}`);
      },
    );
  }

  /**
   * Issue 24, for /healthz: `off` without a store; else whether its last write (a registration, a
   * dialog, or in a cluster this node's announcement every 5 s) went through.
   */
  get store(): 'off' | boolean {
    return this.c.store ? this.#storeHealthy : 'off';
  }

  /** Links to other nodes open now (issue 24). */
  get linkCount(): number {
    return this.#links.count;
  }

  get local(): Endpoint {
    return this.#listener!.local;
  }

  /** The SIP-over-TLS listener, when TLS is configured. */
  get tlsLocal(): Endpoint | undefined {
    return this.#tlsListener?.local;
  }

  get schedules(): readonly GoSchedule[] {
    return this.#coordinator.schedules;
  }

  /** Listening for SIP (and SIP over TLS when configured). */
  get listening(): boolean {
    return !this.#closed && this.#listener !== undefined;
  }

  /** Connections open now (registered or not). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Live registrations with what issue 22's admin page shows: the NAT class the gateway reported,
   * the round trip the coordinator last measured on its connection, and when it was last heard.
   */
  registrations(): RegistrationView[] {
    const now = this.c.clock.now();
    return this.#registrar
      .list(now)
      .map((r) =>
        registrationView(r, this.#presence.get(r.user), this.#coordinator.rttOf(r.connection), now),
      );
  }

  /** Calls in the dialog table, with the caller's last media status (issue 22) when one came. */
  calls(): CallView[] {
    const now = this.c.clock.now();
    return this.#dialogs.list().map((d) => callView(d, now));
  }

  /** Issue 22: the users `viewer` may call; the answer to `x-sc2c-cameras`. */
  callableBy(viewer: string): CameraView[] {
    const now = this.c.clock.now();
    return cameraViews(viewer, this.#accounts, now, (user) => {
      const registration = this.#registrar.lookup(user, now);
      return {
        online: registration !== undefined,
        presence: this.#presence.get(user),
        rttMs: registration && this.#coordinator.rttOf(registration.connection),
      };
    });
  }

  /** Idempotent: stops listening, closes every connection and stops every timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#links.close();
    this.#coordinator.close();
    this.#sweepTimer?.clear();
    for (const timer of this.#timers) timer.clear();
    this.#timers.clear();
    this.#listener?.close();
    this.#tlsListener?.close();
    for (const connection of [...this.#connections.keys()]) connection.close('server closing');
  }

  #log(line: string, level: 'info' | 'warn' = 'warn', fields?: Record<string, unknown>): void {
    this.init.log?.(line, level, fields);
  }

  #later(fn: () => void, delayMs: number): void {
    const timer = this.c.clock.setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, delayMs);
    this.#timers.add(timer);
  }

  #accept(stream: StreamConnection): void {
    const limits = this.init.limits ?? {};
    const source = stream.remote.address;
    if (this.#closed || !this.#admission.admit(source)) {
      this.counters.connectionsRefused++;
      stream.close();
      return;
    }
    const connection = new SipConnection(stream, 'server', (l) => this.#log(l), {
      clock: this.c.clock,
      messageTimeoutMs: limits.messageTimeoutMs,
    });
    const state: ConnectionState = { id: `${source}:${stream.remote.port}#${++this.#serial}`, source };
    this.#connections.set(connection, state);
    this.#armIdle(connection, state);
    connection.on('request', (request) => this.#onRequest(connection, request));
    connection.on('response', (response) => this.#onResponse(connection, response));
    connection.on('close', () => this.#onClose(connection, state));
  }

  /** Closes `connection` unless it registers within `unregisteredIdleMs`. */
  #armIdle(connection: SipConnection, state: ConnectionState): void {
    state.idleTimer?.clear();
    state.idleTimer = this.c.clock.setTimeout(() => {
      state.idleTimer = undefined;
      if (
        connection.closed ||
        this.#registrar.has(connection) ||
        this.#links.nodeOf(connection) !== undefined
      )
        return;
      this.counters.idleClosed++;
      connection.close('not registered in time');
    }, this.init.limits?.unregisteredIdleMs ?? 10_000);
  }

  #onClose(connection: SipConnection, state: ConnectionState): void {
    state.idleTimer?.clear();
    this.#connections.delete(connection);
    this.#admission.release(state.source);
    this.counters.malformed += connection.malformed;
    if (connection.timedOut) this.counters.messageTimeouts++;
    this.#coordinator.forget(connection);
    this.#own.forget(connection);
    this.#state.forget(connection);
    if (this.#links.nodeOf(connection) !== undefined) {
      this.#links.closed(connection);
      return;
    }
    const users = this.#registrar.drop(connection);
    // A node shutting down keeps its registrations in the store: started again, it marks them stale.
    if (this.#closed) return;
    for (const user of users)
      this.#stored(`removing ${user}`, this.c.store?.removeRegistration(user, this.node));
    if (users.length > 0)
      this.#log(`${users.join(', ')} unregistered: connection from ${state.source} closed`, 'info', {
        event: 'unregistered',
        users,
      });
    for (const dialog of this.#dialogs.lose(users, connection, this.c.clock.now())) this.#partyLost(dialog);
  }

  /**
   * A party's connection dropped. An unanswered call cannot go on: the other side is told at once.
   * An established call's media may well go on (a gateway reconnects within seconds and is re-bound
   * to its dialogs), so the other party gets a BYE only if it has not come back within the grace.
   */
  #partyLost(dialog: Dialog<SipConnection>): void {
    this.counters.partiesLost++;
    if (dialog.state === 'inviting') {
      const invite = this.#invites.get(dialog.callId);
      this.#removeDialog(dialog.callId);
      if (dialog.callee.lostAtMs !== undefined && invite)
        dialog.caller.connection?.respond(invite, 480, [
          ['Reason', 'SIP;cause=480;text="callee disconnected"'],
        ]);
      else if (dialog.caller.lostAtMs !== undefined)
        this.#tellEnded(dialog.callee, dialog.callId, 'CANCEL', 'caller disconnected');
      return;
    }
    if (dialog.state !== 'confirmed') return;
    this.#later(() => {
      if (this.#dialogs.get(dialog.callId) !== dialog) return;
      const lost = [dialog.caller, dialog.callee].find((p) => p.lostAtMs !== undefined);
      if (!lost) return;
      const other = lost === dialog.caller ? dialog.callee : dialog.caller;
      this.#removeDialog(dialog.callId);
      if (other.lostAtMs === undefined)
        this.#tellEnded(other, dialog.callId, 'BYE', `${lost.user}'s signaling connection dropped`);
    }, this.init.limits?.partyGraceMs ?? 10_000);
  }

  #tellEnded(party: Party<SipConnection>, callId: string, method: 'BYE' | 'CANCEL', why: string): void {
    if (!party.connection || party.connection.closed) return;
    void this.#own
      .send(party.connection, method, callId, [['Reason', `SIP;cause=408;text="${why}"`]])
      .catch(() => {});
  }

  #removeDialog(callId: string): void {
    const dialog = this.#dialogs.get(callId);
    this.#dialogs.remove(callId);
    this.#invites.delete(callId);
    if (dialog?.persisted) this.#stored('removing a dialog', this.c.store?.removeDialog(this.node, callId));
  }

  /** Drops dialogs nobody answered or whose BYE went unanswered; runs while any dialog exists. */
  #scheduleSweep(): void {
    if (this.#sweepTimer || this.#closed) return;
    this.#sweepTimer = this.c.clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      for (const dialog of this.#dialogs.expire(this.c.clock.now())) {
        this.counters.dialogsExpired++;
        const invite = this.#invites.get(dialog.callId);
        this.#invites.delete(dialog.callId);
        if (invite && dialog.state === 'inviting') dialog.caller.connection?.respond(invite, 408);
      }
      if (this.#dialogs.size > 0) this.#scheduleSweep();
    }, 1000);
  }

  #onRequest(connection: SipConnection, request: SipRequest): void {
    try {
      const refusal = checkRequest(request);
      if (refusal) {
        this.counters.refusedRequests++;
        this.#log(
          `${quoteWire(request.method, 32)} refused (${refusal.status}): ${quoteWire(refusal.reason)}`,
        );
        if (request.method !== 'ACK')
          connection.respond(request, refusal.status, [
            ...(refusal.extra ?? []),
            ['Warning', `399 sc2c "${refusal.reason.replace(/["\\]/g, "'")}"`],
          ]);
        return;
      }
      const seen = this.#registrar.userOf(connection, this.c.clock.now());
      if (seen) this.#presence.seen(seen, this.c.clock.now());
      switch (request.method) {
        case 'SUBSCRIBE':
          this.#state.subscribe(connection, request);
          return;
        case 'REGISTER':
          this.#registrations.register(connection, request, this.#connections.get(connection)!);
          return;
        case 'INVITE':
          this.#router.invite(connection, request);
          return;
        case 'OPTIONS':
          connection.respond(request, 200);
          return;
        case 'PUBLISH':
          this.#state.publish(connection, request);
          return;
        default:
          this.#inDialog(connection, request);
      }
    } catch (error) {
      this.counters.malformed++;
      this.#log(`bad ${quoteWire(request.method, 32)}: ${quoteWire((error as Error).message)}`);
      if (request.method !== 'ACK') connection.respond(request, 400);
    }
  }

  /**
   * Sends what `from` sent on to `to`. Onto a link, the round trip to `from` (our gateway) goes with
   * it, for the caller's node to time the go; a client never sets that header. False when `to` is
   * unreachable (lost, restored and not back).
   */
  #pass<M extends SipRequest | SipResponse>(
    from: Party<SipConnection>,
    to: Party<SipConnection>,
    message: M,
  ): boolean {
    const target = to.connection;
    if (!target || target.closed) {
      this.counters.unreachable++;
      return false;
    }
    target.send(this.#links.outgoing(target, from.connection, message, (c) => this.#coordinator.rttOf(c)));
    return true;
  }

  #inDialog(connection: SipConnection, request: SipRequest): void {
    const dialog = this.#dialogs.get(header(request, 'Call-ID')!);
    const role = dialog && this.#dialogs.roleOf(dialog, connection);
    if (!dialog || !role) {
      if (dialog) this.counters.foreignRequests++;
      if (request.method !== 'ACK') connection.respond(request, 481);
      return;
    }
    this.#links.heard(dialog[role], request);
    if (request.method === 'INFO' && this.#syncs.handle(connection, request, dialog, role)) return;
    if (request.method === 'ACK' && dialog.state === 'inviting') {
      this.#dialogs.confirm(dialog);
      if (this.c.store && !dialog.persisted) {
        dialog.persisted = true;
        this.#stored(
          'keeping a dialog',
          this.c.store.putDialog(
            this.node,
            storedDialog(dialog, this.c.clock.epochMs() - (this.c.clock.now() - dialog.startedAtMs)),
            STORED_DIALOG_TTL_MS,
          ),
        );
      }
    }
    if (request.method === 'BYE') {
      this.#dialogs.end(dialog, this.c.clock.now());
      if (dialog.media)
        this.#presence.callEnded(
          dialog.caller.user,
          dialog.callee.user,
          dialog.media.status,
          this.c.clock.now(),
        );
      this.#log(`call ${quoteWire(dialog.callId, 64)} ended: BYE from ${dialog[role].user}`, 'info', {
        event: 'call-end',
        callId: dialog.callId,
        by: dialog[role].user,
      });
    }
    const to = role === 'caller' ? dialog.callee : dialog.caller;
    if (request.method !== 'ACK')
      this.#dialogs.expect(dialog, transactionKey(request)!, role === 'caller' ? 'callee' : 'caller');
    const passed = this.#pass(dialog[role], to, assertIdentity(request, dialog[role].user, this.init.realm));
    if (passed || request.method === 'ACK') return;
    if (request.method === 'BYE') {
      // The other party is gone for good or not back yet: the call ends here all the same.
      connection.respond(request, 200);
      this.#removeDialog(dialog.callId);
    } else connection.respond(request, 480, [['Warning', '399 sc2c "the other party is reconnecting"']]);
  }

  #onResponse(connection: SipConnection, response: SipResponse): void {
    const own = this.#own.take(connection, response);
    if (own === 'foreign') this.counters.foreignResponses++;
    if (own !== 'not-ours') return;
    const dialog = this.#dialogs.get(header(response, 'Call-ID') ?? '');
    const key = transactionKey(response);
    if (!dialog || !key) return;
    if (!this.#dialogs.answered(dialog, key, connection, response.status)) {
      this.counters.foreignResponses++;
      this.#log(
        `response to ${quoteWire(dialog.callId, 64)} from a connection that does not owe it: dropped`,
      );
      return;
    }
    const role = this.#dialogs.roleOf(dialog, connection)!;
    this.#links.heard(dialog[role], response);
    const method = /\s(\S+)\s*$/.exec(header(response, 'CSeq') ?? '')?.[1];
    if (method === 'INVITE' && response.status >= 200) {
      this.#invites.delete(dialog.callId);
      if (response.status >= 300 && dialog.state === 'inviting') this.#removeDialog(dialog.callId);
    }
    if (method === 'BYE' && response.status >= 200) this.#removeDialog(dialog.callId);
    this.#pass(dialog[role], role === 'caller' ? dialog.callee : dialog.caller, response);
  }
}
