/** `sc2c sim ...`: runs the real protocol code on the in-memory virtual network. */
import { createWriteStream } from 'node:fs';
import type { Command } from 'commander';
import { DEFAULT_PROFILES_PATH, loadProfiles } from '../nat/profiles.ts';
import { formatTraceRecord } from '../net/virtual/trace.ts';
import { TRAVERSAL_MODES, type TraversalMode } from '../protocol/sdp.ts';
import { cellSeed, type MatrixCell, runMatrixCell } from '../sim/matrix.ts';
import { simulateNatcheck } from '../sim/natcheck.ts';
import type { NatcheckResult } from '../traversal/natcheck/observation.ts';
import { UsageError } from '../util/usage-error.ts';
import { parseInteger } from './errors.ts';
import { registerExtended } from './sim-extended.ts';
import { registerPopulation } from './sim-population.ts';

interface NatcheckOptions {
  profile?: string[];
  profiles: string;
  seed: number;
  json?: boolean;
  trace?: string;
  quiet?: boolean;
}

export function registerSim(program: Command): void {
  const sim = program
    .command('sim')
    .description('run the gateway protocols on the deterministic virtual network');
  registerMatrix(sim);
  registerPopulation(sim);
  registerExtended(sim);
  sim
    .command('natcheck')
    .description(
      "discover each NAT profile's behaviour from packets alone (RFC 5780 tests, knocks, hairpin, ICMP) and compare it with what the profile declares",
    )
    .option(
      '-p, --profile <spec...>',
      'profile(s) to check, e.g. symmetric-seq1+pks (default: every shipped profile and its +pks/+ips variants)',
    )
    .option('--profiles <file>', 'NAT profile file', DEFAULT_PROFILES_PATH)
    .option(
      '--seed <n>',
      'seed for every random draw; the same seed gives the same packet trace',
      parseInteger('--seed', 0, 2 ** 32 - 1),
      1,
    )
    .option('--json', 'print a JSON array of {profile, declared, observed, match, mismatches, unobservable}')
    .option('--trace <file>', 'write a per-packet trace of every run to <file>')
    .option('-q, --quiet', 'no progress lines on stderr')
    .action(async (options: NatcheckOptions) => {
      const catalog = loadProfiles(options.profiles);
      const specs = options.profile ?? catalog.shippedSpecs();
      const behaviours = specs.map((spec) => [spec, catalog.resolve(spec)] as const);
      const trace = options.trace ? createWriteStream(options.trace) : undefined;
      const results: NatcheckResult[] = [];
      for (const [index, [spec, behaviour]] of behaviours.entries()) {
        if (!options.quiet) process.stderr.write(`[${index + 1}/${behaviours.length}] natcheck ${spec}\n`);
        trace?.write(`# profile ${spec} seed ${options.seed}\n`);
        results.push(
          await simulateNatcheck({
            profile: spec,
            behaviour,
            seed: options.seed,
            trace: trace ? (record) => trace.write(`${formatTraceRecord(record)}\n`) : undefined,
          }),
        );
      }
      if (trace) await new Promise<void>((resolve) => trace.end(resolve));
      if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      else process.stdout.write(formatNatcheckTable(results));
      if (results.some((r) => !r.match)) process.exitCode = 1;
    });
}

/** The pairs the SC2C acceptance criteria name: three NAT types, each plain, +pks or +ips. */
export const MATRIX_PROFILES = ['port-restricted-cone', 'symmetric-seq1', 'symmetric-seq2'].flatMap((p) => [
  p,
  `${p}+pks`,
  `${p}+ips`,
]);

interface MatrixOptions {
  trials: number;
  rttMs: number;
  asymmetric?: string;
  modes: string;
  background: number;
  window: number;
  /** Commander's form of `--no-port-mapping`. */
  portMapping: boolean;
  transport: 'udp' | 'tcp';
  profile?: string[];
  profiles: string;
  seed: number;
  json?: boolean;
  quiet?: boolean;
}

export function parseModes(text: string): TraversalMode[] {
  const modes = text.split(',').map((m) => m.trim());
  for (const mode of modes) {
    if (!(TRAVERSAL_MODES as readonly string[]).includes(mode)) {
      throw new UsageError(`unknown mode '${mode}' in --modes. Allowed: ${TRAVERSAL_MODES.join(', ')}`);
    }
  }
  return modes as TraversalMode[];
}

function parseAsymmetric(text: string): [number, number] {
  const parts = text.split(',').map(Number);
  if (parts.length !== 2 || parts.some((v) => !(v >= 0 && v <= 10_000))) {
    throw new UsageError(`--asymmetric takes two one-way delays in ms, e.g. 10,150; got '${text}'`);
  }
  return [parts[0]!, parts[1]!];
}

