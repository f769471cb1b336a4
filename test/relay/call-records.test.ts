import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordPublisher } from '../../src/gateway/call-accounting.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import {
  type CallRecord,
  CallRecordStore,
  parseCallRecord,
  parseSince,
  summarizeCalls,
} from '../../src/relay/call-records.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { CALL_RECORD_EVENT, SignalingServer } from '../../src/signaling/server.ts';

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-records-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const PKS = 'APDM/seq+1 (pks)';
const RANDOM = 'APDM/random';

function record(over: Partial<CallRecord> & Pick<CallRecord, 'callId' | 'role'>): CallRecord {
  const route = (bytes: number, packets: number) => ({ bytes, packets });
  return {
    v: 1,
    user: over.role === 'caller' ? 'alice' : 'bob',
    peer: over.role === 'caller' ? 'bob' : 'alice',
    mode: 'sc2c',
    ok: true,
    startedAt: '2026-11-22T08:00:00.000Z',
    endedAt: '2026-11-22T08:00:10.000Z',
    setupMs: 300,
    route: 'direct',
    localNat: over.role === 'caller' ? PKS : RANDOM,
    remoteNat: over.role === 'caller' ? RANDOM : PKS,
    sent: { direct: route(0, 0), relay: route(0, 0) },
    received: { direct: route(0, 0), relay: route(0, 0) },
    switches: 0,
    ...over,
  };
}

describe('call records', () => {
  it('counts each packet once, at its sender, per NAT pair and in total', () => {
    const records = [
      record({
        callId: 'c1',
        role: 'caller',
        sent: { direct: { bytes: 100, packets: 1 }, relay: { bytes: 0, packets: 0 } },
        received: { direct: { bytes: 9000, packets: 9 }, relay: { bytes: 900, packets: 1 } },
      }),
      record({
        callId: 'c1',
        role: 'callee',
        sent: { direct: { bytes: 9000, packets: 9 }, relay: { bytes: 1000, packets: 1 } },
        received: { direct: { bytes: 100, packets: 1 }, relay: { bytes: 0, packets: 0 } },
      }),
      // A resent PUBLISH: the same side twice counts once.
      record({
        callId: 'c1',
        role: 'callee',
        sent: { direct: { bytes: 9000, packets: 9 }, relay: { bytes: 1000, packets: 1 } },
      }),
      // Only the callee reported: its sent plus received stand in for the call.
      record({
        callId: 'c2',
        role: 'callee',
        localNat: RANDOM,
        remoteNat: RANDOM,
        route: 'relay',
        sent: { direct: { bytes: 0, packets: 0 }, relay: { bytes: 5000, packets: 5 } },
        received: { direct: { bytes: 0, packets: 0 }, relay: { bytes: 50, packets: 1 } },
        encryption: 'none',
      }),
    ];
    const report = summarizeCalls(records);
    expect(report.records).toBe(4);
    expect(report.total.calls).toBe(2);
    expect(report.total.relayedCalls).toBe(2);
    // c2 went in clear (--insecure-media): the report says so.
    expect(report.total.plainCalls).toBe(1);
    expect(report.total.direct).toEqual({ bytes: 9100, packets: 10, wireBytes: 9100 + 28 * 10 });
    expect(report.total.relay).toEqual({ bytes: 6050, packets: 7, wireBytes: 6050 + 28 * 7 });
    expect(report.total.savedRatio).toBe(Math.round((9100 / 15_150) * 10_000) / 10_000);
    const pks = report.pairs.find((p) => p.callerNat === PKS)!;
    expect(pks).toMatchObject({
      calleeNat: RANDOM,
      calls: 1,
      savedRatio: Math.round((9100 / 10_100) * 10_000) / 10_000,
    });
    const random = report.pairs.find((p) => p.callerNat === RANDOM)!;
    expect(random).toMatchObject({ calleeNat: RANDOM, calls: 1, savedRatio: 0 });
  });

  it('filters by start time; a report with no media has no ratio', () => {
    const records = [
      record({ callId: 'old', role: 'caller', startedAt: '2026-11-21T08:00:00.000Z' }),
      record({
        callId: 'new',
        role: 'caller',
        startedAt: '2026-11-22T09:00:00.000Z',
        ok: false,
        route: null,
      }),
    ];
    const report = summarizeCalls(records, Date.parse('2026-11-22T00:00:00Z'));
    expect(report.records).toBe(1);
    expect(report.total.calls).toBe(1);
    expect(report.total.savedRatio).toBeNull();
    expect(report.since).toBe('2026-11-22T00:00:00.000Z');
  });

  it('parses --since as an ISO time or a duration back from now, and says what it takes otherwise', () => {
    const now = Date.parse('2026-11-22T12:00:00Z');
    expect(parseSince('2026-11-22T08:00:00Z', now)).toBe(Date.parse('2026-11-22T08:00:00Z'));
    expect(parseSince('90s', now)).toBe(now - 90_000);
    expect(parseSince('30m', now)).toBe(now - 1_800_000);
    expect(parseSince('12h', now)).toBe(now - 43_200_000);
    expect(parseSince('7d', now)).toBe(now - 7 * 86_400_000);
    for (const bad of ['yesterday', '10', '5w', '-1h', ''])
      expect(() => parseSince(bad, now)).toThrow(/ISO time .* duration/);
  });

  it('refuses a malformed record and names the field', () => {
    expect(() => parseCallRecord({ ...record({ callId: 'x', role: 'caller' }), role: 'boss' })).toThrow(
      /role/,
    );
    expect(() =>
      parseCallRecord({
        ...record({ callId: 'x', role: 'caller' }),
        sent: { direct: { bytes: -1, packets: 0 } },
      }),
    ).toThrow(/sent/);
    expect(() => parseCallRecord({ ...record({ callId: 'x', role: 'caller' }), extra: 1 })).toThrow();
    expect(() => parseCallRecord('nope')).toThrow(/bad call record/);
  });

  it('persists across store instances (a restart) and skips a line cut short by a crash', () => {
    const path = join(tempDir(), 'sub', 'calls.jsonl');
    expect(new CallRecordStore(path).read()).toEqual({ records: [], skipped: 0 });
    new CallRecordStore(path).append(record({ callId: 'a', role: 'caller' }));
    new CallRecordStore(path).append(record({ callId: 'a', role: 'callee' }));
    appendFileSync(path, '{"v":1,"callId":"torn');
    const reopened = new CallRecordStore(path).read();
    expect(reopened.records.map((r) => `${r.callId}/${r.role}`)).toEqual(['a/caller', 'a/callee']);
    expect(reopened.skipped).toBe(1);
  });

  it('appends off the event loop (the server forwards media on it) with the same file format', async () => {
    const path = join(tempDir(), 'async', 'calls.jsonl');
    const store = new CallRecordStore(path);
    await Promise.all([
      store.appendAsync(record({ callId: 'b', role: 'caller' })),
      store.appendAsync(record({ callId: 'c', role: 'caller' })),
    ]);
    store.append(record({ callId: 'b', role: 'callee' }));
    const read = store.read();
    expect(read.records.map((r) => `${r.callId}/${r.role}`).toSorted()).toEqual([
      'b/callee',
      'b/caller',
      'c/caller',
    ]);
    expect(read.skipped).toBe(0);
  });
});

