/**
 * What the server shows of its tables (issue 22): registrations with NAT class, RTT and last seen
 * for the admin page, live calls with the caller's route and bytes, and the cameras a viewer may
 * call for its console. Pure: time and the tables' entries passed in.
 */
import type { Endpoint } from '../net/address.ts';
import { type Accounts, mayCall } from './accounts.ts';
import type { Dialog } from './dialogs.ts';
import type { UserPresence } from './presence.ts';
import type { Registration } from './registrar.ts';

export interface RegistrationView {
  readonly user: string;
  readonly contact: string;
  readonly expiresInS: number;
  readonly remote: Endpoint;
  readonly natClass: string | null;
  readonly rttMs: number | null;
  readonly lastSeenAgoS: number | null;
}

export interface CallView {
  readonly callId: string;
  readonly caller: string;
  readonly callee: string;
  readonly state: string;
  readonly ageS: number;
  readonly route: 'direct' | 'relay' | null;
  readonly transport: 'udp' | 'tcp' | null;
  readonly directBytes: number | null;
  readonly relayBytes: number | null;
  readonly statusAgoS: number | null;
}

export interface CameraView {
  readonly user: string;
  readonly online: boolean;
  readonly natClass: string | null;
  readonly rttMs: number | null;
  readonly lastSeenAgoS: number | null;
  readonly lastCall: {
    readonly peer: string;
    readonly route: 'direct' | 'relay';
    readonly transport: 'udp' | 'tcp';
    readonly agoS: number;
  } | null;
}

const tenths = (ms: number | undefined): number | null =>
  ms === undefined ? null : Math.round(ms * 10) / 10;
const secondsSince = (atMs: number | undefined, nowMs: number): number | null =>
  atMs === undefined ? null : Math.round((nowMs - atMs) / 1000);

export function registrationView<C extends { readonly stream: { readonly remote: Endpoint } }>(
  r: Registration<C>,
  presence: Readonly<UserPresence> | undefined,
  rttMs: number | undefined,
  nowMs: number,
): RegistrationView {
  return {
    user: r.user,
    contact: r.contact,
    expiresInS: Math.round((r.expiresAtMs - nowMs) / 1000),
    remote: r.connection.stream.remote,
    natClass: presence?.natClass ?? null,
    rttMs: tenths(rttMs),
    lastSeenAgoS: secondsSince(presence?.lastSeenMs, nowMs),
  };
}

export function callView<C>(d: Dialog<C>, nowMs: number): CallView {
  return {
    callId: d.callId,
    caller: d.caller.user,
    callee: d.callee.user,
    state: d.state,
    ageS: Math.round((nowMs - d.startedAtMs) / 1000),
    route: d.media?.status.route ?? null,
    transport: d.media?.status.transport ?? null,
    directBytes: d.media?.status.directBytes ?? null,
    relayBytes: d.media?.status.relayBytes ?? null,
    statusAgoS: secondsSince(d.media?.atMs, nowMs),
  };
}

/**
 * The users `viewer` may call (the callee's access list names it, or is `any`), sorted by name,
 * each with its online state, NAT class, RTT and last call's route.
 */
export function cameraViews(
  viewer: string,
  accounts: Accounts,
  nowMs: number,
  stateOf: (user: string) => {
    online: boolean;
    presence: Readonly<UserPresence> | undefined;
    rttMs: number | undefined;
  },
): CameraView[] {
  const out: CameraView[] = [];
  for (const user of accounts.keys()) {
    if (user === viewer || !mayCall(accounts, viewer, user)) continue;
    const { online, presence, rttMs } = stateOf(user);
    const last = presence?.lastCall;
    out.push({
      user,
      online,
      natClass: presence?.natClass ?? null,
      rttMs: tenths(rttMs),
      lastSeenAgoS: secondsSince(presence?.lastSeenMs, nowMs),
      lastCall: last
        ? {
            peer: last.peer,
            route: last.route,
            transport: last.transport,
            agoS: Math.round((nowMs - last.endedAtMs) / 1000),
          }
        : null,
    });
  }
  return out.sort((a, b) => a.user.localeCompare(b.user));
}
