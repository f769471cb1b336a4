/**
 * `npm run bench:relay`: relays side by side in one run, with the same load, on two network
 * namespaces joined by a veth pair: coturn's `turnserver` (one relay thread), the TURN relay of
 * `sc2c server` (`sc2c-turn`), and the kernel fast path of `sc2c server` (`sc2c-kernel`, where
 * it can run: the eBPF program at the tc ingress hook, or nftables rules, `--kernel-paths`).
 *
 * Placement, so that the relay is measured and not the box:
 * - the relay under test runs in its own namespace, pinned to CPU 0 (`taskset -c 0`);
 * - the load generator and the sink (scripts/udp-load.c, sendmmsg/recvmmsg) run in the other
 *   namespace, pinned to CPU 1, with this script.
 *
 * Every relay runs for the whole benchmark. Offered rates rise ×1.5 from 10 000 packets/s; each rate
 * has `--rounds` rounds, and each round runs the direct baseline (the same generator and sink
 * talking without a relay) and every relay still in the ladder for `--step-s` each, in an order
 * rotated from round to round. Per step it records offered, sent and delivered packets/s, the relay
 * process's CPU (/proc/<pid>/stat, all threads and children) and the whole machine's CPU time
 * (/proc/stat: user, nice, system, irq, softirq, steal; the kernel's forwarding is softirq and
 * lands on whatever CPU takes the packet). A relay leaves the ladder at the first rate where most
 * of its rounds lose more than 1 % (`limitedBy: relay`) or could not be offered (`generator`: its
 * capacity is then a lower bound).
 *
 * A relay's extra CPU at a rate = the median over the rounds of (machine CPU of its step − machine
 * CPU of the same round's baseline). Cost per packet = the least-squares slope, through the
 * origin, of that against the delivered rate over its clean rates; `ppsPerCore` = 1 / that cost.
 * `vsCoturn` = coturn's slope over this relay's, both over the rates both carried cleanly.
 * `capacityPps` is the highest delivered rate with at most 1 % loss. Only the `sc2c-kernel` server
 * installs the kernel path (at the ingress hook, tracking nothing). The report's
 * `conntrack` says whether conntrack tracked datagrams in the relay namespace during the run (its
 * entry count, read after every step): when it did, every relay there paid for it alike.
 *
 * Usage: npm run bench:relay -- [--step-s 3] [--rounds 3] [--max-pps 800000] [--relays coturn,sc2c-turn,sc2c-kernel]
 *        [--payloads 100,1200] [--shards 1] [--data-planes native,node] [--kernel-paths bpf,nft] [--json] [--out FILE]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { parseInteger } from '../src/cli/errors.ts';
import { startCoturn } from '../src/lab/coturn.ts';
import { waitForOutput } from '../src/lab/host-process.ts';
import { createNamespace, deleteNamespace, nsExec } from '../src/lab/netns.ts';
import type { Endpoint } from '../src/net/address.ts';
import { SystemClock } from '../src/net/clock.ts';
import { NodeNetwork } from '../src/net/node-network.ts';
import { TurnClient } from '../src/relay/turn-client.ts';
import { failer, gitCommit, ROOT, say } from './bench-common.ts';

const BIN = join(ROOT, 'src/cli/bin.js');
const USER = { username: 'alice', password: 'alice-bench-pass' };
const CLK_TCK = 100; // Linux USER_HZ: /proc counts CPU time in 1/100 s
const RELAYS = ['coturn', 'sc2c-turn', 'sc2c-kernel'] as const;
type RelayName = (typeof RELAYS)[number];

/** The two namespaces' veth addresses (the lab's "public internet", 198.18.0.0/15). */
const LOAD_IP = '198.18.250.1';
const RELAY_IP = '198.18.250.2';

