/**
 * Relay-bandwidth accounting against the lab's own counters: calls between mixed NAT pairs (one
 * direct, one relayed, one either way), then `sc2c report --json` beside the bytes the lab's links
 * counted. The lab classifies media on the wire (RTP direct, ChannelData relayed) on each NAT's
 * uplink, where every media packet crosses once, at its sender; the records count at the sender too.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  type HostProcess,
  spawnInHost,
  stopHostProcesses,
  waitForOutput,
} from '../../src/lab/host-process.ts';
import { startLab, stopLab } from '../../src/lab/instances.ts';
import type { Scenario } from '../../src/lab/scenario.ts';
import { labUnavailable, sc2c } from './support.ts';

const unavailable = await labUnavailable();
const CONFIG = fileURLToPath(new URL('../../config/', import.meta.url));

const PASSWORDS: Record<string, string> = {
  alice: 'alice-lab-secret',
  bob: 'bob-lab-secret',
  camera1: 'camera1-lab-secret',
  viewer: 'viewer-lab-secret',
};

function scenario(): Scenario {
  const nat = (letter: string, index: number, profile: string, host: string) => ({
    name: `nat-${letter}`,
    profile,
    publicAddress: `198.18.${index}.1`,
    lan: `10.0.${index}.0/24`,
    link: { latencyMs: 10 },
    hosts: [{ name: host, address: `10.0.${index}.2` }],
  });
  return {
    description: 'four NATs for the accounting test',
    server: { addresses: ['198.18.0.10', '198.18.0.11'] },
    nats: [
      nat('a', 1, 'symmetric-seq1+pks', 'alice'),
      nat('b', 2, 'symmetric-seq1+ips', 'bob'),
      nat('c', 3, 'symmetric-random', 'camera1'),
      nat('d', 4, 'symmetric-random', 'viewer'),
    ],
    hosts: [],
    run: [],
  };
}

describe.skipIf(unavailable)('relay-bandwidth accounting in the kernel lab', () => {
  it('after calls between mixed NAT pairs, sc2c report --json matches the lab link counters within 2 %', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-acct-'));
    const records = join(dir, 'calls.jsonl');
    const serverConfig = join(dir, 'server.yaml');
    const server = readFileSync(join(CONFIG, 'server.yaml'), 'utf8')
      .replace('usersFile: users.yaml', `usersFile: ${join(CONFIG, 'users.yaml')}`)
      .replace('file: ../var/calls.jsonl', `file: ${records}`);
    expect(server).toContain(records);
    writeFileSync(serverConfig, server);
    const gatewayConfig = join(dir, 'gateway.yaml');
    writeFileSync(
      gatewayConfig,
      readFileSync(join(CONFIG, 'gateway.yaml'), 'utf8').replace(
        'spoolFile: ../var/spool-{user}.jsonl',
        `spoolFile: ${join(dir, 'spool-{user}.jsonl')}`,
      ),
    );
    const scenarioPath = join(dir, 'lab.yaml');
    writeFileSync(scenarioPath, stringify(scenario()));
    const name = `acct${process.pid % 10_000}`;
    const state = await startLab({ scenarioPath, scenario: scenario(), name });
    const children: HostProcess[] = [];
    const gateway = (user: string, extra: string[]) => [
      '--config',
      gatewayConfig,
      '--user',
      user,
      '--password',
      PASSWORDS[user]!,
      '--json',
      ...extra,
    ];
    try {
      const signaling = spawnInHost(state.hosts.server!, ['server', '--config', serverConfig]);
      children.push(signaling);
      await waitForOutput(signaling, /sc2c server:/, 'sc2c server');
      for (const callee of ['bob', 'camera1']) {
        const child = spawnInHost(state.hosts[callee]!, ['gateway', ...gateway(callee, [])]);
        children.push(child);
        await waitForOutput(child, /"event":"registered"/, `${callee}'s gateway`);
      }
      const calls: { route: string | null; ok: boolean }[] = [];
      for (const [caller, callee] of [
        ['alice', 'bob'],
        ['viewer', 'camera1'],
        ['alice', 'camera1'],
      ] as const) {
        const child = spawnInHost(state.hosts[caller]!, [
          'call',
          callee,
          ...gateway(caller, ['--duration', '4']),
        ]);
        let stdout = '';
        child.stdout.on('data', (d) => {
          stdout += d;
        });
        await new Promise((r) => child.on('exit', r));
        calls.push(JSON.parse(stdout.trim().split('\n').at(-1)!));
      }
      expect(calls.map((c) => c.ok)).toEqual([true, true, true]);
      expect(calls[0]!.route).toBe('direct');
      expect(calls[1]!.route).toBe('relay');
      // The callees record a call when it closes (the caller's BYE): wait for all six records.
      for (let i = 0; i < 50; i++) {
        const lines = existsSync(records) ? readFileSync(records, 'utf8').trim().split('\n').length : 0;
        if (lines >= 6) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const status = JSON.parse((await sc2c('lab', 'status', '--lab', name, '--json')).stdout) as {
        links: { name: string; up: { rtpBytes: number }; down: { rtpBytes: number } }[];
      };
      // Every media packet crosses its sender's NAT uplink once; a relayed one then enters the
      // server's link (RTP to the peer's relayed address) before the relay forwards it.
      const uplinks = status.links.filter((l) => /^nat-[a-d]<->/.test(l.name));
      expect(uplinks).toHaveLength(4);
      const serverLink = status.links.find((l) => l.name.startsWith('server<->'))!;
      const relayed = serverLink.down.rtpBytes;
      const lab = { direct: uplinks.reduce((n, l) => n + l.up.rtpBytes, 0) - relayed, relay: relayed };
      const run = await sc2c('report', '--file', records, '--json');
      expect(run.code).toBe(0);
      const report = JSON.parse(run.stdout) as {
        records: number;
        pairs: unknown[];
        total: {
          calls: number;
          direct: { wireBytes: number };
          relay: { wireBytes: number };
          savedRatio: number;
        };
      };
      console.info(
        `accounting: report direct ${report.total.direct.wireBytes} B, relay ${report.total.relay.wireBytes} B (saved ${report.total.savedRatio}); lab links: direct ${lab.direct} B, relay ${lab.relay} B`,
      );
      expect(report.records).toBe(6);
      expect(report.total.calls).toBe(3);
      expect(report.pairs.length).toBeGreaterThanOrEqual(2);
      expect(lab.direct).toBeGreaterThan(100_000);
      expect(lab.relay).toBeGreaterThan(100_000);
      expect(Math.abs(report.total.direct.wireBytes - lab.direct) / lab.direct).toBeLessThan(0.02);
      expect(Math.abs(report.total.relay.wireBytes - lab.relay) / lab.relay).toBeLessThan(0.02);
      expect(report.total.savedRatio).toBeGreaterThan(0);
      expect(report.total.savedRatio).toBeLessThan(1);
    } finally {
      await stopHostProcesses(children);
      await stopLab(state);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
