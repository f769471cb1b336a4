/**
 * The media status a calling gateway reports to the server while a call is up (issue 22): which
 * route carries media now and how many bytes went each way, in an in-dialog INFO with
 * `Content-Type: application/sc2c-status+json`. The server keeps it for its admin page and does not
 * forward it. Read field by field from untrusted JSON; nothing else is kept. Pure.
 *
 *   {"route":"direct","transport":"udp","directBytes":123456,"relayBytes":0}
 */

export const STATUS_CONTENT_TYPE = 'application/sc2c-status+json';

export interface MediaStatus {
  readonly route: 'direct' | 'relay';
  readonly transport: 'udp' | 'tcp';
  /** Media bytes (RTP/RTCP payload, both directions) on each route so far. */
  readonly directBytes: number;
  readonly relayBytes: number;
}

/** The largest byte count accepted: 2^53 - 1 (JSON's safe integers); a day at 1 Gbit/s is 2^43. */
const byteCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

export function encodeStatus(status: MediaStatus): string {
  return JSON.stringify(status);
}

/** Parses a status body; `{ error }` says what is wrong. Bodies over 1 KiB are refused unread. */
export function readStatus(body: string): MediaStatus | { readonly error: string } {
  if (body.length > 1024) return { error: 'status body over 1 KiB' };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { error: 'status body is not JSON' };
  }
  if (typeof value !== 'object' || value === null) return { error: 'status body is not an object' };
  const v = value as Record<string, unknown>;
  if (v.route !== 'direct' && v.route !== 'relay') return { error: 'route must be direct or relay' };
  if (v.transport !== 'udp' && v.transport !== 'tcp') return { error: 'transport must be udp or tcp' };
  if (!byteCount(v.directBytes) || !byteCount(v.relayBytes))
    return { error: 'directBytes and relayBytes must be non-negative integers' };
  return { route: v.route, transport: v.transport, directBytes: v.directBytes, relayBytes: v.relayBytes };
}
