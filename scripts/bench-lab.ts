/**
 * `npm run bench:lab [-- --json] [-- --out FILE]`: measures the kernel lab's own accuracy and speed.
 *   1. RTT through a 40 ms one-way link (80 ms configured): target p50 within ±2 ms.
 *   2. Loss through a 5 % lossy link over 5,000 packets: target 5 ± 1.5 %.
 *   3. Throughput of 1200-byte UDP through a NAT with a 20 ms one-way delay: target ≥ 20 Mbit/s.
 * Every load is bounded in count and time. Needs root (namespaces, /dev/net/tun).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnInHost } from '../src/lab/host-process.ts';
import { startLab, stopLab } from '../src/lab/instances.ts';
import { checkLabPrerequisites } from '../src/lab/netns.ts';
import { loadScenario } from '../src/lab/scenario.ts';

const run = promisify(execFile);
const BIN = new URL('../src/cli/bin.js', import.meta.url).pathname;
const args = process.argv.slice(2);
const USAGE = `usage: npm run bench:lab -- [--json] [--out FILE]

  Measures the kernel lab itself: RTT through a 40 ms one-way link, loss through a 5 % link,
  UDP throughput through a NAT. Needs root (network namespaces, /dev/net/tun).
  --json       print the results as JSON
  --out FILE   also write the JSON to FILE
  -h, --help   this text
`;
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const unknown = args.filter(
  (a, i) => a.startsWith('-') && a !== '--json' && a !== '--out' && args[i - 1] !== '--out',
);
if (unknown.length > 0 || (args.includes('--out') && !args[args.indexOf('--out') + 1])) {
  process.stderr.write(
    `bench:lab: ${unknown.length > 0 ? `unknown option ${unknown[0]}` : '--out needs a file'}\n${USAGE}`,
  );
  process.exit(2);
}
const json = args.includes('--json');
const outIndex = args.indexOf('--out');
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function scenario(link: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-'));
  const path = join(dir, 'bench.yaml');
  writeFileSync(
    path,
    `server: { addresses: [198.18.0.10, 198.18.0.11] }
nats:
  - name: nat
    profile: symmetric-seq1
    publicAddress: 198.18.1.1
    lan: 10.0.1.0/24
    link: ${link}
    hosts: [{ name: client, address: 10.0.1.2 }]
`,
  );
  return path;
}

async function withLab<T>(
  name: string,
  link: string,
  body: (hosts: Record<string, string>) => Promise<T>,
): Promise<T> {
  const path = scenario(link);
  const state = await startLab({ scenarioPath: path, scenario: loadScenario(path), name });
  try {
    return await body(state.hosts);
  } finally {
    await stopLab(state);
  }
}

async function output(namespace: string, tool: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run('ip', ['netns', 'exec', namespace, process.execPath, BIN, ...tool], {
    timeout: 120_000,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

async function pingThrough(hosts: Record<string, string>, count: number, intervalMs: number) {
  const echo = spawnInHost(hosts.server!, ['udp', 'echo', '--port', '7', '--duration-s', '120']);
  await new Promise((r) => setTimeout(r, 1500));
  try {
    return (await output(hosts.client!, [
      'udp',
      'ping',
      '198.18.0.10:7',
      '--json',
      '--count',
      String(count),
      '--interval-ms',
      String(intervalMs),
      '--size',
      '100',
    ])) as {
      sent: number;
      received: number;
      lossPct: number;
      rttMs: { p50: number; p95: number; min: number; max: number };
    };
  } finally {
    echo.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  await checkLabPrerequisites();
  const started = new Date().toISOString();
  log('1/3 RTT through 40 ms one-way (80 ms RTT configured), 2000 pings...');
  const rtt = await withLab('bench-rtt', '{ latencyMs: 40 }', (h) => pingThrough(h, 2000, 2));
  log(`    p50 ${rtt.rttMs.p50} ms, p95 ${rtt.rttMs.p95} ms`);
  log('2/3 loss through a 5 % lossy uplink (upstream only), 5000 pings...');
  const loss = await withLab('bench-loss', '{ latencyMs: 1, up: { loss: 0.05 } }', (h) =>
    pingThrough(h, 5000, 1),
  );
  log(`    ${loss.lossPct} % lost`);
  log('3/3 throughput of 1200-byte UDP through a NAT with 20 ms one-way delay, 5 s per rate...');
  const throughput = await withLab('bench-tput', '{ latencyMs: 20 }', async (h) => {
    const rows = [];
    for (const rateMbps of [20, 50, 100, 200]) {
      const sink = spawnInHost(h.server!, [
        'udp',
        'sink',
        '--port',
        '9',
        '--json',
        '--duration-s',
        '30',
        '--idle-ms',
        '1000',
      ]);
      let sinkOut = '';
      sink.stdout!.on('data', (d) => {
        sinkOut += d;
      });
      const sinkDone = new Promise((r) => sink.on('exit', r));
      await new Promise((r) => setTimeout(r, 1500));
      const sent = (await output(h.client!, [
        'udp',
        'blast',
        '198.18.0.10:9',
        '--json',
        '--size',
        '1200',
        '--rate-mbps',
        String(rateMbps),
        '--duration-s',
        '5',
      ])) as {
        sent: number;
        offeredMbps: number;
      };
      await sinkDone;
      const got = JSON.parse(sinkOut) as { packets: number; mbps: number };
      const row = {
        offeredMbps: Math.round(sent.offeredMbps * 10) / 10,
        receivedMbps: Math.round(got.mbps * 10) / 10,
        lossPct: Math.round(((sent.sent - got.packets) / sent.sent) * 1000) / 10,
      };
      log(
        `    offered ${row.offeredMbps} Mbit/s -> received ${row.receivedMbps} Mbit/s, ${row.lossPct} % lost`,
      );
      rows.push(row);
    }
    return rows;
  });
  // Sustained: the highest rate delivered with under 1 % loss.
  const sustained = Math.max(0, ...throughput.filter((r) => r.lossPct < 1).map((r) => r.receivedMbps));
  const result = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    started,
    rtt: {
      configuredMs: 80,
      ...rtt.rttMs,
      errorP50Ms: Math.round((rtt.rttMs.p50 - 80) * 1000) / 1000,
      pass: Math.abs(rtt.rttMs.p50 - 80) <= 2,
    },
    loss: {
      configuredPct: 5,
      measuredPct: loss.lossPct,
      packets: loss.sent,
      pass: Math.abs(loss.lossPct - 5) <= 1.5,
    },
    throughput: {
      payloadBytes: 1200,
      oneWayDelayMs: 20,
      rows: throughput,
      sustainedMbps: sustained,
      pass: sustained >= 20,
    },
  };
  const text = JSON.stringify(result, null, 2);
  if (outIndex >= 0 && args[outIndex + 1]) writeFileSync(args[outIndex + 1]!, `${text}\n`);
  if (json) process.stdout.write(`${text}\n`);
  else {
    process.stdout.write(
      [
        `RTT (80 ms configured): p50 ${rtt.rttMs.p50} ms (${result.rtt.errorP50Ms >= 0 ? '+' : ''}${result.rtt.errorP50Ms}), p95 ${rtt.rttMs.p95} ms  ${result.rtt.pass ? 'PASS' : 'FAIL'} (±2 ms)`,
        `loss (5 % configured): ${loss.lossPct} % of ${loss.sent}  ${result.loss.pass ? 'PASS' : 'FAIL'} (5 ± 1.5 %)`,
        `throughput (1200 B UDP, 20 ms NAT): sustained ${sustained} Mbit/s  ${result.throughput.pass ? 'PASS' : 'FAIL'} (≥ 20 Mbit/s)`,
        '',
      ].join('\n'),
    );
  }
  if (!result.rtt.pass || !result.loss.pass || !result.throughput.pass) process.exitCode = 1;
}

main().catch((error) => {
  process.stderr.write(`bench:lab: ${(error as Error).message}\n`);
  process.exitCode = 2;
});
