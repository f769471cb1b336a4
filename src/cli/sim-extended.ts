/** `sc2c sim extended`: the extended matrix (issue 7), every dimension crossed in one run. */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Command } from 'commander';
import { DEFAULT_PROFILES_PATH, loadProfiles } from '../nat/profiles.ts';
import type { TraversalMode } from '../protocol/sdp.ts';
import { runCells } from '../sim/cell-pool.ts';
import {
  ALLOCATIONS,
  type Allocation,
  type ExtendedCell,
  type ExtendedGroup,
  extendedNats,
  MAPPINGS,
  type Mapping,
  parsePath,
  planExtended,
  SENSITIVITIES,
  type Sensitivity,
  summarizeExtended,
} from '../sim/extended.ts';
import { UsageError } from '../util/usage-error.ts';
import { parseInteger } from './errors.ts';
import { parseModes } from './sim.ts';

interface ExtendedOptions {
  trials: number;
  modes: string;
  mappings: string;
  allocations: string;
  sensitivities: string;
  paths: string;
  background: string;
  window: number;
  pin: boolean;
  birthday: boolean;
  drift: boolean;
  crossWindow: number;
  seed: number;
  workers: number;
  profiles: string;
  out?: string;
  json?: boolean;
  quiet?: boolean;
}

export interface ExtendedReport {
  readonly config: {
    readonly trials: number;
    readonly modes: readonly TraversalMode[];
    readonly nats: readonly string[];
    readonly paths: readonly { name: string; oneWayMs: readonly [number, number] }[];
    readonly backgrounds: readonly number[];
    readonly window: number;
    readonly pin: boolean;
    readonly birthday: boolean;
    readonly drift: boolean;
    readonly crossWindow: number;
    readonly seed: number;
    readonly workers: number;
  };
  readonly groups: readonly ExtendedGroup[];
  readonly cells: readonly ExtendedCell[];
  readonly elapsedS: number;
}

function parseList<T extends string>(flag: string, text: string, allowed: readonly T[]): T[] {
  const values = text.split(',').map((v) => v.trim());
  for (const v of values)
    if (!(allowed as readonly string[]).includes(v))
      throw new UsageError(`unknown value '${v}' in ${flag}. Allowed: ${allowed.join(', ')}`);
  return values as T[];
}

function parseBackgrounds(text: string): number[] {
  return text.split(',').map((v) => {
    const n = Number(v.trim());
    if (!/^\d+$/.test(v.trim()) || n > 1000)
      throw new UsageError(`--background takes sessions per second (0-1000), comma-separated; got '${v}'`);
    return n;
  });
}