interface Step {
  /** Which round at this rate (0-based); every round has its own baseline. */
  round: number;
  offeredPps: number;
  sentPps: number;
  deliveredPps: number;
  lossPercent: number;
  relayCpuPercent: number;
  /** Whole-machine CPU-seconds per second of the step, with the relay; and without, in the same round. */
  machineCores: number;
  baselineCores: number;
  /** Machine CPU per delivered packet, minus the no-relay baseline (microseconds). */
  costUs: number | null;
}

interface Row {
  relay: RelayName;
  /** Relay processes: `sc2c-turn` with `--shards` (its allocations spread over them); 1 otherwise. */
  shards: number;
  /** Ours: who forwarded (`turn.dataPlane`): sc2c-relayd (`native`) or the server's event loop (`node`). */
  dataPlane?: DataPlane;
  /** `sc2c-kernel`: which kernel path forwarded (`turn.kernelPath`): the eBPF program or nftables rules. */
  kernelPath?: KernelPath;
  payloadBytes: number;
  capacityPps: number | null;
  relayCpuPercent: number | null;
  /** Machine CPU per forwarded packet beyond the no-relay baseline, fitted over the clean steps (µs). */
  costUs: number | null;
  ppsPerCore: number | null;
  /**
   * coturn's cost per packet over this row's, both fitted over the rates both carried cleanly in
   * this run (above 1: cheaper than coturn). Null for coturn itself, or without coturn in the run.
   */
  vsCoturn: number | null;
  limitedBy: 'relay' | 'generator' | 'max-pps' | 'setup';
  /** Per clean rate, the medians over its rounds. */
  rates: RateResult[];
  steps: Step[];
}

/** One relay under test, running for the whole benchmark so that all are measured side by side. */
interface Run {
  relay: RelayName;
  shards: number;
  dataPlane?: DataPlane;
  kernelPath?: KernelPath;
  /** The relay process (coturn, or sc2c server with its relayd and shards), for its CPU. */
  pid: number;
  makeLoads(payload: number): Promise<Load[]>;
  loads: Load[];
}

function label(run: Run): string {
  const plane =
    run.relay === 'sc2c-turn' && run.dataPlane
      ? `/${run.dataPlane}`
      : run.relay === 'sc2c-kernel' && run.kernelPath
        ? `/${run.kernelPath}`
        : '';
  return `${run.relay}${plane}${run.shards > 1 ? ` x${run.shards}` : ''}`;
}

const program = new Command('bench:relay')
  .description('relay forwarding capacity and CPU per packet: coturn, our TURN relay and our kernel path')
  .option('--step-s <n>', 'seconds per load step', parseInteger('--step-s', 1, 60), 3)
  .option(
    '--rounds <n>',
    'rounds per rate (medians), each with its own baseline',
    parseInteger('--rounds', 1, 9),
    3,
  )
  .option('--max-pps <n>', 'highest offered rate', parseInteger('--max-pps', 1000, 5_000_000), 800_000)
  .option('--relays <list>', 'which relays, comma-separated', RELAYS.join(','))
  .option('--payloads <list>', 'payload sizes in bytes, comma-separated', '100,1200')
  .option(
    '--shards <list>',
    'relay shard processes for sc2c-turn, comma-separated (2: two allocations, one per shard, the relay on both CPUs)',
    '1',
  )
  .option(
    '--data-planes <list>',
    "sc2c-turn's data planes, comma-separated: native (sc2c-relayd), node (the server's event loop)",
    'native',
  )
  .option(
    '--kernel-paths <list>',
    "sc2c-kernel's kernel paths, comma-separated: bpf (the eBPF program), nft (nftables rules)",
    'bpf',
  )
  .option('--json', 'print the results as JSON')
  .option('--out <file>', 'also write the JSON here')
  .option('--inside <relay-namespace>', '(internal) run in the load namespace, the relay in this one')
  .parse();
const options = program.opts<{
  stepS: number;
  rounds: number;
  maxPps: number;
  relays: string;
  payloads: string;
  shards: string;
  dataPlanes: string;
  kernelPaths: string;
  json?: boolean;
  out?: string;
  inside?: string;
}>();

const fail: (message: string) => never = failer('bench:relay');

