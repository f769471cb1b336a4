/**
 * Relay-bandwidth accounting: one record per call and side, kept in an append-only JSON-lines file
 * that is fsynced after every record, so a record acknowledged to a gateway survives a crash or a
 * restart of the server. `summarizeCalls` turns the records into the QA report: per NAT pair and in
 * total, how many media bytes went direct, how many through the relay, and the share that went
 * direct (the relay bandwidth saved).
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

/**
 * IPv4 (20) + UDP (8): what a media packet adds on its sender's uplink. Relayed media leaves the
 * gateway as plain RTP to the peer's relayed address too (the relay hands it to the peer in
 * ChannelData, 4 bytes more, on its way out), so both routes count the same headers at the sender.
 */
export const WIRE_OVERHEAD_BYTES = 28;

const totals = z.object({ bytes: z.number().int().min(0), packets: z.number().int().min(0) }).strict();
const perRoute = z.object({ direct: totals, relay: totals }).strict();

/**
 * What one side of a call saw. Bytes are RTP/RTCP payload bytes (what the media path carried, not
 * the IP, UDP or ChannelData headers); `sent` and `received` are split by route.
 */
export const callRecordSchema = z
  .object({
    v: z.literal(1),
    callId: z.string().min(1).max(200),
    role: z.enum(['caller', 'callee']),
    user: z.string().min(1).max(100),
    peer: z.string().min(1).max(100),
    mode: z.string().max(20),
    ok: z.boolean(),
    reason: z.string().max(500).optional(),
    startedAt: z.iso.datetime(),
    endedAt: z.iso.datetime(),
    setupMs: z.number().min(0).nullable(),
    route: z.enum(['direct', 'relay']).nullable(),
    localNat: z.string().max(200).nullable(),
    remoteNat: z.string().max(200).nullable(),
    sent: perRoute,
    received: perRoute,
    switches: z.number().int().min(0),
    /** `DTLS-SRTP <profile>` or `none` (issue 17); absent in records written before it. */
    encryption: z.string().max(100).optional(),
    /**
     * Sent after the peer's last receiver report, when the peer went silent (crashed, lost): no
     * report says it arrived, so it is not in `sent` (issue 18).
     */
    unconfirmed: totals.optional(),
  })
  .strict();

export type CallRecord = z.infer<typeof callRecordSchema>;
export type RouteTotals = z.infer<typeof totals>;