export function registerMatrix(sim: Command): void {
  sim
    .command('matrix')
    .description(
      'run the real signaling server and gateways on the virtual network for every calling x called NAT pair and traversal mode',
    )
    .option('--trials <n>', 'calls per pair and mode', parseInteger('--trials', 1, 100_000), 100)
    .option(
      '--rtt-ms <n>',
      'round trip between the two NATs (each NAT is RTT/4 one-way from the core, where the server sits)',
      parseInteger('--rtt-ms', 0, 10_000),
      40,
    )
    .option('--asymmetric <a,b>', 'one-way delays of the calling and called NAT uplinks instead, e.g. 10,150')
    .option('--modes <list>', `traversal modes (${TRAVERSAL_MODES.join(', ')})`, 'sc2c,c2c,stun')
    .option(
      '--background <rate>',
      'new sessions per second opened by another host behind each NAT',
      parseInteger('--background', 0, 1000),
      0,
    )
    .option(
      '--window <n>',
      "candidates a gateway covers on the peer's predicted port (1 = the prediction only)",
      parseInteger('--window', 1, 16),
      3,
    )
    .option(
      '--no-port-mapping',
      'gateways never ask their router for a mapping (PCP, NAT-PMP), even behind a +pcp or +natpmp NAT',
    )
    .option(
      '--transport <udp|tcp>',
      'the direct path the gateways punch: udp, or tcp (a TCP simultaneous open at the go; issue 21)',
      (value: string) => {
        if (value !== 'udp' && value !== 'tcp')
          throw new UsageError(`--transport must be udp or tcp, got '${value}'`);
        return value;
      },
      'udp',
    )
    .option('-p, --profile <spec...>', `NAT profiles to cross (default: ${MATRIX_PROFILES.join(' ')})`)
    .option('--profiles <file>', 'NAT profile file', DEFAULT_PROFILES_PATH)
    .option('--seed <n>', 'base seed', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option(
      '--json',
      'print {config, pairs: [{calling, called, mode, successes, trials, setupMsP50, setupMsP95, skewMsP95, failures}]}',
    )
    .option('-q, --quiet', 'no progress lines on stderr')
    .action(async (options: MatrixOptions) => {
      const catalog = loadProfiles(options.profiles);
      const specs = options.profile ?? MATRIX_PROFILES;
      const behaviours = new Map(specs.map((spec) => [spec, catalog.resolve(spec)]));
      const modes = parseModes(options.modes);
      const oneWayMs = options.asymmetric
        ? parseAsymmetric(options.asymmetric)
        : ([options.rttMs / 4, options.rttMs / 4] as [number, number]);
      const pairs: MatrixCell[] = [];
      const total = specs.length * specs.length * modes.length;
      const started = performance.now();
      for (const calling of specs) {
        for (const called of specs) {
          for (const mode of modes) {
            const cell = await runMatrixCell({
              calling: { name: calling, behaviour: behaviours.get(calling)! },
              called: { name: called, behaviour: behaviours.get(called)! },
              mode,
              trials: options.trials,
              oneWayMs,
              backgroundPerSecond: options.background,
              window: options.window,
              portMapping: options.portMapping,
              transport: options.transport,
              seed: cellSeed(options.seed, calling, called, mode),
            });
            pairs.push(cell);
            if (!options.quiet) {
              const done = pairs.length;
              const eta = (((performance.now() - started) / done) * (total - done)) / 1000;
              process.stderr.write(
                `[${done}/${total}] ${calling} -> ${called} ${mode}: ${cell.successes}/${cell.trials} (about ${Math.round(eta)} s left)\n`,
              );
            }
          }
        }
      }
      const config = {
        trials: options.trials,
        oneWayMs,
        rttMs: 2 * (oneWayMs[0] + oneWayMs[1]),
        modes,
        background: options.background,
        window: options.window,
        portMapping: options.portMapping,
        transport: options.transport,
        seed: options.seed,
      };
      if (options.json) process.stdout.write(`${JSON.stringify({ config, pairs }, null, 2)}\n`);
      else process.stdout.write(formatMatrixTable(pairs, modes));
    });
}

export function formatMatrixTable(pairs: readonly MatrixCell[], modes: readonly TraversalMode[]): string {
  const rows = new Map<string, Map<string, MatrixCell>>();
  for (const cell of pairs) {
    const key = `${cell.calling} -> ${cell.called}`;
    if (!rows.has(key)) rows.set(key, new Map());
    rows.get(key)!.set(cell.mode, cell);
  }
  const header = ['calling -> called', ...modes.map((m) => `${m} (ok, setup p50/p95 ms, skew p95 ms)`)];
  const body = [...rows].map(([key, cells]) => [
    key,
    ...modes.map((mode) => {
      const c = cells.get(mode)!;
      const pct = Math.round((100 * c.successes) / c.trials);
      const setup = c.setupMsP50 === null ? '-' : `${c.setupMsP50}/${c.setupMsP95}`;
      return `${pct}% ${setup} ${c.skewMsP95 ?? '-'}`;
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...body.map(line)].join('\n')}\n`;
}

export function formatNatcheckTable(results: readonly NatcheckResult[]): string {
  const header = [
    'profile',
    'mapping',
    'filtering',
    'allocation',
    'pks',
    'ips',
    'hairpin',
    'unsolicited',
    'match',
  ];
  const short = (v: string): string =>
    ({ 'endpoint-independent': 'EI', 'address-dependent': 'AD', 'address-and-port-dependent': 'APD' })[v] ??
    v;
  const rows = results.map((r) => {
    const o = r.observed;
    const flag = (v: boolean | null): string => (v === null ? 'n/a' : v ? 'yes' : 'no');
    const allocation = o.allocation === 'sequential' ? `seq +${o.delta}` : o.allocation;
    return [
      r.profile,
      short(o.mapping),
      short(o.filtering),
      allocation,
      flag(o.pks),
      flag(o.ips),
      flag(o.hairpin),
      o.unsolicitedReply === 'drop' ? 'drop' : 'icmp',
      r.match ? 'yes' : `NO (${r.mismatches.join(', ')})`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const notes = results.flatMap((r) =>
    Object.entries(r.unobservable).map(([key, why]) => `  ${r.profile}: ${key} not observable: ${why}`),
  );
  const matched = results.filter((r) => r.match).length;
  return [
    line(header),
    ...rows.map(line),
    '',
    `${matched} of ${results.length} profiles behave as declared (EI/AD/APD = endpoint-independent / address-dependent / address-and-port-dependent).`,
    ...(notes.length > 0 ? ['Notes:', ...notes] : []),
    '',
  ].join('\n');
}
