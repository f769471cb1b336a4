import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labDir, readState } from '../../src/lab/control.ts';
import { cleanupLab, startLab, stopLab, sweepNamespaces } from '../../src/lab/instances.ts';
import { loadScenario } from '../../src/lab/scenario.ts';
import {
  BIN,
  eventually,
  labUnavailable,
  namespacesOf,
  oneNat,
  sc2c,
  scenarioFile,
  sleep,
} from './support.ts';

const unavailable = await labUnavailable();
const tag = `t${process.pid % 10_000}`;
const started: string[] = [];

afterAll(async () => {
  // Whatever a failing test left behind goes, so the next run starts clean.
  for (const name of started) {
    const state = readState(name);
    if (state) await cleanupLab(state);
    else await sweepNamespaces(name);
    // A crashed lab keeps its log on purpose; the test has read it by now.
    rmSync(labDir(name), { recursive: true, force: true });
  }
});

/** Starts a shipped scenario under `name`, runs `body`, and always stops it. */
async function withShipped(file: string, name: string, body: () => Promise<void>): Promise<void> {
  started.push(name);
  const path = new URL(`../../config/lab/${file}`, import.meta.url).pathname;
  const state = await startLab({ scenarioPath: path, scenario: loadScenario(path), name });
  try {
    await body();
  } finally {
    await stopLab(state);
  }
}

async function up(name: string, yaml: string, extra: string[] = []): Promise<void> {
  started.push(name);
  const result = await sc2c('lab', 'up', scenarioFile(yaml), '--name', name, ...extra);
  expect(result.stderr + result.stdout).toMatch(/is up/);
  expect(result.code).toBe(0);
}

/** Runs an echo server in the lab's server host and a ping from `host`; returns the ping's JSON. */
async function ping(lab: string, host: string, args: string[]) {
  const echo = spawn(
    process.execPath,
    [
      BIN,
      'lab',
      'exec',
      'server',
      '--lab',
      lab,
      '--',
      process.execPath,
      BIN,
      'udp',
      'echo',
      '--port',
      '7',
      '--duration-s',
      '120',
    ],
    {
      stdio: 'ignore',
    },
  );
  await sleep(1500);
  try {
    const result = await sc2c(
      'lab',
      'exec',
      host,
      '--lab',
      lab,
      '--',
      process.execPath,
      BIN,
      'udp',
      'ping',
      '198.18.0.10:7',
      '--json',
      ...args,
    );
    expect(result.code).toBe(0);
    return JSON.parse(result.stdout) as {
      sent: number;
      received: number;
      lossPct: number;
      rttMs: { min: number; p50: number };
    };
  } finally {
    echo.kill('SIGTERM');
  }
}