const relays = options.relays.split(',').map((name) => {
  const relay = RELAYS.find((r) => r === name.trim());
  if (!relay) fail(`unknown relay ${JSON.stringify(name)} (one of ${RELAYS.join(', ')})`);
  return relay;
});
const payloads = options.payloads.split(',').map((text) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 12 || n > 1400) fail(`payload ${JSON.stringify(text)} is not 12..1400`);
  return n;
});

type DataPlane = 'native' | 'node';
const dataPlanes = options.dataPlanes.split(',').map((text): DataPlane => {
  const plane = text.trim();
  if (plane !== 'native' && plane !== 'node')
    fail(`data plane ${JSON.stringify(text)} is not native or node`);
  return plane;
});

type KernelPath = 'bpf' | 'nft';
const kernelPaths = options.kernelPaths.split(',').map((text): KernelPath => {
  const path = text.trim();
  if (path !== 'bpf' && path !== 'nft') fail(`kernel path ${JSON.stringify(text)} is not bpf or nft`);
  return path;
});

const shardCounts = options.shards.split(',').map((text) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 16) fail(`shards ${JSON.stringify(text)} is not 1..16`);
  return n;
});

/** A process's CPU ticks, all threads, and its children's (relay shards): 0 once it is gone. */
function processTicks(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let ticks = Number(fields[11]) + Number(fields[12]);
  let children: string[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    // No children file: no children counted.
  }
  for (const child of children) ticks += processTicks(Number(child));
  return ticks;
}

/** Busy ticks of the whole machine: everything but idle and iowait. */
function machineTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

// ---------------------------------------------------------------------------------------------
// Outside: the namespaces, the veth pair and the compiled load tool; then this script inside.
// ---------------------------------------------------------------------------------------------