export function registerExtended(sim: Command): void {
  sim
    .command('extended')
    .description(
      'the extended matrix in one crossed run: mapping x allocation (+1, +2, random) x PKS/IPS for caller and callee, x path (RTT, asymmetric uplinks) x background sessions, per traversal mode; success and setup p50/p95 per cell and per dimension',
    )
    .option('--trials <n>', 'calls per cell', parseInteger('--trials', 1, 10_000), 10)
    .option('--modes <list>', 'traversal modes', 'sc2c,c2c,stun')
    .option('--mappings <list>', `mapping types (${MAPPINGS.join(', ')})`, MAPPINGS.join(','))
    .option('--allocations <list>', `port allocations (${ALLOCATIONS.join(', ')})`, ALLOCATIONS.join(','))
    .option(
      '--sensitivities <list>',
      `NAT sensitivities (${SENSITIVITIES.join(', ')})`,
      SENSITIVITIES.join(','),
    )
    .option(
      '--paths <list>',
      'paths: an RTT in ms (40) or one-way uplink delays calling/called (10/150)',
      '40,10/150',
    )
    .option('--background <list>', 'new sessions per second by another host behind each NAT', '0,5')
    .option(
      '--window <n>',
      "candidates a gateway covers on the peer's predicted port",
      parseInteger('--window', 1, 16),
      3,
    )
    .option(
      '--no-pin',
      "never pin a mapping before the punch (issue 19); with --cross-window 1, the paper's prediction alone",
    )
    .option('--no-birthday', 'no birthday punching for random-port NATs (issue 19)')
    .option(
      '--no-drift',
      'toward a pinned peer, check from the prediction on instead of where the tracked counter is (issue 19)',
    )
    .option(
      '--cross-window <n>',
      'crossed ladders between two predicting per-destination NATs: the callee checks n ports, the caller 2n-1 (1: off)',
      parseInteger('--cross-window', 1, 32),
      16,
    )
    .option('--seed <n>', 'base seed', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option(
      '--workers <n>',
      'worker threads (default: one per CPU)',
      parseInteger('--workers', 1, 64),
      cpus().length,
    )
    .option('--profiles <file>', 'NAT profile file (the mapping types come from it)', DEFAULT_PROFILES_PATH)
    .option('--out <file>', 'also write the JSON report to <file>')
    .option(
      '--json',
      'print {config, groups: [{dimension, value, mode, successes, trials, rate, setupMsP50, setupMsP95}], cells: [...]}',
    )
    .option('-q, --quiet', 'no progress lines on stderr')
    .action(async (options: ExtendedOptions) => {
      const modes = parseModes(options.modes);
      const nats = extendedNats(
        parseList<Mapping>('--mappings', options.mappings, MAPPINGS),
        parseList<Allocation>('--allocations', options.allocations, ALLOCATIONS),
        parseList<Sensitivity>('--sensitivities', options.sensitivities, SENSITIVITIES),
      );
      let paths: ReturnType<typeof parsePath>[];
      try {
        paths = options.paths.split(',').map(parsePath);
      } catch (error) {
        throw new UsageError(`--paths: ${(error as Error).message}`);
      }
      const backgrounds = parseBackgrounds(options.background);
      const plan = {
        nats,
        paths,
        backgrounds,
        modes,
        trials: options.trials,
        seed: options.seed,
        window: options.window,
        pin: options.pin !== false,
        birthday: options.birthday !== false,
        drift: options.drift !== false,
        crossWindow: options.crossWindow,
      };
      const { keys, jobs } = planExtended(plan, loadProfiles(options.profiles));
      const started = performance.now();
      let last = 0;
      if (!options.quiet)
        process.stderr.write(
          `${nats.length} NATs, ${nats.length ** 2} pairs x ${paths.length} paths x ${backgrounds.length} loads x ${modes.length} modes = ${jobs.length} cells, ${jobs.length * options.trials} calls\n`,
        );
      const results = await runCells(jobs, {
        workers: options.workers,
        onCell: (done, total) => {
          if (options.quiet || (performance.now() - last < 5000 && done < total)) return;
          last = performance.now();
          const elapsed = (performance.now() - started) / 1000;
          process.stderr.write(
            `[${done}/${total} cells] ${Math.round(elapsed)} s, about ${Math.round((elapsed / done) * (total - done))} s left\n`,
          );
        },
      });
      const report: ExtendedReport = {
        config: {
          trials: options.trials,
          modes,
          nats: nats.map((n) => n.name),
          paths,
          backgrounds,
          window: options.window,
          pin: options.pin !== false,
          birthday: options.birthday !== false,
          drift: options.drift !== false,
          crossWindow: options.crossWindow,
          seed: options.seed,
          workers: Math.min(options.workers, jobs.length),
        },
        ...summarizeExtended(keys, results),
        elapsedS: Math.round((performance.now() - started) / 100) / 10,
      };
      if (options.out) writeFileSync(options.out, `${JSON.stringify(report)}\n`);
      if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatExtended(report));
    });
}

/** Per dimension, one row per value: each mode's success and setup p50/p95; then the weakest SC2C cells. */
export function formatExtended(report: ExtendedReport): string {
  const modes = report.config.modes;
  const out: string[] = [
    `${report.config.nats.length} NATs squared x paths ${report.config.paths.map((p) => p.name).join(', ')} x background ${report.config.backgrounds.join(', ')}/s, ${report.config.trials} calls per cell, ${report.cells.length} cells, ${report.elapsedS} s`,
    '',
  ];
  const dimensions = [...new Set(report.groups.map((g) => g.dimension))];
  for (const dimension of dimensions) {
    const groups = report.groups.filter((g) => g.dimension === dimension);
    const values = [...new Set(groups.map((g) => g.value))];
    const rows = [
      [dimension, ...modes.map((m) => `${m} ok (setup p50/p95 ms)`)],
      ...values.map((value) => [
        value,
        ...modes.map((mode) => {
          const g = groups.find((x) => x.value === value && x.mode === mode);
          if (!g) return '-';
          const setup = g.setupMsP50 === null ? '-' : `${g.setupMsP50}/${g.setupMsP95}`;
          return `${(g.rate * 100).toFixed(1)} % (${setup})`;
        }),
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    out.push(
      ...rows.map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      ),
      '',
    );
  }
  const weakest = report.cells
    .filter((c) => c.mode === 'sc2c' && c.successes < c.trials)
    .sort((a, b) => a.successes / a.trials - b.successes / b.trials)
    .slice(0, 10);
  if (weakest.length > 0) {
    out.push('weakest SC2C cells:');
    for (const c of weakest)
      out.push(
        `  ${c.calling} -> ${c.called}, path ${c.path}, ${c.background}/s: ${c.successes}/${c.trials} (${Object.keys(c.failures)[0] ?? ''})`,
      );
    out.push('');
  }
  return out.join('\n');
}
