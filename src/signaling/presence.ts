/**
 * What the server knows of each user beyond its registration (issue 22): the NAT class its gateway
 * reported in REGISTER (`Sc2c-Nat`), when it was last heard from, and the route of its last call.
 * Keyed by account name, so bounded by the accounts; kept after a user goes offline, which is when
 * "last seen" matters. Pure: time passed in.
 */
import type { MediaStatus } from '../protocol/sc2c-status.ts';

/** SIP header a gateway puts in REGISTER: its NAT as its probe classified it. */
export const NAT_HEADER = 'Sc2c-Nat';

/** RFC 4787 terms joined by `/`, `+` and digits (`endpoint-independent/address-dependent/sequential+1`). */
const NAT_LABEL = /^[a-z0-9][a-z0-9+./-]{0,119}$/;

/** A NAT label from the wire, or undefined when it is not one (never stored, never echoed). */
export function readNatLabel(value: string | undefined): string | undefined {
  return value !== undefined && NAT_LABEL.test(value) ? value : undefined;
}

export interface LastCall {
  readonly peer: string;
  readonly route: MediaStatus['route'];
  readonly transport: MediaStatus['transport'];
  readonly endedAtMs: number;
}

export interface UserPresence {
  natClass?: string;
  lastSeenMs?: number;
  lastCall?: LastCall;
}

export class Presence {
  readonly #users = new Map<string, UserPresence>();

  /** `user` must be an authenticated account name: the table grows by accounts only. */
  #of(user: string): UserPresence {
    let entry = this.#users.get(user);
    if (!entry) {
      entry = {};
      this.#users.set(user, entry);
    }
    return entry;
  }

  seen(user: string, nowMs: number): void {
    this.#of(user).lastSeenMs = nowMs;
  }

  nat(user: string, label: string | undefined): void {
    if (label !== undefined) this.#of(user).natClass = label;
  }

  /** A call both users were in ended with this last status. */
  callEnded(caller: string, callee: string, status: MediaStatus, nowMs: number): void {
    const call = { route: status.route, transport: status.transport, endedAtMs: nowMs };
    this.#of(caller).lastCall = { ...call, peer: callee };
    this.#of(callee).lastCall = { ...call, peer: caller };
  }

  get(user: string): Readonly<UserPresence> | undefined {
    return this.#users.get(user);
  }
}

/** Event packages a registered gateway may fetch (SUBSCRIBE, `Expires: 0`; issue 22). */
export const CAMERAS_EVENT = 'x-sc2c-cameras';
export const REPORT_EVENT = 'x-sc2c-report';
