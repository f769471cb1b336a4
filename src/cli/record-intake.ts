/** Call records from gateways, as `sc2c server` takes them (PUBLISH) and reports them (issue 22). */
import {
  type CallRecord,
  type CallRecordStore,
  parseCallRecord,
  savingsOverTime,
  summarizeCalls,
} from '../relay/call-records.ts';
import type { SignalingStore } from '../signaling/store.ts';

/** A record's key is remembered a week: a gateway publishing it again after a failover is answered, not stored twice. */
const RECORD_KEY_TTL_MS = 7 * 24 * 3600_000;

/** Takes call records from gateways: validated, the user checked, stored (fsynced) before the 200. */
export class RecordIntake {
  stored = 0;
  refused = 0;
  readonly bytes = { direct: 0, relay: 0 };

  /** Records published again (a gateway that failed over to another node): answered 200, not stored twice. */
  duplicates = 0;

  constructor(
    private readonly store: CallRecordStore,
    private readonly log: (line: string, level?: 'info' | 'warn', fields?: Record<string, unknown>) => void,
    /** Issue 24: the nodes' shared store, where each record's key is taken once across all nodes. */
    private readonly shared?: SignalingStore,
  ) {}

  async take(body: string, user: string): Promise<void> {
    let record: CallRecord;
    try {
      record = parseCallRecord(JSON.parse(body));
      if (record.user !== user) throw new Error(`record for user '${record.user}' published by '${user}'`);
    } catch (error) {
      this.refused++;
      throw error;
    }
    const key = `${record.user}|${record.role}|${record.callId}`;
    if (this.shared && !(await this.shared.claimRecord(key, RECORD_KEY_TTL_MS))) {
      this.duplicates++;
      return;
    }
    try {
      await this.store.appendAsync(record);
    } catch (error) {
      await this.shared?.releaseRecord(key).catch(() => {});
      throw error;
    }
    this.stored++;
    const bytes = (route: 'direct' | 'relay') => record.sent[route].bytes + record.received[route].bytes;
    this.log(
      `call ${record.callId} record from ${user} (${record.role}, peer ${record.peer}): ${record.ok ? `route ${record.route}` : `failed: ${record.reason ?? 'unknown'}`}, ${bytes('direct')} bytes direct, ${bytes('relay')} relayed`,
      'info',
      {
        event: 'call-record',
        callId: record.callId,
        user,
        peer: record.peer,
        ok: record.ok,
        route: record.route,
        directBytes: bytes('direct'),
        relayBytes: bytes('relay'),
      },
    );
    this.bytes.direct += record.sent.direct.bytes;
    this.bytes.relay += record.sent.relay.bytes;
    this.#cache = undefined;
  }

  #cache?: { atMs: number; records: CallRecord[] };

  /**
   * Issue 22: `sc2c report`'s figures over the calls `user` took part in (`x-sc2c-report`), with
   * the saved ratio over time and calls by route, for the console's charts. The file is read at
   * most once per 5 s, however often consoles ask.
   */
  reportFor(user: string) {
    const now = Date.now();
    if (!this.#cache || now - this.#cache.atMs > 5000)
      this.#cache = { atMs: now, records: this.store.read().records };
    const mine = this.#cache.records.filter((r) => r.user === user || r.peer === user);
    const report = summarizeCalls(mine);
    const failed = new Set(mine.filter((r) => !r.ok).map((r) => r.callId));
    for (const r of mine) if (r.ok) failed.delete(r.callId);
    return {
      user,
      ...report,
      byRoute: {
        direct: report.total.calls - report.total.relayedCalls - failed.size,
        relay: report.total.relayedCalls,
        failed: failed.size,
      },
      series: savingsOverTime(mine),
    };
  }
}