describe('call records over signaling (PUBLISH)', () => {
  async function setup(onCallRecord?: (body: string, user: string) => Promise<void>) {
    const clock = new VirtualClock();
    const net = new VirtualNetwork({ clock, seed: 3 });
    const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
    const serverHost = net.addHost('server', { addresses: ['198.18.0.10'] });
    const alice = net.addHost('alice', { addresses: ['198.18.1.2'] });
    net.connect(serverHost, internet, { latencyMs: 5 });
    net.connect(alice, internet, { latencyMs: 5 });
    const users = { alice: 'alice-pass-1', bob: 'bob-pass-12' };
    const server = await SignalingServer.start(
      { network: serverHost, clock },
      { listen: { port: 5060 }, realm: 'sc2c.lab', users, onCallRecord },
    );
    const client = await clock.run(
      SignalingClient.connect(
        { network: alice, clock },
        {
          server: { address: '198.18.0.10', port: 5060 },
          domain: 'sc2c.lab',
          user: 'alice',
          password: users.alice,
        },
      ),
    );
    return { clock, server, client };
  }
  const publish = (client: SignalingClient, body: string, event = CALL_RECORD_EVENT) =>
    client.request('PUBLISH', 'sip:sc2c.lab', [['Event', event]], { body });

  it('stores a registered user’s record before the 200; refuses others with 403, 489 and 400', async () => {
    const dir = tempDir();
    const store = new CallRecordStore(join(dir, 'calls.jsonl'));
    const s = await setup(async (body, user) => {
      const parsed = parseCallRecord(JSON.parse(body));
      if (parsed.user !== user) throw new Error('not yours');
      store.append(parsed);
    });
    const good = JSON.stringify(record({ callId: 'p1', role: 'caller' }));
    expect((await s.clock.run(publish(s.client, good))).status).toBe(403); // not registered yet
    await s.clock.run(s.client.register());
    expect((await s.clock.run(publish(s.client, good, 'presence'))).status).toBe(489);
    const bad = await s.clock.run(publish(s.client, '{"v":1}'));
    expect(bad.status).toBe(400);
    const forged = JSON.stringify(record({ callId: 'p2', role: 'callee' })); // user bob
    expect((await s.clock.run(publish(s.client, forged))).status).toBe(400);
    expect((await s.clock.run(publish(s.client, good))).status).toBe(200);
    expect(store.read().records.map((r) => r.callId)).toEqual(['p1']);
    s.client.close();
    s.server.close();
  });

  it('spools a record the server does not take and delivers it on the next flush', async () => {
    const dir = tempDir();
    const delivered: string[] = [];
    let accept = false;
    const s = await setup(async (body) => {
      if (!accept) throw new Error('store unavailable');
      delivered.push(parseCallRecord(JSON.parse(body)).callId);
    });
    await s.clock.run(s.client.register());
    const spoolFile = join(dir, 'spool.jsonl');
    const publisher = new RecordPublisher(() => s.client, { spoolFile });
    expect(await s.clock.run(publisher.publish(record({ callId: 's1', role: 'caller' })))).toBe('spool');
    expect(await s.clock.run(publisher.publish(record({ callId: 's2', role: 'caller' })))).toBe('spool');
    expect(readFileSync(spoolFile, 'utf8').trim().split('\n')).toHaveLength(2);
    // Still refused: both stay spooled.
    expect(await s.clock.run(publisher.flushSpool())).toBe(0);
    expect(new CallRecordStore(spoolFile).read().records).toHaveLength(2);
    accept = true;
    expect(await s.clock.run(publisher.flushSpool())).toBe(2);
    expect(delivered).toEqual(['s1', 's2']);
    expect(new CallRecordStore(spoolFile).read().records).toHaveLength(0);
    s.client.close();
    s.server.close();
  });
});