/** Parses a record from untrusted input; throws with the first problem found. */
export function parseCallRecord(input: unknown): CallRecord {
  const result = callRecordSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new Error(`bad call record: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data;
}

/** An append-only, fsynced JSON-lines file of call records. */
export class CallRecordStore {
  constructor(readonly path: string) {}

  /** Appends one record and fsyncs before returning: once this returns, the record is on disk. */
  append(record: CallRecord): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const fd = openSync(this.path, 'a', 0o600);
    try {
      // One write per line: O_APPEND keeps concurrent writers' lines whole.
      writeSync(fd, `${JSON.stringify(record)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The same, off the event loop (issue 23): the write and the fsync run on libuv's thread pool, so
   * a server that forwards media on this loop does not stall for the disk. Resolves once on disk.
   */
  async appendAsync(record: CallRecord): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const file = await open(this.path, 'a', 0o600);
    try {
      await file.write(`${JSON.stringify(record)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
  }

  /**
   * Every valid record, oldest first, and how many lines were skipped (a line cut short by a crash
   * mid-write, or edited by hand). A missing file is an empty store.
   */
  read(): { records: CallRecord[]; skipped: number } {
    if (!existsSync(this.path)) return { records: [], skipped: 0 };
    const records: CallRecord[] = [];
    let skipped = 0;
    for (const line of readFileSync(this.path, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        records.push(parseCallRecord(JSON.parse(line)));
      } catch {
        skipped++;
      }
    }
    return { records, skipped };
  }
}

export interface RouteReport extends RouteTotals {
  /** `bytes` plus the IPv4 and UDP headers of every packet, as sent. */
  readonly wireBytes: number;
}

export interface UsageReport {
  readonly calls: number;
  /** Calls that carried media on the relay at some point. */
  readonly relayedCalls: number;
  /** Calls a side recorded as `encryption: none` (plain RTP, `--insecure-media`). */
  readonly plainCalls: number;
  readonly direct: RouteReport;
  readonly relay: RouteReport;
  /** Bytes that went direct ÷ all bytes (payload bytes); null when no media was counted. */
  readonly savedRatio: number | null;
}

export interface PairReport extends UsageReport {
  readonly callerNat: string;
  readonly calleeNat: string;
}

export interface CallsReport {
  readonly since: string | null;
  readonly records: number;
  readonly pairs: readonly PairReport[];
  readonly total: UsageReport;
}

interface Usage {
  calls: number;
  relayedCalls: number;
  plainCalls: number;
  direct: RouteTotals;
  relay: RouteTotals;
}

const add = (into: RouteTotals, from: RouteTotals): void => {
  into.bytes += from.bytes;
  into.packets += from.packets;
};

function finish(usage: Usage): UsageReport {
  const all = usage.direct.bytes + usage.relay.bytes;
  return {
    calls: usage.calls,
    relayedCalls: usage.relayedCalls,
    plainCalls: usage.plainCalls,
    direct: { ...usage.direct, wireBytes: usage.direct.bytes + WIRE_OVERHEAD_BYTES * usage.direct.packets },
    relay: { ...usage.relay, wireBytes: usage.relay.bytes + WIRE_OVERHEAD_BYTES * usage.relay.packets },
    savedRatio: all === 0 ? null : Math.round((usage.direct.bytes / all) * 10_000) / 10_000,
  };
}

/**
 * The report over calls that started at or after `sinceMs` (epoch ms). Each call counts once: the
 * media of a call is what each side sent, so with both records each packet is counted at its
 * sender; with one record (the other side never reported) that side's sent plus received stands in.
 * A side that reported twice (a resent PUBLISH) counts once. The NAT pair is the caller's view.
 */
export function summarizeCalls(records: readonly CallRecord[], sinceMs?: number): CallsReport {
  const byCall = new Map<string, Map<string, CallRecord>>();
  let used = 0;
  for (const record of records) {
    if (sinceMs !== undefined && Date.parse(record.startedAt) < sinceMs) continue;
    used++;
    const sides = byCall.get(record.callId) ?? new Map<string, CallRecord>();
    byCall.set(record.callId, sides);
    sides.set(record.role, record);
  }
  const empty = (): Usage => ({
    calls: 0,
    relayedCalls: 0,
    plainCalls: 0,
    direct: { bytes: 0, packets: 0 },
    relay: { bytes: 0, packets: 0 },
  });
  const total = empty();
  const pairs = new Map<string, Usage & { callerNat: string; calleeNat: string }>();
  for (const sides of byCall.values()) {
    const caller = sides.get('caller');
    const callee = sides.get('callee');
    const callerNat = caller?.localNat ?? callee?.remoteNat ?? 'unknown';
    const calleeNat = caller?.remoteNat ?? callee?.localNat ?? 'unknown';
    const key = `${callerNat}\n${calleeNat}`;
    const pair = pairs.get(key) ?? { ...empty(), callerNat, calleeNat };
    pairs.set(key, pair);
    const call = empty();
    call.calls = 1;
    if (caller && callee) {
      for (const side of [caller, callee]) {
        add(call.direct, side.sent.direct);
        add(call.relay, side.sent.relay);
      }
    } else {
      const only = (caller ?? callee)!;
      add(call.direct, only.sent.direct);
      add(call.direct, only.received.direct);
      add(call.relay, only.sent.relay);
      add(call.relay, only.received.relay);
    }
    call.relayedCalls = call.relay.packets > 0 ? 1 : 0;
    call.plainCalls = caller?.encryption === 'none' || callee?.encryption === 'none' ? 1 : 0;
    for (const into of [pair, total]) {
      into.calls += call.calls;
      into.relayedCalls += call.relayedCalls;
      into.plainCalls += call.plainCalls;
      add(into.direct, call.direct);
      add(into.relay, call.relay);
    }
  }
  return {
    since: sinceMs === undefined ? null : new Date(sinceMs).toISOString(),
    records: used,
    pairs: [...pairs.values()]
      .sort((a, b) => b.calls - a.calls || a.callerNat.localeCompare(b.callerNat))
      .map(({ callerNat, calleeNat, ...usage }) => ({ callerNat, calleeNat, ...finish(usage) })),
    total: finish(total),
  };
}

/**
 * `--since`: an ISO 8601 time, or a duration back from `nowMs` such as `90s`, `30m`, `12h`, `7d`.
 * Throws with the accepted forms on anything else.
 */
export function parseSince(text: string, nowMs: number): number {
  const relative = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text.trim());
  if (relative) {
    const unitMs = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return nowMs - Number(relative[1]) * unitMs;
  }
  const absolute = Date.parse(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && Number.isFinite(absolute)) return absolute;
  throw new Error(
    `--since '${text}' is neither an ISO time (2026-11-22T08:00:00Z) nor a duration (90s, 30m, 12h, 7d)`,
  );
}

export interface SavingsPoint {
  /** Start of the bucket (ISO time). */
  readonly from: string;
  readonly calls: number;
  readonly relayedCalls: number;
  readonly directBytes: number;
  readonly relayBytes: number;
  readonly savedRatio: number | null;
}

/**
 * Issue 22: the saved ratio over time, for the console's chart: the calls' span (first to last
 * start) cut into `buckets` equal slices, each summarized as `summarizeCalls` does. Empty slices
 * are kept (calls 0, savedRatio null) so the time axis stays even.
 */
export function savingsOverTime(records: readonly CallRecord[], buckets = 24): SavingsPoint[] {
  if (records.length === 0) return [];
  const starts = records.map((r) => Date.parse(r.startedAt));
  const first = Math.min(...starts);
  const last = Math.max(...starts);
  const n = Math.max(1, Math.min(buckets, 1000));
  const widthMs = Math.max(1000, Math.ceil((last - first + 1) / n));
  const slices: CallRecord[][] = Array.from({ length: n }, () => []);
  records.forEach((record, i) => {
    slices[Math.min(n - 1, Math.floor((starts[i]! - first) / widthMs))]!.push(record);
  });
  return slices.map((slice, i) => {
    const { total } = summarizeCalls(slice);
    return {
      from: new Date(first + i * widthMs).toISOString(),
      calls: total.calls,
      relayedCalls: total.relayedCalls,
      directBytes: total.direct.bytes,
      relayBytes: total.relay.bytes,
      savedRatio: total.savedRatio,
    };
  });
}
