import { uriUser } from '../protocol/sip/headers.ts';
import { header, type SipRequest, type SipResponse } from '../protocol/sip/message.ts';
import { mayCall } from './accounts.ts';
import type { Party } from './dialogs.ts';
import { assertedCaller, assertIdentity } from './identity.ts';
import { transactionKey } from './request-checks.ts';
import type { ServerParts } from './server-parts.ts';
import { quoteWire, type SipConnection } from './sip-connection.ts';
import { credentialHeader, withoutCredential } from './turn-credentials.ts';

export interface InvitesHost extends ServerParts {
  /** INVITEs waiting for their final answer, by Call-ID. */
  readonly invites: Map<string, SipRequest>;
  /** A dialog opened: the server sweeps unanswered ones while any exists. */
  readonly opened: () => void;
  /** A re-INVITE from a party of its dialog. */
  readonly inDialog: (connection: SipConnection, request: SipRequest) => void;
  readonly pass: <M extends SipRequest | SipResponse>(
    from: Party<SipConnection>,
    to: Party<SipConnection>,
    message: M,
  ) => boolean;
}

export class Invites {
  constructor(private readonly h: InvitesHost) {}

  invite(connection: SipConnection, request: SipRequest): void {
    this.h.counters.invites++;
    const now = this.h.clock.now();
    // Issue 24: over a link, the calling node has authenticated the caller and asserted it.
    const fromNode = this.h.links.nodeOf(connection);
    const asserted = fromNode === undefined ? undefined : assertedCaller(request);
    const callerUser =
      fromNode === undefined
        ? this.h.registrar.userOf(connection, now)
        : asserted && this.h.accounts.has(asserted)
          ? asserted
          : undefined;
    if (!callerUser) {
      connection.respond(request, 403, [['Warning', '399 sc2c "not registered"']]);
      return;
    }
    const callId = header(request, 'Call-ID')!;
    const existing = this.h.dialogs.get(callId);
    if (existing) {
      // A re-INVITE is in-dialog; the same Call-ID from anyone else is a hijack attempt.
      if (this.h.dialogs.roleOf(existing, connection)) this.h.inDialog(connection, request);
      else {
        this.h.counters.duplicateCallIds++;
        connection.respond(request, 403, [['Warning', '399 sc2c "Call-ID in use"']]);
      }
      return;
    }
    const calleeUser = uriUser(request.uri) ?? '';
    if (!this.h.accounts.has(calleeUser)) {
      this.h.counters.notFound++;
      this.h.log(
        `call from ${callerUser} to '${quoteWire(calleeUser, 64)}' refused (404): no such user`,
        'info',
        {
          event: 'refused',
          method: 'INVITE',
          status: 404,
          caller: callerUser,
        },
      );
      connection.respond(request, 404, [['Warning', '399 sc2c "no such user"']]);
      return;
    }
    // The access list before presence: who may not call a user does not learn whether it is online.
    if (!mayCall(this.h.accounts, callerUser, calleeUser)) {
      this.h.counters.forbiddenCalls++;
      this.h.log(`INVITE refused: ${callerUser} may not call '${quoteWire(calleeUser, 64)}'`);
      connection.respond(request, 403, [['Warning', `399 sc2c "${callerUser} may not call this user"`]]);
      return;
    }
    const callee = this.h.registrar.lookup(calleeUser, now);
    if ((!callee || callee.connection.closed) && this.h.links.joined && fromNode === undefined) {
      void this.#remote(connection, request, callerUser, calleeUser).catch((error: Error) => {
        // The store did not answer (Redis down or slow): the caller may try again shortly.
        this.h.counters.storeErrors++;
        this.h.log(
          `call from ${callerUser} to ${calleeUser}: store lookup failed: ${quoteWire(error.message)}`,
        );
        if (!connection.closed)
          connection.respond(request, 503, [
            ['Retry-After', '5'],
            ['Warning', '399 sc2c "registrations store unavailable"'],
          ]);
      });
      return;
    }
    if (!callee || callee.connection.closed) {
      this.h.counters.notFound++;
      this.h.log(`call from ${callerUser} to ${calleeUser} refused (404): not online`, 'info', {
        event: 'refused',
        method: 'INVITE',
        status: 404,
        caller: callerUser,
        callee: calleeUser,
      });
      connection.respond(request, 404, [['Warning', '399 sc2c "not online"']]);
      return;
    }
    this.#forward(
      connection,
      request,
      { connection, user: callerUser, ...(fromNode === undefined ? {} : { node: fromNode }) },
      { connection: callee.connection, user: calleeUser },
    );
  }

  /**
   * Issue 24: the callee is not registered here; the store says where. Registered on a live node,
   * the INVITE goes there over the link; nowhere, 404; on a node that is gone or restarting, 480.
   */
  async #remote(
    connection: SipConnection,
    request: SipRequest,
    callerUser: string,
    calleeUser: string,
  ): Promise<void> {
    const where = await this.h.store!.getRegistration(calleeUser);
    const unavailable = (status: 404 | 480, why: string): void => {
      this.h.counters.notFound++;
      this.h.log(`call from ${callerUser} to ${calleeUser} refused (${status}): ${why}`, 'info', {
        event: 'refused',
        method: 'INVITE',
        status,
        caller: callerUser,
        callee: calleeUser,
      });
      if (!connection.closed) connection.respond(request, status, [['Warning', `399 sc2c "${why}"`]]);
    };
    if (!where) return unavailable(404, 'not online');
    if (where.stale) return unavailable(480, `reconnecting to node ${where.node}`);
    if (where.node === this.h.node) return unavailable(404, 'not online');
    let link: SipConnection;
    try {
      link = await this.h.links.link(where.node);
    } catch (error) {
      return unavailable(480, `node ${where.node} unreachable: ${(error as Error).message}`);
    }
    const callId = header(request, 'Call-ID')!;
    if (connection.closed || this.h.dialogs.get(callId)) return;
    // The callee may have registered here while the link came up.
    const local = this.h.registrar.lookup(calleeUser, this.h.clock.now());
    this.h.counters.forwardedCalls++;
    this.#forward(
      connection,
      request,
      { connection, user: callerUser },
      local && !local.connection.closed
        ? { connection: local.connection, user: calleeUser }
        : { connection: link, user: calleeUser, node: where.node },
    );
  }

  /** Opens the dialog and passes the INVITE on to the callee (a gateway here, or a link). */
  #forward(
    connection: SipConnection,
    request: SipRequest,
    caller: { connection: SipConnection; user: string; node?: string },
    callee: { connection: SipConnection; user: string; node?: string },
  ): void {
    const callId = header(request, 'Call-ID')!;
    const callerUser = caller.user;
    const calleeUser = callee.user;
    const opened = this.h.dialogs.open(callId, caller, callee, this.h.clock.now());
    if ('refused' in opened) {
      this.h.counters.dialogsRefused++;
      if (opened.refused === 'full') connection.respond(request, 503, [['Retry-After', '5']]);
      else if (opened.refused === 'duplicate')
        connection.respond(request, 403, [['Warning', '399 sc2c "Call-ID in use"']]);
      else connection.respond(request, 486, [['Warning', '399 sc2c "too many calls for one party"']]);
      return;
    }
    this.h.invites.set(callId, request);
    this.h.opened();
    this.h.log(`call ${quoteWire(callId, 64)}: ${callerUser} -> ${calleeUser}`, 'info', {
      event: 'call-start',
      callId,
      caller: callerUser,
      callee: calleeUser,
    });
    const issuer = this.h.turnCredentials;
    const forwarded = assertIdentity(withoutCredential(request), callerUser, this.h.realm);
    this.h.dialogs.expect(opened.dialog, transactionKey(request)!, 'callee');
    // A callee on another node gets its TURN credential there, from its own node's relay.
    this.h.pass(
      opened.dialog.caller,
      opened.dialog.callee,
      issuer && callee.node === undefined
        ? {
            ...forwarded,
            headers: [...forwarded.headers, credentialHeader(issuer, calleeUser, this.h.clock.epochMs())],
          }
        : forwarded,
    );
  }
}
