/**
 * The SC2C INFOs of a dialog (paper §2.3 step 17, issues 19, 22, 24): the caller's media status,
 * kept for the admin page, and the sync, which the coordinator answers with both go messages, or
 * which goes on to the caller's node when the caller is registered on another one.
 */
import type { Clock } from '../net/clock.ts';
import { isPortPin, readSyncFields, type SyncFields } from '../protocol/sc2c-info.ts';
import { readStatus, STATUS_CONTENT_TYPE } from '../protocol/sc2c-status.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import type { RecentBindings } from '../traversal/recent-bindings.ts';
import { RateLimiter } from '../util/rate-limiter.ts';
import type { Coordinator } from './coordinator.ts';
import type { Dialog, DialogTable, Party, PartyRole } from './dialogs.ts';
import { assertIdentity } from './identity.ts';
import { transactionKey } from './request-checks.ts';
import type { SignalingCounters } from './server-init.ts';
import { quoteWire, type SipConnection } from './sip-connection.ts';

/** The body type of the SC2C INFOs (sync, go, relay moves). */
export const SC2C_CONTENT_TYPE = 'application/sc2c+json';
/** A Binding sent beside its sync arrives within a few ms of it; a lost one is not waited for long. */
const OBSERVED_PIN_WAIT_MS = 250;

export interface SyncsInit {
  readonly clock: Clock;
  readonly counters: SignalingCounters;
  readonly realm: string;
  readonly bindings?: RecentBindings;
  readonly coordinator: Coordinator<SipConnection>;
  readonly dialogs: DialogTable<SipConnection>;
  /** Forwards `message` from one party to the other; false when the other is unreachable. */
  readonly pass: <M extends SipRequest | SipResponse>(
    from: Party<SipConnection>,
    to: Party<SipConnection>,
    message: M,
  ) => boolean;
  readonly log: (line: string) => void;
  /** Syncs per dialog and second (a burst of 4: three punch attempts and a retry). */
  readonly syncsPerSecond: number;
  readonly maxDialogs: number;
}

export class Syncs {
  readonly #limiter: RateLimiter;

  constructor(private readonly host: SyncsInit) {
    this.#limiter = new RateLimiter(host.syncsPerSecond, 4, host.maxDialogs);
  }

  /**
   * An in-dialog INFO from `role`: true when it was a status report or a sync, answered (or passed
   * on) here; false for any other INFO, which the server forwards as it is.
   */
  handle(
    connection: SipConnection,
    request: SipRequest,
    dialog: Dialog<SipConnection>,
    role: PartyRole,
  ): boolean {
    if (request.method === 'INFO' && header(request, 'Content-Type') === STATUS_CONTENT_TYPE) {
      // Issue 22: the caller's media status, for the admin page; kept here, not forwarded.
      const status = readStatus(request.body);
      if ('error' in status || role !== 'caller') {
        connection.respond(request, 'error' in status ? 400 : 403, [
          ['Warning', `399 sc2c "${'error' in status ? status.error : 'only the caller reports status'}"`],
        ]);
        return true;
      }
      dialog.media = { status, atMs: this.host.clock.now() };
      connection.respond(request, 200);
      return true;
    }
    if (request.method === 'INFO' && header(request, 'Content-Type') === SC2C_CONTENT_TYPE) {
      let body: { type?: unknown; schedule?: unknown; pin?: unknown; birthday?: unknown; fresh?: unknown };
      try {
        body = JSON.parse(request.body) as typeof body;
      } catch {
        connection.respond(request, 400, [['Warning', '399 sc2c "body is not JSON"']]);
        return true;
      }
      if (body?.type === 'sync') {
        const read = readSyncFields(body as Record<string, unknown>);
        if ('error' in read) {
          connection.respond(request, 400, [['Warning', `399 sc2c "${read.error}"`]]);
          return true;
        }
        const { fields } = read;
        // Limited here too when the sync goes on to the caller's node: each holds a pin wait.
        if (!this.#limiter.allow(dialog.callId, this.host.clock.now())) {
          this.host.counters.syncsLimited++;
          connection.respond(request, 503, [['Retry-After', '1']]);
          return true;
        }
        if (dialog.caller.node !== undefined && role === 'callee') {
          // Issue 24: the caller's node coordinates. The pin is read here, where the callee's
          // Binding went (STUN is per node), and the sync goes on with the port it names.
          void this.#observedPin(fields, connection)
            .then((resolved) => {
              const { pin: _, ...rest } = body as Record<string, unknown>;
              this.host.dialogs.expect(dialog, transactionKey(request)!, 'caller');
              const forwarded = { ...request, body: JSON.stringify({ ...rest, ...resolved }) };
              if (
                !this.host.pass(
                  dialog.callee,
                  dialog.caller,
                  assertIdentity(forwarded, dialog.callee.user, this.host.realm),
                )
              )
                connection.respond(request, 480);
            })
            .catch((error: Error) =>
              this.host.log(`sync ${quoteWire(dialog.callId, 64)} not passed on: ${error.message}`),
            );
          return true;
        }
        const { caller, callee } = dialog;
        if (
          !caller.connection ||
          !callee.connection ||
          caller.connection.closed ||
          callee.connection.closed
        ) {
          connection.respond(request, 480, [['Warning', '399 sc2c "the other party is reconnecting"']]);
          return true;
        }
        connection.respond(request, 200);
        this.host.counters.syncs++;
        void this.#observedPin(fields, connection)
          .then((resolved) =>
            this.host.coordinator.sync(
              dialog.callId,
              { caller: caller.connection!, callee: callee.connection! },
              body.schedule === 'naive',
              // The sender's pinned or fresh port goes to the other party only, in its go.
              Object.keys(resolved).length > 0
                ? { to: role === 'caller' ? 'callee' : 'caller', fields: resolved }
                : undefined,
              { caller: caller.hopRttMs, callee: callee.hopRttMs },
            ),
          )
          .catch((error) =>
            this.host.log(`sync ${quoteWire(dialog.callId, 64)} failed: ${(error as Error).message}`),
          );
        return true;
      }
    }
    return false;
  }

  /**
   * A pin named by a STUN transaction (issue 19): its port is the source our STUN server saw on that
   * Binding plus the offset. The Binding left beside the sync, so it is waited for, briefly; one
   * from another address than the sender's connection is not the sender's. Unresolved, the pin is
   * left out and the other side checks the sender's advertised port.
   */
  async #observedPin(fields: SyncFields, connection: SipConnection): Promise<SyncFields> {
    const pin = fields.pin;
    if (!pin || isPortPin(pin)) return fields;
    const { pin: _, ...rest } = fields;
    const from = this.host.bindings
      ? await this.host.bindings.wait(pin.stun, OBSERVED_PIN_WAIT_MS)
      : undefined;
    const port = from ? from.port + pin.offset : 0;
    if (!from || from.address !== connection.stream.remote.address || port < 1 || port > 65535) {
      this.host.counters.pinsUnresolved++;
      return rest;
    }
    this.host.counters.pinsObserved++;
    return { ...rest, pin: { port, window: pin.window } };
  }
}
