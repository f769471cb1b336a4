/** `sc2c sim ...`: runs the real protocol code on the in-memory virtual network. */
import { createWriteStream } from 'node:fs';
import type { Command } from 'commander';
import { DEFAULT_PROFILES_PATH, loadProfiles } from '../nat/profiles.ts';
import { formatTraceRecord } from '../net/virtual/trace.ts';
import { simulateNatcheck } from '../sim/natcheck.ts';
import type { NatcheckResult } from '../traversal/natcheck/observation.ts';
import { parseInteger } from './errors.ts';

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
