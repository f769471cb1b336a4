/** Optional per-packet trace of the virtual network: one line per event, in virtual time order. */
import { describePacket, type Packet } from './packet.ts';

export type TraceEvent =
  | 'send'
  | 'loss'
  | 'deliver'
  | 'nat-out'
  | 'nat-in'
  | 'nat-hairpin'
  | 'drop'
  | 'icmp'
  | 'ttl-exceeded';

export interface TraceRecord {
  readonly timeMs: number;
  readonly node: string;
  readonly event: TraceEvent;
  readonly packet: Packet;
  readonly detail?: string;
}

export type TraceSink = (record: TraceRecord) => void;

export function formatTraceRecord(record: TraceRecord): string {
  const detail = record.detail ? ` (${record.detail})` : '';
  return `${record.timeMs.toFixed(3)} ${record.node} ${record.event} #${record.packet.id} ${describePacket(record.packet)}${detail}`;
}
