/**
 * `npm run bench:relay`: two TURN relays side by side on this machine, with the same load generator
 * — the embedded relay of `sc2c server` and coturn's `turnserver` — forwarding ChannelData from a
 * client to a peer over loopback, at 100-byte and 1200-byte payloads.
 *
 * For each relay and payload the generator offers a rising ladder of packet rates (each step a few
 * seconds), paced from the monotonic clock; a sink in a worker thread counts what the relay delivered.
 * Per step: offered and delivered packets/s, payload Mbit/s, loss, and the relay process's CPU
 * (from /proc). Rates double until a step loses more than 1 % (or the generator cannot keep up),
 * then two bisection steps narrow the edge. The relay's capacity is the highest delivered rate with
 * at most 1 % loss. The generator, the sink and the relay share this machine's cores.
 *
 * Usage: npm run bench:relay -- [--step-s 3] [--max-pps 160000] [--coturn-threads N] [--json] [--out FILE]
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Command } from 'commander';
import { parseInteger } from '../src/cli/errors.ts';
import { startCoturn } from '../src/lab/coturn.ts';
import { waitForOutput } from '../src/lab/host-process.ts';
import type { Endpoint } from '../src/net/address.ts';
import { SystemClock } from '../src/net/clock.ts';
import { NodeNetwork } from '../src/net/node-network.ts';
import { encodeChannelData } from '../src/protocol/stun/turn.ts';
import { TurnClient } from '../src/relay/turn-client.ts';

const BIN = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));
const USER = { username: 'alice', password: 'alice-bench-pass' };
const PAYLOADS = [100, 1200] as const;
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

interface Step {
  offeredPps: number;
  sentPps: number;
  deliveredPps: number;
  deliveredMbps: number;
  lossPercent: number;
  relayCpuPercent: number;
}

interface RelayResult {
  relay: 'sc2c' | 'coturn';
  payloadBytes: number;
  /** Highest delivered packets/s with at most 1 % loss; null when even the first step lost more. */
  capacityPps: number | null;
  capacityMbps: number | null;
  peakDeliveredPps: number;
  steps: Step[];
}

const program = new Command('bench:relay')
  .option('--step-s <n>', 'seconds per load step', parseInteger('--step-s', 1, 60), 3)
  .option('--max-pps <n>', 'highest offered rate', parseInteger('--max-pps', 1000, 1_000_000), 160_000)
  .option('--coturn-threads <n>', "coturn's --relay-threads (default: coturn's own, one per CPU)")
  .option('--json', 'print the results as JSON')
  .option('--out <file>', 'also write the JSON here')
  .parse();
const options = program.opts<{
  stepS: number;
  maxPps: number;
  coturnThreads?: string;
  json?: boolean;
  out?: string;
}>();

const say = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function cpuTicks(pid: number): number {
  // Fields after the command name (which may contain spaces): utime is 14th, stime 15th overall.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** The sink: a UDP socket in a worker thread that counts datagrams until told to report. */
function startSink(): Promise<{ port: number; count: () => Promise<number>; stop: () => Promise<void> }> {
  const source = `
    const { parentPort } = require('node:worker_threads');
    const dgram = require('node:dgram');
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 });
    let packets = 0;
    socket.on('message', () => { packets++; });
    socket.bind(0, '127.0.0.1', () => parentPort.postMessage({ port: socket.address().port }));
    parentPort.on('message', (m) => {
      if (m === 'count') parentPort.postMessage({ packets });
      else { socket.close(); parentPort.postMessage({ closed: true }); }
    });`;
  const worker = new Worker(source, { eval: true });
  const next = (): Promise<Record<string, number>> =>
    new Promise((resolve) => worker.once('message', resolve));
  return next().then((ready) => ({
    port: ready.port!,
    count: async () => {
      worker.postMessage('count');
      return (await next()).packets!;
    },
    stop: async () => {
      worker.postMessage('stop');
      await next();
      await worker.terminate();
    },
  }));
}

/** Sends `datagram` at `pps` for `seconds`, paced from the monotonic clock. Resolves with what was sent. */
async function offer(
  send: (data: Uint8Array) => void,
  datagram: Uint8Array,
  pps: number,
  seconds: number,
): Promise<number> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let sent = 0;
  while (true) {
    const now = performance.now();
    if (now >= end) break;
    const due = Math.floor(((now - start) / 1000) * pps);
    // At most 2 ms of packets per turn of the loop, so receive events still get their turn.
    const burst = Math.min(due - sent, Math.ceil(pps / 500));
    for (let i = 0; i < burst; i++) send(datagram);
    sent += Math.max(0, burst);
    await new Promise((r) => setImmediate(r));
  }
  return sent;
}

