/**
 * Small rewrites of what the server forwards (issue 24): a header set or dropped, and the hop round
 * trip a node reports on a link, read back only within sane bounds.
 */
import { header, type SipMessage } from '../protocol/sip/message.ts';
import type { Dialog } from './dialogs.ts';
import type { StoredDialog } from './store.ts';

/** The longest hop round trip believed: beyond it a figure is noise, not a network. */
const MAX_HOP_RTT_MS = 10_000;

/** `message` with every `name` header removed, and one set to `value` when given. */
export function withHeader<M extends SipMessage>(message: M, name: string, value?: string): M {
  const lower = name.toLowerCase();
  const headers = message.headers.filter(([n]) => n.toLowerCase() !== lower);
  if (value !== undefined) headers.push([name, value]);
  return { ...message, headers };
}

/** A hop round trip from a link's message, in ms; undefined when absent or not believable. */
export function readHopRtt(message: SipMessage, name: string): number | undefined {
  const raw = header(message, name);
  if (raw === undefined || !/^\d{1,5}(\.\d{1,3})?$/.test(raw.trim())) return undefined;
  const ms = Number(raw);
  return ms <= MAX_HOP_RTT_MS ? ms : undefined;
}

/** A dialog as the store keeps it: its users, and the node of a party reached over a link. */
export function storedDialog<C>(dialog: Dialog<C>, startedAtEpochMs: number): StoredDialog {
  const party = (p: Dialog<C>['caller']) => ({ user: p.user, ...(p.node ? { node: p.node } : {}) });
  return {
    callId: dialog.callId,
    caller: party(dialog.caller),
    callee: party(dialog.callee),
    startedAtMs: startedAtEpochMs,
  };
}
