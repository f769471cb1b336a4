import { OBSERVED_PIN_OPTION } from '../protocol/sc2c-info.ts';
import { parseNameAddr, uriUser } from '../protocol/sip/headers.ts';
import { header, type SipRequest } from '../protocol/sip/message.ts';
import { NODE_HEADER } from './cluster.ts';
import type { Coordinator } from './coordinator.ts';
import { DigestAuthenticator } from './digest-auth.ts';
import { NAT_HEADER, type Presence, readNatLabel } from './presence.ts';
import type { ServerParts } from './server-parts.ts';
import { quoteWire, type SipConnection } from './sip-connection.ts';
import type { FailureThrottle } from './throttle.ts';
import { credentialHeader } from './turn-credentials.ts';

/** Longest registration we grant; clients re-register before it runs out. */
export const MAX_EXPIRES_S = 3600;

export interface RegistrationsHost extends ServerParts {
  readonly throttle: FailureThrottle;
  readonly presence: Presence;
  readonly coordinator: Coordinator<SipConnection>;
  /** The server reads pins from its own STUN server's Bindings (issue 19): said in the 200. */
  readonly observedPins: boolean;
  /** A store write in the background, counted when it fails. */
  readonly stored: (what: string, write: Promise<unknown> | undefined) => void;
  /** `connection` registered (a user or a link): no longer closed for idling. */
  readonly settled: (connection: SipConnection) => void;
  /** `connection` has no registration left: closed unless it registers again soon. */
  readonly unsettled: (connection: SipConnection) => void;
}

export class Registrations {
  readonly #auth: DigestAuthenticator;

  constructor(private readonly h: RegistrationsHost) {
    this.#auth = new DigestAuthenticator(h.realm, h.accounts, () => h.clock.now());
  }

  /** A REGISTER on `connection`, known as `client` (its id, for the digest nonce, and its source). */
  register(
    connection: SipConnection,
    request: SipRequest,
    client: { readonly id: string; readonly source: string },
  ): void {
    const state = client;
    const now = this.h.clock.now();
    const waitMs = this.h.throttle.retryAfterMs(state.source, now);
    if (waitMs > 0) {
      // Too many wrong passwords from this address: no password is checked until the window passes.
      this.h.counters.authThrottled++;
      connection.respond(request, 403, [['Retry-After', String(Math.ceil(waitMs / 1000))]]);
      connection.close('too many failed logins');
      return;
    }
    if (header(request, NODE_HEADER) !== undefined) {
      const link = this.h.links.register(
        connection,
        request,
        state.id,
        state.source,
        this.h.registrar.has(connection),
      );
      if ('status' in link) connection.respond(request, link.status, link.extra);
      else {
        this.h.settled(connection);
        connection.respond(request, 200, [['Expires', String(MAX_EXPIRES_S)]]);
      }
      return;
    }
    if (this.h.links.nodeOf(connection) !== undefined) {
      connection.respond(request, 403, [['Warning', '399 sc2c "a node link registers no user"']]);
      return;
    }
    const auth = this.#auth.check(request, state.id);
    if (!auth.ok) {
      if (auth.status === 403) {
        this.h.counters.authFailures++;
        this.h.log(
          `REGISTER for '${quoteWire(auth.user ?? '', 64)}' from ${state.source} refused (403): ${quoteWire(auth.reason)}`,
          'warn',
          { event: 'refused', method: 'REGISTER', status: 403, source: state.source },
        );
        if (this.h.throttle.fail(state.source, now))
          this.h.log(
            `throttling logins from ${state.source}: repeated failures (last for '${quoteWire(auth.user ?? '', 64)}')`,
          );
      }
      // A 401 without credentials is the normal first half of digest authentication: not worth a line.
      if (auth.reason !== 'no credentials' && auth.status === 401)
        this.h.log(`REGISTER from ${state.source} refused (401): ${quoteWire(auth.reason)}`);
      connection.respond(request, auth.status, auth.challenge ? [['WWW-Authenticate', auth.challenge]] : []);
      return;
    }
    const to = uriUser(parseNameAddr(header(request, 'To') ?? '').uri);
    if (to !== auth.user) {
      connection.respond(request, 403, [['Warning', '399 sc2c "To does not name the authenticated user"']]);
      return;
    }
    const contact = header(request, 'Contact') ?? `<sip:${auth.user}@${connection.stream.remote.address}>`;
    const asked = Number(header(request, 'Expires') ?? /expires=(\d+)/.exec(contact)?.[1] ?? MAX_EXPIRES_S);
    const expiresS = Number.isFinite(asked) ? Math.max(0, Math.min(MAX_EXPIRES_S, asked)) : MAX_EXPIRES_S;
    if (expiresS === 0) {
      this.h.log(`${auth.user} unregistered`, 'info', { event: 'unregistered', users: [auth.user] });
      this.h.registrar.unbind(auth.user);
      this.h.stored(`removing ${auth.user}`, this.h.store?.removeRegistration(auth.user, this.h.node));
      if (!this.h.registrar.has(connection)) this.h.unsettled(connection);
    } else {
      this.h.registrar.bind({ user: auth.user, connection, contact, expiresAtMs: now + expiresS * 1000 });
      this.h.presence.seen(auth.user, now);
      this.h.presence.nat(auth.user, readNatLabel(header(request, NAT_HEADER)));
      const natClass = this.h.presence.get(auth.user)?.natClass;
      const rttMs = this.h.coordinator.rttOf(connection);
      this.h.stored(
        `registering ${auth.user}`,
        this.h.store?.putRegistration({
          user: auth.user,
          node: this.h.node,
          contact,
          expiresAtMs: this.h.clock.epochMs() + expiresS * 1000,
          ...(natClass ? { natClass } : {}),
          ...(rttMs !== undefined ? { rttMs } : {}),
        }),
      );
      this.h.settled(connection);
      this.h.dialogs.rebind(auth.user, connection);
      this.h.counters.registrations++;
      this.h.log(`registered ${auth.user} from ${state.source} for ${expiresS} s`, 'info', {
        event: 'registered',
        user: auth.user,
        source: state.source,
        expiresS,
      });
      this.h.coordinator.track(connection);
    }
    const issuer = this.h.turnCredentials;
    connection.respond(request, 200, [
      ['Contact', `${contact.replace(/;expires=\d+/, '')};expires=${expiresS}`],
      ['Expires', String(expiresS)],
      ...(issuer && expiresS > 0 ? [credentialHeader(issuer, auth.user, this.h.clock.epochMs())] : []),
      // RFC 3261 §20.37: this server reads pins from its own STUN server's Bindings (issue 19).
      ...(this.h.observedPins ? [['Supported', OBSERVED_PIN_OPTION] as [string, string]] : []),
    ]);
  }
}