async function measure(
  relay: RelayResult['relay'],
  server: Endpoint,
  pid: number,
  payloadBytes: number,
): Promise<RelayResult> {
  const clock = new SystemClock();
  const network = new NodeNetwork();
  const sink = await startSink();
  const socket = await network.bindUdp({ address: '127.0.0.1' });
  const client = await TurnClient.allocate({ clock }, socket, { server, ...USER, rtoMs: 200 });
  const peer = { address: '127.0.0.1', port: sink.port };
  await client.createPermission([peer.address]);
  const channel = await client.bindChannel(peer);
  const datagram = encodeChannelData(channel, new Uint8Array(payloadBytes).fill(0x80));
  const send = (data: Uint8Array): void => socket.send(data, server);
  const steps: Step[] = [];
  const step = async (pps: number): Promise<Step> => {
    const before = await sink.count();
    const cpuBefore = cpuTicks(pid);
    const startedAt = performance.now();
    const sent = await offer(send, datagram, pps, options.stepS);
    await new Promise((r) => setTimeout(r, 300)); // stragglers in the relay's queues
    const elapsedS = (performance.now() - startedAt) / 1000;
    const delivered = (await sink.count()) - before;
    const cpu = ((cpuTicks(pid) - cpuBefore) / CLK_TCK / elapsedS) * 100;
    const result: Step = {
      offeredPps: pps,
      sentPps: Math.round(sent / options.stepS),
      deliveredPps: Math.round(delivered / options.stepS),
      deliveredMbps: Math.round(((delivered * payloadBytes * 8) / options.stepS / 1e6) * 100) / 100,
      lossPercent: sent === 0 ? 0 : Math.round((1 - delivered / sent) * 10_000) / 100,
      relayCpuPercent: Math.round(cpu),
    };
    steps.push(result);
    say(
      `  ${relay} ${payloadBytes} B: offered ${pps} pps, sent ${result.sentPps}, delivered ${result.deliveredPps} (${result.deliveredMbps} Mbit/s, loss ${result.lossPercent} %), relay CPU ${result.relayCpuPercent} %`,
    );
    return result;
  };
  try {
    // Double until a step loses more than 1 %, then bisect twice between the last clean rate and it.
    let clean = 0;
    let lossy: number | undefined;
    for (let pps = 5000; pps <= options.maxPps; pps *= 2) {
      const result = await step(pps);
      if (result.sentPps < 0.9 * pps) {
        say('  the generator cannot offer more: stopping this ladder');
        lossy = pps;
        break;
      }
      if (result.lossPercent > 1) {
        lossy = pps;
        break;
      }
      clean = pps;
    }
    for (let i = 0; i < 2 && lossy !== undefined && clean > 0; i++) {
      const mid = Math.round((clean + lossy) / 2);
      const result = await step(mid);
      if (result.lossPercent <= 1 && result.sentPps >= 0.9 * mid) clean = mid;
      else lossy = mid;
    }
  } finally {
    await client.close();
    socket.close();
    await sink.stop();
  }
  const clean = steps.filter((s) => s.lossPercent <= 1);
  const best = clean.reduce<Step | undefined>(
    (a, s) => (!a || s.deliveredPps > a.deliveredPps ? s : a),
    undefined,
  );
  return {
    relay,
    payloadBytes,
    capacityPps: best?.deliveredPps ?? null,
    capacityMbps: best?.deliveredMbps ?? null,
    peakDeliveredPps: Math.max(0, ...steps.map((s) => s.deliveredPps)),
    steps,
  };
}

async function startOurs(dir: string, port: number): Promise<ChildProcess> {
  const config = join(dir, 'server.yaml');
  writeFileSync(
    config,
    `sip:
  listen: { address: 127.0.0.1, port: ${port + 100} }
  realm: sc2c.lab
  users: { alice: ${USER.password} }
stun:
  primary: { address: 127.0.0.1, port: ${port} }
  alternate: { address: 127.0.0.2, port: ${port + 1} }
turn:
  allowedPeers: [127.0.0.0/8]
  unauthenticatedPerSecond: 10000
`,
  );
  const child = spawn(process.execPath, [BIN, 'server', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForOutput(child, /TURN on 127\.0\.0\.1/, 'sc2c server', 20_000);
  return child;
}

const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-relay-'));
const children: ChildProcess[] = [];
const results: RelayResult[] = [];
try {
  const base = 40_000 + (process.pid % 200) * 100;
  say(
    `relay benchmark on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${options.stepS} s per step`,
  );
  const ours = await startOurs(dir, base);
  children.push(ours);
  for (const size of PAYLOADS)
    results.push(await measure('sc2c', { address: '127.0.0.1', port: base }, ours.pid!, size));
  ours.kill('SIGTERM');
  const coturn = await startCoturn({
    address: '127.0.0.1',
    port: base + 50,
    minPort: base + 60,
    maxPort: base + 99,
    dir,
    auth: ['--lt-cred-mech', `--user=${USER.username}:${USER.password}`],
    extra: options.coturnThreads === undefined ? [] : [`--relay-threads=${options.coturnThreads}`],
  });
  children.push(coturn);
  for (const size of PAYLOADS)
    results.push(await measure('coturn', { address: '127.0.0.1', port: base + 50 }, coturn.pid!, size));
} finally {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

const report = {
  benchmark: 'relay forwarding, ChannelData client -> relay -> UDP peer, loopback',
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, node: process.version },
  stepS: options.stepS,
  coturnThreads: options.coturnThreads ?? 'default (one per CPU)',
  results,
};
if (options.out) writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else {
  process.stdout.write('\nrelay     payload  capacity (<= 1 % loss)          peak delivered\n');
  for (const r of results)
    process.stdout.write(
      `${r.relay.padEnd(9)} ${String(r.payloadBytes).padStart(5)} B  ${r.capacityPps === null ? '-'.padEnd(30) : `${r.capacityPps} pps, ${r.capacityMbps} Mbit/s`.padEnd(30)}  ${r.peakDeliveredPps} pps\n`,
    );
}