async function outside(): Promise<void> {
  if (process.getuid?.() !== 0) fail('needs root (network namespaces, taskset, nftables)');
  if (cpus().length < 2) fail('needs 2 CPUs: the relay on one, the load on the other');
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-relay-'));
  const tool = join(dir, 'udp-load');
  try {
    execFileSync('cc', ['-O2', '-o', tool, join(ROOT, 'scripts/udp-load.c')], { stdio: 'inherit' });
  } catch {
    fail('cannot compile scripts/udp-load.c (is a C compiler installed? apt-get install gcc)');
  }
  const tag = process.pid % 100_000;
  const load = `sc2c-bl-${tag}`;
  const relay = `sc2c-br-${tag}`;
  let child: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    child?.kill('SIGKILL');
    await deleteNamespace(relay);
    await deleteNamespace(load);
    rmSync(dir, { recursive: true, force: true });
  };
  // Interrupted or killed by a timeout: the namespaces and the veth pair go all the same.
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => void cleanup().then(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
  try {
    await createNamespace(load);
    await createNamespace(relay);
    execFileSync('ip', ['link', 'add', `bl${tag}`, 'type', 'veth', 'peer', 'name', `br${tag}`]);
    for (const [ns, dev, address] of [
      [load, `bl${tag}`, LOAD_IP],
      [relay, `br${tag}`, RELAY_IP],
    ] as const) {
      execFileSync('ip', ['link', 'set', dev, 'netns', ns]);
      await nsExec(ns, 'ip', 'addr', 'add', `${address}/24`, 'dev', dev);
      await nsExec(ns, 'ip', 'link', 'set', dev, 'up');
    }
    const args = process.argv.slice(2).filter((a) => a !== '--inside');
    child = spawn(
      'ip',
      [
        'netns',
        'exec',
        load,
        'taskset',
        '-c',
        '1',
        process.execPath,
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        ...args,
        '--inside',
        relay,
      ],
      { stdio: 'inherit', cwd: ROOT, env: { ...process.env, SC2C_UDP_LOAD: tool } },
    );
    const code = await new Promise<number>((resolve) => child!.on('exit', (c) => resolve(c ?? 1)));
    process.exitCode = code;
  } finally {
    await cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Inside the load namespace, on CPU 1.
// ---------------------------------------------------------------------------------------------

const TOOL = process.env.SC2C_UDP_LOAD ?? '';

interface Sink {
  port: number;
  count(): Promise<number>;
  stop(): void;
}

function startSink(port: number): Promise<Sink> {
  const child = spawn(TOOL, ['sink', LOAD_IP, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = (): Promise<Record<string, number>> =>
    new Promise((resolve) => waiting.push((line) => resolve(JSON.parse(line))));
  return next().then((ready) => ({
    port: ready.port!,
    count: async () => {
      child.stdin!.write('count\n');
      return (await next()).packets!;
    },
    stop: () => {
      child.stdin!.end();
    },
  }));
}

/** The generator: from `from` (port 0: any) to `to`, `prefix` then `payload` bytes, `pps` for the step. */
function generate(from: number, to: Endpoint, prefix: string, payload: number, pps: number): Promise<number> {
  const child = spawn(
    TOOL,
    [
      'gen',
      LOAD_IP,
      String(from),
      to.address,
      String(to.port),
      prefix,
      String(payload),
      String(pps),
      String(options.stepS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  // 'close', not 'exit': the process can exit before its output has been read.
  return new Promise((resolve, reject) =>
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`udp-load gen exited ${code}`));
      try {
        resolve(JSON.parse(out).sent);
      } catch {
        reject(new Error(`udp-load gen printed ${JSON.stringify(out.slice(0, 200))}, not its count`));
      }
    }),
  );
}

interface Load {
  /** Where the generator sends, from which local port, with which prefix (ChannelData header). */
  to: Endpoint;
  fromPort: number;
  prefix: string;
  sink: Sink;
}

/** The most conntrack entries the relay namespace held after any step. */
let conntrackEntriesSeen = 0;
/** The relay namespace, once `inside` knows it. */
let relayNamespace: string | undefined;

/** Entries conntrack holds in the relay namespace now (0 where it tracks nothing). */
function conntrackEntries(): number {
  if (!relayNamespace) return 0;
  try {
    const out = execFileSync(
      'ip',
      ['netns', 'exec', relayNamespace, 'cat', '/proc/sys/net/netfilter/nf_conntrack_count'],
      { encoding: 'utf8' },
    );
    return Number(out.trim()) || 0;
  } catch {
    return 0; // no conntrack in this kernel
  }
}

/** One generator step against a run's loads (or, with none, the direct no-relay baseline). */
async function step(
  run: Run | null,
  payload: number,
  pps: number,
  round: number,
  baselineSink: Sink,
): Promise<Step> {
  const loads = run
    ? run.loads
    : [{ to: { address: LOAD_IP, port: baselineSink.port }, fromPort: 0, prefix: '-', sink: baselineSink }];
  const count = async (): Promise<number> => {
    let total = 0;
    for (const load of loads) total += await load.sink.count();
    return total;
  };
  const delivered0 = await count();
  const relay0 = run ? processTicks(run.pid) : 0;
  const machine0 = machineTicks();
  const started = performance.now();
  // One generator per allocation, sharing the rate: with shards, one allocation per shard.
  const sent = (
    await Promise.all(
      loads.map((load) =>
        generate(load.fromPort, load.to, load.prefix, payload, Math.round(pps / loads.length)),
      ),
    )
  ).reduce((a, b) => a + b, 0);
  await new Promise((r) => setTimeout(r, 300)); // stragglers in the relay's queues
  const elapsedS = (performance.now() - started) / 1000;
  // The window closes here: what follows (reading the sinks, spawning a conntrack read) is not the relay's.
  const relay1 = run ? processTicks(run.pid) : 0;
  const machine1 = machineTicks();
  const delivered = (await count()) - delivered0;
  conntrackEntriesSeen = Math.max(conntrackEntriesSeen, conntrackEntries());
  return {
    round,
    offeredPps: pps,
    sentPps: Math.round(sent / options.stepS),
    deliveredPps: Math.round(delivered / options.stepS),
    lossPercent: sent === 0 ? 0 : Math.round((1 - delivered / sent) * 10_000) / 100,
    // Over the whole window (the generator's start and the stragglers' wait too), as the machine's.
    relayCpuPercent: run ? Math.round(((relay1 - relay0) / CLK_TCK / elapsedS) * 100) : 0,
    machineCores: Math.round(((machine1 - machine0) / CLK_TCK / elapsedS) * 1000) / 1000,
    baselineCores: 0,
    costUs: null,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One rate's rounds for one run, reduced to medians. */
interface RateResult {
  pps: number;
  deliveredPps: number;
  sentPps: number;
  lossPercent: number;
  relayCpuPercent: number;
  /** Machine cores beyond the baseline measured in the same round, median over the rounds. */
  extraCores: number;
}

/**
 * Cost per packet from a set of rates at once: the least-squares slope, through the origin, of
 * the extra machine cores against the delivered rate. One step's difference of two CPU readings
 * is noisy; the slope weights the high rates, where the relay's cost dominates. Seconds.
 */
function slope(rates: readonly RateResult[]): number {
  let numerator = 0;
  let denominator = 0;
  for (const r of rates) {
    numerator += r.extraCores * r.deliveredPps;
    denominator += r.deliveredPps * r.deliveredPps;
  }
  return denominator > 0 ? numerator / denominator : 0;
}

/**
 * Every run of one payload, interleaved: at each offered rate, `--rounds` rounds, and in each round
 * the direct baseline and every run still standing, in an order rotated round by round. A run's
 * cost at a rate is its machine CPU minus the baseline of the same round, so drift in the
 * machine's speed (this is a VM) lands on every relay alike. A run leaves the ladder at the first
 * rate where most of its rounds lose more than 1 % (`relay`) or could not be offered (`generator`).
 */
async function interleaved(runs: readonly Run[], payload: number): Promise<Row[]> {
  const baselineSink = await startSink(0);
  const standing = new Set(runs);
  const results = new Map<Run, RateResult[]>(runs.map((run) => [run, []]));
  const steps = new Map<Run, Step[]>(runs.map((run) => [run, []]));
  const limited = new Map<Run, Row['limitedBy']>(runs.map((run) => [run, 'max-pps']));
  try {
    for (let pps = 10_000; pps <= options.maxPps && standing.size > 0; pps = Math.round(pps * 1.5)) {
      const active = [...standing];
      // Fresh allocations at every rate: a TURN permission lives 300 s (RFC 8656 section 9), and
      // the generator, which sends from the client's 5-tuple, cannot refresh it.
      for (const run of [...active]) {
        try {
          run.loads = await run.makeLoads(payload);
        } catch (error) {
          say(`  ${label(run)}: ${(error as Error).message}; it leaves the ladder at ${pps}/s`);
          limited.set(run, 'setup');
          standing.delete(run);
          active.splice(active.indexOf(run), 1);
        }
      }
      const byRun = new Map<Run, Step[]>(active.map((run) => [run, []]));
      try {
        for (let round = 0; round < options.rounds; round++) {
          const order: (Run | null)[] = [null, ...active];
          const rotated = order.map((_, i) => order[(i + round) % order.length]!);
          let baseline: Step | undefined;
          const pending: [Run, Step][] = [];
          for (const target of rotated) {
            const s = await step(target, payload, pps, round, baselineSink);
            if (target === null) baseline = s;
            else pending.push([target, s]);
          }
          for (const [run, s] of pending) {
            const base = baseline!.machineCores;
            const costUs =
              s.deliveredPps > 0
                ? Math.round(((s.machineCores - base) / s.deliveredPps) * 1e6 * 1000) / 1000
                : null;
            const done = { ...s, baselineCores: base, costUs };
            byRun.get(run)!.push(done);
            steps.get(run)!.push(done);
            say(
              `  ${label(run)} ${payload} B round ${round + 1}: offered ${pps}/s, sent ${s.sentPps}/s, delivered ${s.deliveredPps}/s (loss ${s.lossPercent} %), relay CPU ${s.relayCpuPercent} %, machine ${s.machineCores} cores (no relay: ${base}), ${costUs ?? '-'} µs/packet`,
            );
          }
        }
      } finally {
        for (const run of active) for (const load of run.loads) load.sink.stop();
      }
      for (const run of active) {
        const rounds = byRun.get(run)!;
        const short = rounds.filter((s) => s.sentPps < 0.95 * pps).length;
        const lossy = rounds.filter((s) => s.lossPercent > 1).length;
        // A relay that loses is at its limit, whether or not the generator also fell short.
        if (lossy * 2 > rounds.length) limited.set(run, 'relay');
        else if (short * 2 > rounds.length) limited.set(run, 'generator');
        else {
          results.get(run)!.push({
            pps,
            deliveredPps: Math.round(median(rounds.map((s) => s.deliveredPps))),
            sentPps: Math.round(median(rounds.map((s) => s.sentPps))),
            lossPercent: median(rounds.map((s) => s.lossPercent)),
            relayCpuPercent: Math.round(median(rounds.map((s) => s.relayCpuPercent))),
            extraCores: median(rounds.map((s) => s.machineCores - s.baselineCores)),
          });
          continue;
        }
        standing.delete(run);
      }
    }
  } finally {
    baselineSink.stop();
  }
  const coturn = runs.find((run) => run.relay === 'coturn');
  return runs.map((run): Row => {
    const clean = results.get(run)!;
    const best = clean.at(-1);
    const costS = slope(clean);
    let vsCoturn: number | null = null;
    if (coturn && run !== coturn) {
      // Head to head: both fitted over the same rates, those both carried cleanly.
      const theirs = results.get(coturn)!;
      const common = new Set(theirs.map((r) => r.pps).filter((pps) => clean.some((r) => r.pps === pps)));
      const ours = slope(clean.filter((r) => common.has(r.pps)));
      const them = slope(theirs.filter((r) => common.has(r.pps)));
      if (ours > 0 && them > 0) vsCoturn = Math.round((them / ours) * 100) / 100;
    }
    return {
      relay: run.relay,
      shards: run.shards,
      ...(run.dataPlane && run.relay === 'sc2c-turn' ? { dataPlane: run.dataPlane } : {}),
      ...(run.kernelPath && run.relay === 'sc2c-kernel' ? { kernelPath: run.kernelPath } : {}),
      payloadBytes: payload,
      capacityPps: best?.deliveredPps ?? null,
      relayCpuPercent: best?.relayCpuPercent ?? null,
      costUs: costS > 0 ? Math.round(costS * 1e9) / 1000 : null,
      ppsPerCore: costS > 0 ? Math.round(1 / costS) : null,
      vsCoturn,
      limitedBy: limited.get(run)!,
      rates: clean,
      steps: steps.get(run)!,
    };
  });
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** A TURN allocation from LOAD_IP:port with a channel to the sink; the socket is closed for the generator. */
async function turnLoad(server: Endpoint): Promise<Load> {
  const sink = await startSink(0);
  const socket = await new NodeNetwork().bindUdp({ address: LOAD_IP });
  const client = await TurnClient.allocate({ clock: new SystemClock() }, socket, {
    server,
    ...USER,
    rtoMs: 200,
  });
  const peer = { address: LOAD_IP, port: sink.port };
  const channel = await client.bindChannel(peer);
  const fromPort = socket.local.port;
  // The generator sends from this 5-tuple now; the allocation lives 10 minutes, longer than a ladder.
  socket.close();
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint16(0, channel);
  // Where the allocation was made: the server, or the relay shard it redirected to.
  return { to: client.server, fromPort, prefix: hex(header), sink };
}

function prefixFor(load: Load, payload: number): Load {
  if (load.prefix === '-') return load;
  const header = Buffer.from(load.prefix, 'hex');
  header.writeUInt16BE(payload, 2); // ChannelData length
  return { ...load, prefix: header.toString('hex') };
}

/**
 * The kernel path: our gateway's side of a relayed call. The sink allocates with the raw-relay
 * attribute, latches its address to the relayed port and permits the generator; the generator then
 * sends plain datagrams to the relayed address and the server's nftables rules deliver them.
 */
async function kernelLoad(server: Endpoint): Promise<Load> {
  const socket = await new NodeNetwork().bindUdp({ address: LOAD_IP });
  const client = await TurnClient.allocate({ clock: new SystemClock() }, socket, {
    server,
    ...USER,
    rtoMs: 200,
    rawRelay: true,
  });
  if (!client.rawRelay) throw new Error('the server did not grant a raw relay');
  await client.createPermission([LOAD_IP]);
  await client.latch();
  const port = socket.local.port;
  socket.close();
  const sink = await startSink(port);
  // One source port for every step, as a peer's media socket: the kernel path's rules follow one
  // peer source per relayed port.
  const probe = await new NodeNetwork().bindUdp({ address: LOAD_IP });
  const fromPort = probe.local.port;
  probe.close();
  return { to: client.relayed, fromPort, prefix: '-', sink };
}

/**
 * `kernel`: with that kernel path (the eBPF program or nftables rules, at the ingress hook). Only
 * the `sc2c-kernel` server has it, so that `sc2c-turn` measures the TURN path alone.
 */
async function startOurs(
  dir: string,
  relayNs: string,
  port: number,
  shards: number,
  dataPlane: DataPlane,
  kernel: KernelPath | undefined,
): Promise<ChildProcess> {
  const config = join(dir, `server-${port}.yaml`);
  writeFileSync(
    config,
    `sip:
  listen: { address: ${RELAY_IP}, port: ${port + 100} }
  realm: sc2c.lab
  users: { alice: ${USER.password} }
stun:
  primary: { address: ${RELAY_IP}, port: ${port} }
  alternate: { address: ${RELAY_IP}, port: ${port + 1} }
turn:
  allowedPeers: [198.18.250.0/24]
  unauthenticatedPerSecond: 10000
  userQuota: 100 # fresh allocations at every rate, the old ones left to expire
  kernelForwarding: ${kernel ? 'on' : 'off'}
  kernelPath: ${kernel ?? 'auto'}
  dataPlane: ${dataPlane}
  shards: ${shards}
  shardPort: ${port + 50}
`,
  );
  // One shard: CPU 0, as every relay. More: the relay may use both CPUs, the generator's too.
  const cpus = shards > 1 ? '0,1' : '0';
  const child = spawn(
    'ip',
    ['netns', 'exec', relayNs, 'taskset', '-c', cpus, process.execPath, BIN, 'server', '--config', config],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let banner = '';
  child.stdout!.on('data', (d) => {
    banner += d;
  });
  child.stderr!.on('data', (d) => {
    banner += d;
  });
  await waitForOutput(child as Parameters<typeof waitForOutput>[0], /TURN on /, 'sc2c server', 20_000);
  say(`  ${/TURN on [^\n]*/.exec(banner)?.[0] ?? ''}`);
  return child;
}

/** The pid of the relay process itself (under `ip netns exec` and `taskset`, which exec it). */
function relayPid(child: ChildProcess): number {
  return child.pid!;
}

async function inside(relayNs: string): Promise<void> {
  relayNamespace = relayNs;
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-relay-in-'));
  const rows: Row[] = [];
  const children: ChildProcess[] = [];
  try {
    say(
      `relay benchmark: relay on CPU 0, load on CPU 1 (${cpus()[0]?.model ?? 'unknown CPU'}), ${options.stepS} s per step, ${options.rounds} rounds per rate`,
    );
    const plans = relays.flatMap(
      (relay): { relay: RelayName; shards: number; dataPlane?: DataPlane; kernelPath?: KernelPath }[] => {
        if (relay === 'coturn') return [{ relay, shards: 1 }];
        // The kernel path forwards in the kernel whatever the plane; the server runs with the first.
        if (relay === 'sc2c-kernel')
          return kernelPaths.map((kernelPath) => ({
            relay,
            shards: 1,
            dataPlane: dataPlanes[0]!,
            kernelPath,
          }));
        return dataPlanes.flatMap((dataPlane) => shardCounts.map((shards) => ({ relay, shards, dataPlane })));
      },
    );
    // Every relay starts now and runs to the end, idle while another is measured: each round
    // measures them one after the other at the same rate, against a baseline of that round.
    const runs: Run[] = [];
    for (const [i, { relay, shards, dataPlane, kernelPath }] of plans.entries()) {
      const port = 40_000 + i * 400;
      let child: ChildProcess;
      const server: Endpoint = { address: RELAY_IP, port };
      if (relay === 'coturn') {
        child = await startCoturn({
          address: RELAY_IP,
          port,
          // Fresh allocations at every rate, the old ones left to expire: room for 2 x 10 minutes.
          minPort: port + 100,
          maxPort: port + 399,
          dir,
          auth: ['--lt-cred-mech', `--user=${USER.username}:${USER.password}`],
          extra: ['--relay-threads=1'],
          wrapper: ['ip', 'netns', 'exec', relayNs, 'taskset', '-c', '0'],
        });
      } else child = await startOurs(dir, relayNs, port, shards, dataPlane ?? 'native', kernelPath);
      children.push(child);
      runs.push({
        relay,
        shards,
        ...(dataPlane ? { dataPlane } : {}),
        ...(kernelPath ? { kernelPath } : {}),
        pid: relayPid(child),
        loads: [],
        makeLoads: async (payload) => {
          const loads: Load[] = [];
          try {
            // With shards, one allocation each: the front sends each to the least-loaded shard.
            for (let n = 0; n < shards; n++)
              loads.push(relay === 'sc2c-kernel' ? await kernelLoad(server) : await turnLoad(server));
          } catch (error) {
            for (const load of loads) load.sink.stop();
            throw new Error(`cannot set up (${(error as Error).message})`);
          }
          return loads.map((load) => prefixFor(load, payload));
        },
      });
    }
    for (const payload of payloads) rows.push(...(await interleaved(runs, payload)));
  } finally {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  const report = {
    benchmark: 'relay forwarding, load namespace -> relay namespace -> load namespace over veth',
    date: new Date().toISOString(),
    commit: gitCommit(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, node: process.version },
    placement: 'relay pinned to CPU 0; generator, sink and this script pinned to CPU 1',
    stepS: options.stepS,
    rounds: options.rounds,
    // Whether conntrack tracked datagrams in the relay namespace (it costs every relay there alike).
    conntrack: conntrackEntriesSeen > 0,
    rows,
  };
  if (options.out) writeFileSync(options.out, `${JSON.stringify(report, null, 2)}\n`);
  if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    process.stdout.write(
      '\nrelay              payload  capacity (<= 1 % loss)  relay CPU  packets/s per core  vs coturn  limited by\n',
    );
    for (const r of rows)
      process.stdout.write(
        `${`${r.relay}${r.dataPlane ? `/${r.dataPlane}` : ''}${r.kernelPath ? `/${r.kernelPath}` : ''}${r.shards > 1 ? ` x${r.shards}` : ''}`.padEnd(17)} ${String(r.payloadBytes).padStart(6)} B  ${String(r.capacityPps ?? '-').padStart(22)}  ${String(r.relayCpuPercent ?? '-').padStart(7)} %  ${String(r.ppsPerCore ?? '-').padStart(18)}  ${String(r.vsCoturn ?? '-').padStart(9)}  ${r.limitedBy}\n`,
      );
  }
}

if (options.inside) {
  await inside(options.inside);
  // The allocations' refresh timers would keep this process, and so the outer one, waiting.
  process.exit(0);
} else await outside();
