/**
 * Fields of the SC2C INFO bodies (`application/sc2c+json`) that carry numbers from one gateway to
 * the other through the server (issue 19): a pinned port with its window, a birthday port count,
 * and a fresh prediction (the caller's ports read after its INVITE left, the paper's SYN carrying
 * p3). Rebuilt from their checked fields, never passed on as received. Pure.
 */

export interface PinField {
  readonly port: number;
  readonly window: number;
}

/**
 * A pin as a sync may give it when the signaling server runs the STUN server too: the pinned port
 * is the source port the server saw on the Binding with transaction ID `stun` (24 hex digits),
 * plus `offset`. The server turns it into a `PinField` for the other side's go.
 */
export interface ObservedPinField {
  readonly stun: string;
  readonly offset: number;
  readonly window: number;
}

/** The largest pin window (traversal/pin.ts): `2·window - 1` rungs, 63 at most. */
export const MAX_PIN_WINDOW = 32;
/** The most mappings a birthday side may say it opened (traversal/birthday.ts). */
export const MAX_BIRTHDAY_PORTS = 1024;

const integerIn = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;

/** The caller's media ports as sampled after its offer left (`rtcpPort` when RTCP is not muxed). */
export interface FreshField {
  readonly port: number;
  readonly rtcpPort?: number;
}

/** What a sync may carry on to the other side's go; each field checked. */
export interface SyncFields {
  /** Only a sync carries the observed form; a go always carries the port. */
  readonly pin?: PinField | ObservedPinField;
  readonly birthday?: number;
  readonly fresh?: FreshField;
}

/** The SIP option tag (RFC 3261 `Supported`) of a server that reads pins from its own STUN server. */
export const OBSERVED_PIN_OPTION = 'sc2c-observed-pin';

/** A `pin` field, or null when malformed. */
export function readPin(value: unknown): PinField | ObservedPinField | null {
  const { port, window, stun, offset } = (value ?? {}) as {
    port?: unknown;
    window?: unknown;
    stun?: unknown;
    offset?: unknown;
  };
  if (!integerIn(window, 1, MAX_PIN_WINDOW)) return null;
  if (stun !== undefined || offset !== undefined) {
    return port === undefined &&
      typeof stun === 'string' &&
      /^[0-9a-f]{24}$/.test(stun) &&
      integerIn(offset, -65535, 65535)
      ? { stun, offset, window }
      : null;
  }
  return integerIn(port, 1, 65535) ? { port, window } : null;
}

/** A pin that names its port (what a go carries). */
export function isPortPin(pin: PinField | ObservedPinField | undefined): pin is PinField {
  return pin !== undefined && 'port' in pin;
}

/** A `birthday` field, or null when malformed. */
export function readBirthday(value: unknown): number | null {
  return integerIn(value, 1, MAX_BIRTHDAY_PORTS) ? value : null;
}

/** An INFO body's fields as JSON, or undefined when it is not JSON. */
export function infoFields(body: string): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(body) as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A `fresh` field, or null when malformed. */
export function readFresh(value: unknown): FreshField | null {
  const { port, rtcpPort } = (value ?? {}) as { port?: unknown; rtcpPort?: unknown };
  if (!integerIn(port, 1, 65535)) return null;
  if (rtcpPort === undefined) return { port };
  return integerIn(rtcpPort, 1, 65535) ? { port, rtcpPort } : null;
}

/**
 * A sync's or a go's optional fields, each checked and rebuilt: the fields, or why the body is
 * refused (a field present but malformed).
 */
export function readSyncFields(body: Record<string, unknown>): { fields: SyncFields } | { error: string } {
  const pin = body.pin === undefined ? undefined : readPin(body.pin);
  if (pin === null)
    return {
      error: `pin needs a window 1..${MAX_PIN_WINDOW} and an integer port, or a STUN transaction ID (24 hex digits) and an offset`,
    };
  const birthday = body.birthday === undefined ? undefined : readBirthday(body.birthday);
  if (birthday === null) return { error: `birthday is a port count 1..${MAX_BIRTHDAY_PORTS}` };
  const fresh = body.fresh === undefined ? undefined : readFresh(body.fresh);
  if (fresh === null) return { error: 'fresh needs an integer port (and rtcpPort) 1..65535' };
  return {
    fields: {
      ...(pin ? { pin } : {}),
      ...(birthday !== undefined ? { birthday } : {}),
      ...(fresh ? { fresh } : {}),
    },
  };
}
