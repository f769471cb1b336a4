/**
 * The gateway's side of relay-bandwidth accounting: a call record from a finished call's outcome
 * (media bytes per route, from its `RoutedPath` counters), sent to the server in a PUBLISH. A record
 * the server does not take (no connection, an error) is appended to a local spool file and sent
 * again by `flushSpool`, so a record is never lost to a signaling outage.
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { type CallRecord, CallRecordStore, parseCallRecord } from '../relay/call-records.ts';
import type { SignalingClient } from '../signaling/client.ts';
import { CALL_RECORD_CONTENT_TYPE, CALL_RECORD_EVENT } from '../signaling/server.ts';
import type { CallOutcome } from './types.ts';

export interface CallRecordInit {
  /** Our SIP user. */
  readonly user: string;
  /** `clock.now()` when the call ended, and the wall clock (epoch ms) at that same moment. */
  readonly endedAtMs: number;
  readonly wallNowMs: number;
  /** Why the call ended, when it did not end normally. */
  readonly reason?: string;
  /**
   * For a call whose peer failed while we sent: what its last receiver report confirmed (the
   * route and the sent counters then), or `none` when no report ever came. Only that much counts
   * as sent; the rest is `unconfirmed`.
   */
  readonly confirmed?: ConfirmedSend | 'none';
}

/** Our sending counters and route when the peer's receiver report arrived. */
export interface ConfirmedSend {
  readonly route: 'direct' | 'relay';
  readonly direct: { readonly bytes: number; readonly packets: number };
  readonly relay: { readonly bytes: number; readonly packets: number };
}

/** The sending side of `outcome` now, for `CallRecordInit.confirmed`. */
export function confirmedSend(outcome: CallOutcome): ConfirmedSend | undefined {
  const routed = outcome.routed;
  if (!routed) return undefined;
  const c = routed.counters;
  return {
    route: routed.route,
    direct: { bytes: c.direct.bytesSent, packets: c.direct.packetsSent },
    relay: { bytes: c.relay.bytesSent, packets: c.relay.packetsSent },
  };
}

const zero = () => ({ bytes: 0, packets: 0 });

/** The record of one side of a finished call. */
export function callRecord(outcome: CallOutcome, init: CallRecordInit): CallRecord {
  const toWall = (clockMs: number): string =>
    new Date(init.wallNowMs - (init.endedAtMs - clockMs)).toISOString();
  const c = outcome.routed?.counters;
  const sent = c
    ? {
        direct: { bytes: c.direct.bytesSent, packets: c.direct.packetsSent },
        relay: { bytes: c.relay.bytesSent, packets: c.relay.packetsSent },
      }
    : { direct: zero(), relay: zero() };
  const confirmed =
    init.confirmed === undefined
      ? undefined
      : init.confirmed === 'none'
        ? { route: null, direct: zero(), relay: zero() }
        : init.confirmed;
  const unconfirmed = confirmed && {
    bytes: sent.direct.bytes + sent.relay.bytes - confirmed.direct.bytes - confirmed.relay.bytes,
    packets: sent.direct.packets + sent.relay.packets - confirmed.direct.packets - confirmed.relay.packets,
  };
  return {
    v: 1,
    callId: outcome.callId,
    role: outcome.role,
    user: init.user,
    peer: outcome.peer,
    mode: outcome.mode,
    ok: outcome.ok && init.reason === undefined,
    ...((init.reason ?? outcome.reason) ? { reason: (init.reason ?? outcome.reason)!.slice(0, 500) } : {}),
    startedAt: toWall(outcome.startedAtMs),
    endedAt: toWall(init.endedAtMs),
    setupMs:
      outcome.confirmedAtMs === undefined ? null : Math.round(outcome.confirmedAtMs - outcome.startedAtMs),
    route: confirmed ? confirmed.route : (outcome.routed?.route ?? (outcome.ok ? 'direct' : null)),
    localNat: outcome.local?.nat ?? null,
    remoteNat: outcome.remote?.nat ?? null,
    sent: confirmed ? { direct: { ...confirmed.direct }, relay: { ...confirmed.relay } } : sent,
    received: c
      ? {
          direct: { bytes: c.direct.bytesReceived, packets: c.direct.packetsReceived },
          relay: { bytes: c.relay.bytesReceived, packets: c.relay.packetsReceived },
        }
      : { direct: zero(), relay: zero() },
    switches: outcome.routed?.switches ?? 0,
    ...(outcome.encryption ? { encryption: outcome.encryption } : {}),
    ...(unconfirmed ? { unconfirmed } : {}),
  };
}

export interface RecordPublisherInit {
  /** Send records to the server; false keeps them in the spool only. Default true. */
  readonly publish?: boolean;
  /** Where records the server did not take wait for the next attempt. */
  readonly spoolFile: string;
}

/** Sends call records to the server, spooling the ones it cannot deliver. */
export class RecordPublisher {
  readonly #spool: CallRecordStore;

  constructor(
    private readonly signaling: () => SignalingClient,
    private readonly init: RecordPublisherInit,
  ) {
    this.#spool = new CallRecordStore(init.spoolFile);
  }

  /** Delivers `record`, or spools it. Resolves with where it went; never rejects for delivery. */
  async publish(record: CallRecord): Promise<'server' | 'spool'> {
    if (this.init.publish !== false && (await this.#send(record))) return 'server';
    this.#spool.append(record);
    return 'spool';
  }

  /**
   * Sends every spooled record again (after a restart or a reconnect); the ones the server still
   * does not take stay spooled. Resolves with how many were delivered.
   */
  async flushSpool(): Promise<number> {
    const path = this.init.spoolFile;
    if (this.init.publish === false || !existsSync(path)) return 0;
    // Take the file first, so records spooled while we send go to a fresh one.
    const taken = `${path}.sending`;
    if (!existsSync(taken)) renameSync(path, taken);
    let delivered = 0;
    for (const line of readFileSync(taken, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let record: CallRecord;
      try {
        record = parseCallRecord(JSON.parse(line));
      } catch {
        continue; // a line cut short by a crash: nothing to deliver
      }
      if (await this.#send(record)) delivered++;
      else this.#spool.append(record);
    }
    rmSync(taken, { force: true });
    return delivered;
  }

  async #send(record: CallRecord): Promise<boolean> {
    const signaling = this.signaling();
    try {
      const answer = await signaling.request(
        'PUBLISH',
        `sip:${signaling.init.domain}`,
        [
          ['Event', CALL_RECORD_EVENT],
          ['Content-Type', CALL_RECORD_CONTENT_TYPE],
        ],
        { body: JSON.stringify(record) },
      );
      return answer.status === 200;
    } catch {
      return false;
    }
  }
}