describe.skipIf(unavailable)('kernel lab (real namespaces)', () => {
  it('comes up, counts the traffic it routes, and goes down leaving nothing', async () => {
    const name = `${tag}a`;
    await up(name, oneNat('symmetric-seq1'));
    expect(await namespacesOf(name)).toHaveLength(2);
    const result = await ping(name, 'client', ['--count', '20', '--interval-ms', '5']);
    expect(result.received).toBe(20);
    const status = JSON.parse((await sc2c('lab', 'status', '--lab', name, '--json')).stdout);
    const client = status.hosts.find((h: { name: string }) => h.name === 'client');
    // 20 pings of 64 bytes of UDP payload + 28 bytes of headers each.
    expect(client.counters.txPackets).toBeGreaterThanOrEqual(20);
    expect(client.counters.txBytes).toBeGreaterThanOrEqual(20 * 92);
    const uplink = status.links.find((l: { name: string }) => l.name === 'nat<->internet');
    expect(uplink.up.packets).toBe(client.counters.txPackets);
    expect(status.nats[0].mappings).toBeGreaterThanOrEqual(1);
    const prometheus = (await sc2c('lab', 'status', '--lab', name, '--prometheus')).stdout;
    expect(prometheus).toMatch(
      new RegExp(
        `sc2c_lab_host_tx_packets_total\\{lab="${name}",host="client"\\} ${client.counters.txPackets}`,
      ),
    );
    const down = await sc2c('lab', 'down', name);
    expect(down.code).toBe(0);
    expect(await namespacesOf(name)).toEqual([]);
    expect(readState(name)).toBeUndefined();
  });

  it('applies link delay: a 40 ms one-way uplink gives an RTT of at least 80 ms (accuracy: npm run bench:lab)', async () => {
    const name = `${tag}r`;
    await up(name, oneNat('port-restricted-cone', '{ latencyMs: 40 }'));
    const result = await ping(name, 'client', ['--count', '200', '--interval-ms', '2']);
    expect(result.received).toBe(200);
    // libuv may fire a timer up to 1 ms early against performance.now(): the floor allows that.
    expect(result.rttMs.min).toBeGreaterThanOrEqual(79);
    await sc2c('lab', 'down', name);
  });

  it('applies link loss: 5 % upstream loss drops 5 ± 1.5 % of 5,000 packets', async () => {
    const name = `${tag}l`;
    await up(name, oneNat('port-restricted-cone', '{ latencyMs: 1, up: { loss: 0.05 } }'));
    // Paced at 1 ms: an unpaced burst overflows socket and TUN queues, which is not link loss.
    const result = await ping(name, 'client', ['--count', '5000', '--interval-ms', '1', '--size', '100']);
    const status = JSON.parse((await sc2c('lab', 'status', '--lab', name, '--json')).stdout);
    const uplink = status.links.find((l: { name: string }) => l.name === 'nat<->internet');
    expect(uplink.up.lostPackets).toBe(result.sent - result.received);
    expect(result.lossPct).toBeGreaterThanOrEqual(3.5);
    expect(result.lossPct).toBeLessThanOrEqual(6.5);
    await sc2c('lab', 'down', name);
  });

  it('runs two labs of the same scenario side by side', async () => {
    const [a, b] = [`${tag}x`, `${tag}y`];
    await up(a, oneNat('symmetric-seq2'));
    await up(b, oneNat('symmetric-seq2'));
    expect((await ping(a, 'client', ['--count', '5'])).received).toBe(5);
    await sc2c('lab', 'down', a);
    expect(await namespacesOf(a)).toEqual([]);
    expect((await ping(b, 'client', ['--count', '5'])).received).toBe(5);
    await sc2c('lab', 'down', b);
  });

  for (const [how, act] of [
    ['SIGTERM', (pid: number) => process.kill(pid, 'SIGTERM')],
    ['SIGINT', (pid: number) => process.kill(pid, 'SIGINT')],
  ] as const) {
    it(`cleans up when the lab process gets ${how}`, async () => {
      const name = `${tag}${how.toLowerCase().slice(3, 6)}`;
      await up(name, oneNat('full-cone'));
      act(readState(name)!.pid);
      expect(await eventually(async () => (await namespacesOf(name)).length === 0 && !readState(name))).toBe(
        true,
      );
    });
  }

  it('cleans up when the lab process throws', async () => {
    const name = `${tag}exc`;
    started.push(name);
    const path = scenarioFile(oneNat('full-cone'));
    await startLab({
      scenarioPath: path,
      scenario: loadScenario(path),
      name,
      env: { SC2C_LAB_CRASH_AFTER_MS: '500' },
    });
    expect(await eventually(async () => (await namespacesOf(name)).length === 0 && !readState(name))).toBe(
      true,
    );
    expect(readFileSync(`/run/sc2c-lab/${name}/lab.log`, 'utf8')).toMatch(
      /uncaught exception.*crash requested/s,
    );
  });

  it('lab down removes what a SIGKILLed lab left behind', async () => {
    const name = `${tag}kil`;
    await up(name, oneNat('full-cone'));
    process.kill(readState(name)!.pid, 'SIGKILL');
    await sleep(300);
    expect(await namespacesOf(name)).toHaveLength(2);
    expect((await sc2c('lab', 'down', name)).code).toBe(0);
    expect(await namespacesOf(name)).toEqual([]);
  });

  it('writes a pcap per link that holds the routed packets', async () => {
    const name = `${tag}pc`;
    const dir = join(scenarioFile('').replace(/scenario\.yaml$/, ''), 'pcap');
    await up(name, oneNat('symmetric-seq1'), ['--pcap', dir]);
    await ping(name, 'client', ['--count', '10', '--interval-ms', '5']);
    await sc2c('lab', 'down', name);
    const files = readdirSync(dir);
    expect(files.sort()).toEqual(['client--nat.pcap', 'nat--internet.pcap', 'server--internet.pcap']);
    const pcap = readFileSync(join(dir, 'nat--internet.pcap'));
    expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(pcap.readUInt32LE(20)).toBe(101);
    // 10 pings out and 10 echoes back, each a 16-byte record header plus a 92-byte IPv4 packet.
    expect(pcap.byteLength).toBe(24 + 20 * (16 + 92));
    // The first record holds an IPv4 packet from the NAT's public address.
    expect(pcap[24 + 16]! >> 4).toBe(4);
    expect([...pcap.subarray(24 + 16 + 12, 24 + 16 + 16)].join('.')).toBe('198.18.1.1');
  });

  it('passes traffic both ways through a kernel nftables NAT', async () => {
    const name = `${tag}k`;
    await withShipped('kernel-nat.yaml', name, async () => {
      const result = await ping(name, 'dave', ['--count', '10', '--interval-ms', '5']);
      expect(result.received).toBe(10);
    });
  });

  it('routes through a multi-level NAT, translated twice on the way out', async () => {
    const name = `${tag}m`;
    await withShipped('multilevel.yaml', name, async () => {
      const viaBoth = await ping(name, 'alice', ['--count', '20', '--interval-ms', '5']);
      expect(viaBoth.received).toBeGreaterThan(14);
      const status = JSON.parse((await sc2c('lab', 'status', '--lab', name, '--json')).stdout);
      const mappings = Object.fromEntries(
        status.nats.map((n: { name: string; mappings: number }) => [n.name, n.mappings]),
      );
      expect(mappings.home).toBeGreaterThanOrEqual(1);
      expect(mappings.carrier).toBeGreaterThanOrEqual(1);
    });
  });

  it('lab natcheck: every shipped profile and both kernel NATs behave as declared, with real sockets', async () => {
    const result = await sc2c('lab', 'natcheck', '--json', '--quiet');
    const rows = JSON.parse(result.stdout) as { profile: string; match: boolean; mismatches: string[] }[];
    expect(rows).toHaveLength(20);
    expect(rows.filter((r) => !r.match)).toEqual([]);
    expect(result.code).toBe(0);
  }, 300_000);

  it('refuses to run without root, saying what is missing', async () => {
    const { execFile } = await import('node:child_process');
    const out = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          BIN,
          'lab',
          'up',
          new URL('../../config/lab/pks-vs-ips.yaml', import.meta.url).pathname,
        ],
        (error, _o, stderr) => resolve({ code: (error as { code?: number } | null)?.code ?? 0, stderr }),
      );
    });
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/needs root/);
    expect(out.stderr).not.toMatch(/\.ts:\d+/);
  });

  it('names the field at fault in a malformed scenario, and refuses outside addresses', async () => {
    const bad = await sc2c(
      'lab',
      'up',
      scenarioFile(oneNat('symmetric-seq1').replace('198.18.1.1', '1.1.1.1')),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/nats\.0\.publicAddress/);
    expect(existsSync('/run/sc2c-lab/scenario/state.json')).toBe(false);
  });
});
