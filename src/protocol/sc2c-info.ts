/**
 * Fields of the SC2C INFO bodies (`application/sc2c+json`) that carry numbers from one gateway to
 * the other through the server (issue 19): a pinned port with its window, and a birthday port
 * count. Rebuilt from their checked fields, never passed on as received. Pure.
 */

export interface PinField {
  readonly port: number;
  readonly window: number;
}

/** The largest pin window (traversal/pin.ts): `2·window - 1` rungs, 63 at most. */
export const MAX_PIN_WINDOW = 32;
/** The most mappings a birthday side may say it opened (traversal/birthday.ts). */
export const MAX_BIRTHDAY_PORTS = 1024;

const integerIn = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;

/** A `pin` field, or null when malformed. */
export function readPin(value: unknown): PinField | null {
  const { port, window } = (value ?? {}) as { port?: unknown; window?: unknown };
  return integerIn(port, 1, 65535) && integerIn(window, 1, MAX_PIN_WINDOW) ? { port, window } : null;
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
