/**
 * Call records that tell the truth (issue 18): a viewer killed mid-call leaves the camera sending
 * into the void, first on the dead direct path, then (its watchdog moving media) on the relay. The
 * camera's record must say the call failed, count as sent only what the viewer's receiver reports
 * confirmed, on the route that carried it, and put the rest under `unconfirmed`: never relay use.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CallRecord, parseCallRecord } from '../../src/relay/call-records.ts';
import { freePort } from '../free-port.ts';
import { initSite, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-records-');

describe('call records when the peer dies', () => {
  it('a killed viewer: the camera records a failed call with only the confirmed bytes, not relay use', async () => {
    const [sip, stun, admin] = [await freePort(), await freePort(), await freePort()];
    const { site } = await initSite(sc2c, dir, { sip, stun, admin });
    const server = await startServer(sc2c, join(site, 'server.yaml'));
    const camera = sc2c(['gateway', '--config', join(site, 'gateway.yaml'), '--json']);
    await until('the camera', () => /"event":"cameras"/.test(camera.out()), 30_000);
    const viewer = sc2c([
      'call',
      'camera1',
      '--config',
      join(site, 'viewer.yaml'),
      '--record',
      join(dir, 'v.mp4'),
      '--duration',
      '60',
    ]);
    await until('media', () => /"event":"media-started"/.test(camera.out()), 20_000);
    // Receiver reports come every second: let a few confirm what arrived, then the viewer dies.
    await new Promise((r) => setTimeout(r, 3000));
    const killedAt = Date.now();
    viewer.child.kill('SIGKILL');
    await until(
      'the camera to give up on the silent viewer',
      () => /"event":"media-ended"/.test(camera.out()),
      20_000,
    );
    const calls = join(site, 'calls.jsonl');
    let record: CallRecord | undefined;
    await until('the camera record at the server', () => {
      const lines = (() => {
        try {
          return readFileSync(calls, 'utf8').split('\n').filter(Boolean);
        } catch {
          return [];
        }
      })();
      record = lines.map((l) => parseCallRecord(JSON.parse(l))).find((r) => r.user === 'camera1');
      return record !== undefined;
    });
    expect(record!.ok).toBe(false);
    expect(record!.reason).toMatch(/nothing from the peer/);
    // What went after the viewer's last report (at least the seconds before the camera gave up)
    // is apart; what its reports confirmed, some seconds of video, is `sent`.
    expect(record!.unconfirmed!.bytes).toBeGreaterThan(50_000);
    expect(record!.sent.direct.bytes + record!.sent.relay.bytes).toBeGreaterThan(100_000);
    // The watchdog moves media to the relay when the direct path goes silent. Moves after the kill
    // (towards nobody, the report) must leave no trace in `sent`; a move while the viewer
    // lived (a loaded machine can stall the direct path for 500 ms) carried media it confirmed.
    const moves = camera
      .out()
      .split('\n')
      .filter((line) => line.includes('"event":"route"'))
      .map((line) => JSON.parse(line) as { time: string; route: string });
    const relayedWhileAlive = moves.some((m) => m.route === 'relay' && Date.parse(m.time) < killedAt);
    if (!relayedWhileAlive) {
      expect(record!.route).toBe('direct');
      expect(record!.sent.relay.bytes).toBe(0);
      const report = sc2c(['report', '--file', calls, '--json']);
      expect((await report.exited).code).toBe(0);
      const summary = JSON.parse(report.out()) as { total: { relay: { bytes: number } } };
      expect(summary.total.relay.bytes).toBe(0);
    }
    camera.child.kill('SIGTERM');
    expect((await camera.exited).code).toBe(0);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  }, 90_000);
});
