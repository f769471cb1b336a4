/** `sc2c sim population`: the paper's 134-NAT mix, random pairs, real calls on the virtual network. */
import { cpus } from 'node:os';
import type { Command } from 'commander';
import { DEFAULT_POPULATION_PATH, loadPopulation, type PortMappingShare } from '../nat/population.ts';
import { type PopulationReport, runPopulation } from '../sim/population.ts';
import { UsageError } from '../util/usage-error.ts';
import { parseInteger } from './errors.ts';
import { parseModes } from './sim.ts';

interface PopulationOptions {
  trials: number;
  modes: string;
  rttMs: number;
  seed: number;
  workers: number;
  callS: number;
  budgetMs: number;
  population: string;
  background: number;
  json?: boolean;
  quiet?: boolean;
  portMappingShare?: PortMappingShare;
}

/** `pcp=0.2,natpmp=0.1,upnp=0.3`: each a share in [0, 1], together at most 1. */
export function parsePortMappingShare(text: string): PortMappingShare {
  const share = { pcp: 0, natpmp: 0, upnp: 0 };
  for (const part of text.split(',')) {
    const [name, value] = part.split('=').map((t) => t.trim());
    const v = Number(value);
    if (
      (name !== 'pcp' && name !== 'natpmp' && name !== 'upnp') ||
      value === undefined ||
      value === '' ||
      !(v >= 0 && v <= 1)
    )
      throw new UsageError(
        `--port-mapping-share takes pcp=<share>,natpmp=<share>,upnp=<share> with shares from 0 to 1, e.g. pcp=0.2,natpmp=0.1; got '${text}'`,
      );
    share[name] = v;
  }
  if (share.pcp + share.natpmp + share.upnp > 1)
    throw new UsageError(`--port-mapping-share: the shares add up to more than 1 ('${text}')`);
  return share;
}

export function registerPopulation(sim: Command): void {
  sim
    .command('population')
    .description(
      "draw random caller/callee pairs from the paper's 134-model NAT mix and place a real call per pair and mode on the virtual network: direct-connection rate, relay share, relay bandwidth saved",
    )
    .option(
      '--trials <n>',
      'pairs to draw (each is one call per mode)',
      parseInteger('--trials', 1, 1_000_000),
      10_000,
    )
    .option('--modes <list>', 'traversal modes', 'sc2c,c2c,stun')
    .option('--rtt-ms <n>', 'round trip between the two NATs', parseInteger('--rtt-ms', 0, 10_000), 40)
    .option('--seed <n>', 'seed of the draw and of every cell', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option(
      '--workers <n>',
      'worker threads (default: one per CPU)',
      parseInteger('--workers', 1, 64),
      cpus().length,
    )
    .option(
      '--call-s <n>',
      'modelled call length, for the relay bandwidth saved',
      parseInteger('--call-s', 1, 86_400),
      60,
    )
    .option(
      '--budget-ms <n>',
      'relay budget: a direct path confirmed later than this spent the difference on the relay',
      parseInteger('--budget-ms', 0, 60_000),
      1000,
    )
    .option(
      '--background <n>',
      'new sessions per second another host behind each NAT opens (busy NATs; 0: quiet, as the paper)',
      parseInteger('--background', 0, 100),
      0,
    )
    .option(
      '--port-mapping-share <shares>',
      'share of NATs that map ports on request, e.g. pcp=0.2,natpmp=0.1,upnp=0.3 (an assumption: the paper measured none; default none)',
      parsePortMappingShare,
    )
    .option('--population <file>', 'NAT population file', DEFAULT_POPULATION_PATH)
    .option(
      '--json',
      'print {config, modes: [{mode, directRate, relayShare, relayBandwidthSaved, checksPerCall, ...}], cells: [...]}',
    )
    .option('-q, --quiet', 'no progress lines on stderr')
    .action(async (options: PopulationOptions) => {
      const modes = parseModes(options.modes);
      const models = loadPopulation(options.population);
      let last = 0;
      const report = await runPopulation({
        models,
        pairs: options.trials,
        modes,
        seed: options.seed,
        oneWayMs: [options.rttMs / 4, options.rttMs / 4],
        workers: options.workers,
        callS: options.callS,
        budgetMs: options.budgetMs,
        backgroundPerSecond: options.background,
        portMappingShare: options.portMappingShare,
        onProgress: (done, total, trialsDone) => {
          if (options.quiet || (Date.now() - last < 1000 && done < total)) return;
          last = Date.now();
          process.stderr.write(
            `[${done}/${total} cells] ${trialsDone} of ${options.trials * modes.length} calls placed\n`,
          );
        },
      });
      if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(formatPopulation(report));
    });
}

export function formatPopulation(report: PopulationReport): string {
  const pct = (v: number): string => `${(v * 100).toFixed(2)} %`;
  const c = report.config;
  const rows = [
    [
      'mode',
      'direct',
      'relay share',
      'relay bandwidth saved',
      'setup p50/p95 ms',
      'checks/call',
      'prediction age p50/p95 ms',
    ],
    ...report.modes.map((m) => [
      m.mode,
      `${pct(m.directRate)} (${m.direct}/${m.pairs})`,
      pct(m.relayShare),
      pct(m.relayBandwidthSaved),
      m.setupMsP50 === null ? '-' : `${m.setupMsP50}/${m.setupMsP95}`,
      String(m.checksPerCall),
      m.predictionAgeMsP50 === null ? '-' : `${m.predictionAgeMsP50}/${m.predictionAgeMsP95}`,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `${c.pairs} random pairs from ${c.models} NAT models (${c.classes} behaviour classes), ${c.rttMs} ms RTT, ${c.backgroundPerSecond ? `${c.backgroundPerSecond} background sessions/s behind each NAT` : 'quiet NATs'}${c.portMappingShare.pcp + c.portMappingShare.natpmp + c.portMappingShare.upnp > 0 ? `, port mapping on ${Math.round(c.portMappingShare.pcp * 100)} % (PCP) + ${Math.round(c.portMappingShare.natpmp * 100)} % (NAT-PMP) + ${Math.round(c.portMappingShare.upnp * 100)} % (UPnP) of NATs` : ''}, seed ${c.seed}, ${report.elapsedS} s`,
    '',
    ...rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')),
    '',
    `relay bandwidth saved: ${c.callS} s calls; a direct path confirmed after ${c.budgetMs} ms spent the difference on the relay`,
    'checks/call: punch checks both gateways sent per call (the last attempt; up to the relay budget where media went there first)',
    'prediction age: from the STUN sample behind a predicted port to the punch (ports observed behind cones have none)',
    '',
  ].join('\n');
}
