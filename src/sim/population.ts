/**
 * `sc2c sim population`: random caller/callee pairs drawn from the paper's 134-model NAT mix
 * (`config/nat-population.yaml`), each placed as a real call (server and gateway code) on the
 * virtual network, once per traversal mode. Per mode it reports the share of pairs that got a
 * direct path, the share that would need the relay, and the relay bandwidth the direct paths save.
 *
 * Models with the same behaviour (STUN type, port rule, PKS, IPS) form a class; the drawn pairs of
 * one class pair run as one matrix cell with as many trials as pairs were drawn, so every drawn pair
 * is one real call. Cells run in worker threads.
 *
 * Relay bandwidth saved is modelled per call from what was measured: a call lasts `callS`; a call
 * with no direct path is relayed throughout; a direct call whose path confirmed after the relay
 * budget (`budgetMs`, the gateway's default 1000 ms) spent the difference on the relay, as the path
 * policy does. Saved = 1 - relayed time / all call time (media at a constant bitrate).
 */
import { modelBehaviour, type NatModel, type PortMappingShare } from '../nat/population.ts';
import { loadProfiles } from '../nat/profiles.ts';
import type { TraversalMode } from '../protocol/sdp.ts';
import { createRng, hashString } from '../util/rng.ts';
import { percentile } from '../util/stats.ts';
import { poolSize, runCells } from './cell-pool.ts';

/** The paper's population as measured: no NAT is known to map ports on request. */
export const NO_PORT_MAPPING: PortMappingShare = { pcp: 0, natpmp: 0, upnp: 0 };

/** Models that behave the same in the NAT model share a class. */
export function natClass(model: NatModel): string {
  const mapping =
    model.portMapping === 'nat-pmp' ? '+natpmp' : model.portMapping ? `+${model.portMapping}` : '';
  return `${model.stunType}/${model.portRule}${model.pks ? '/pks' : model.ips ? '/ips' : ''}${mapping}`;
}

/**
 * Issue 20: gives each drawn NAT a port-mapping protocol with the shares' probabilities, from its
 * own random stream, so a share of 0 draws exactly the pairs it drew before. Pure.
 */
function withPortMapping(model: NatModel, share: PortMappingShare, draw: number): NatModel {
  if (draw < share.pcp) return { ...model, portMapping: 'pcp' };
  if (draw < share.pcp + share.natpmp) return { ...model, portMapping: 'nat-pmp' };
  if (draw < share.pcp + share.natpmp + share.upnp) return { ...model, portMapping: 'upnp' };
  return model;
}

export interface PopulationJob {
  readonly calling: NatModel;
  readonly called: NatModel;
  readonly mode: TraversalMode;
  readonly trials: number;
  readonly seed: number;
}

export interface JobResult {
  readonly successes: number;
  readonly trials: number;
  /** Setup time of every successful trial, ms. */
  readonly setupsMs: readonly number[];
  readonly failures: Readonly<Record<string, number>>;
  /** Punch checks both sides sent over all trials. */
  readonly checksSent: number;
  /** Age of every predicted port at its punch (both sides, all trials). */
  readonly predictionAgesMs?: readonly number[];
}

/**
 * Draws `pairs` caller/callee pairs uniformly (with replacement) from `models` and groups them into
 * one job per class pair and mode. The jobs' trials add up to `pairs` for every mode.
 */
export function planPopulation(
  models: readonly NatModel[],
  pairs: number,
  modes: readonly TraversalMode[],
  seed: number,
  share: PortMappingShare = NO_PORT_MAPPING,
): { jobs: PopulationJob[]; classPairs: Record<string, number> } {
  const rng = createRng(seed);
  const mappingRng = createRng((seed ^ 0x20) >>> 0);
  const byClassPair = new Map<string, { calling: NatModel; called: NatModel; count: number }>();
  for (let i = 0; i < pairs; i++) {
    const calling = withPortMapping(models[rng.int(0, models.length - 1)]!, share, mappingRng.next());
    const called = withPortMapping(models[rng.int(0, models.length - 1)]!, share, mappingRng.next());
    const key = `${natClass(calling)} -> ${natClass(called)}`;
    const entry = byClassPair.get(key) ?? { calling, called, count: 0 };
    entry.count++;
    byClassPair.set(key, entry);
  }
  const jobs: PopulationJob[] = [];
  for (const [key, { calling, called, count }] of byClassPair)
    for (const mode of modes)
      jobs.push({ calling, called, mode, trials: count, seed: (hashString(`${key}|${mode}`) ^ seed) >>> 0 });
  // Longest first, so the workers finish together.
  jobs.sort((a, b) => b.trials - a.trials);
  return {
    jobs,
    classPairs: Object.fromEntries([...byClassPair].map(([key, v]) => [key, v.count])),
  };
}

export interface ModeSummary {
  readonly mode: TraversalMode;
  readonly pairs: number;
  readonly direct: number;
  /** Pairs that got a direct path ÷ all pairs. */
  readonly directRate: number;
  /** Pairs that need the relay for the whole call ÷ all pairs. */
  readonly relayShare: number;
  /** 1 - relayed call time ÷ all call time (see the module comment). */
  readonly relayBandwidthSaved: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
  readonly failures: Readonly<Record<string, number>>;
  /** Punch checks per call, both sides together: the probe budget beside the success rate. */
  readonly checksPerCall: number;
  /** How old predicted ports were when the punch left (p50/p95, ms); null when none was predicted. */
  readonly predictionAgeMsP50: number | null;
  readonly predictionAgeMsP95: number | null;
}

export function summarizeMode(
  mode: TraversalMode,
  results: readonly JobResult[],
  model: { readonly callS: number; readonly budgetMs: number },
): ModeSummary {
  const pairs = results.reduce((n, r) => n + r.trials, 0);
  const direct = results.reduce((n, r) => n + r.successes, 0);
  const setups = results.flatMap((r) => r.setupsMs).sort((a, b) => a - b);
  const ages = results.flatMap((r) => r.predictionAgesMs ?? []).sort((a, b) => a - b);
  const callMs = model.callS * 1000;
  const relayedMs =
    (pairs - direct) * callMs +
    setups.reduce((n, s) => n + Math.min(callMs, Math.max(0, s - model.budgetMs)), 0);
  const failures: Record<string, number> = {};
  for (const r of results)
    for (const [reason, count] of Object.entries(r.failures))
      failures[reason] = (failures[reason] ?? 0) + count;
  const ratio = (v: number): number => Math.round(v * 10_000) / 10_000;
  return {
    mode,
    pairs,
    direct,
    directRate: pairs ? ratio(direct / pairs) : 0,
    relayShare: pairs ? ratio((pairs - direct) / pairs) : 0,
    relayBandwidthSaved: pairs ? ratio(1 - relayedMs / (pairs * callMs)) : 0,
    setupMsP50: setups.length ? percentile(setups, 50) : null,
    setupMsP95: setups.length ? percentile(setups, 95) : null,
    failures,
    checksPerCall: pairs ? Math.round((10 * results.reduce((n, r) => n + r.checksSent, 0)) / pairs) / 10 : 0,
    predictionAgeMsP50: ages.length ? Math.round(percentile(ages, 50)) : null,
    predictionAgeMsP95: ages.length ? Math.round(percentile(ages, 95)) : null,
  };
}

export interface PopulationInit {
  readonly models: readonly NatModel[];
  readonly pairs: number;
  readonly modes: readonly TraversalMode[];
  readonly seed: number;
  readonly oneWayMs: readonly [number, number];
  /** Worker threads; default the number of CPUs. */
  readonly workers: number;
  readonly callS: number;
  readonly budgetMs: number;
  /**
   * New sessions per second another host behind each NAT opens (issue 19: real NATs are busy).
   * Default 0, the paper's quiet NATs.
   */
  readonly backgroundPerSecond?: number;
  /** Issue 20: the share of NATs answering PCP and NAT-PMP. Default none (the paper measured none). */
  readonly portMappingShare?: PortMappingShare;
  /** After each finished job: jobs done, jobs in all, and trials done so far. */
  readonly onProgress?: (done: number, total: number, trialsDone: number) => void;
}

export interface PopulationReport {
  readonly config: {
    readonly pairs: number;
    readonly models: number;
    readonly classes: number;
    readonly modes: readonly TraversalMode[];
    readonly seed: number;
    readonly rttMs: number;
    readonly callS: number;
    readonly budgetMs: number;
    readonly backgroundPerSecond: number;
    readonly portMappingShare: PortMappingShare;
    readonly workers: number;
  };
  readonly modes: readonly ModeSummary[];
  /** Every class pair and mode that was drawn: its calls and how many got a direct path. */
  readonly cells: readonly {
    readonly calling: string;
    readonly called: string;
    readonly mode: TraversalMode;
    readonly successes: number;
    readonly trials: number;
  }[];
  readonly elapsedS: number;
}

/** Plans the draw, runs every job in worker threads and summarizes per mode. */
export async function runPopulation(init: PopulationInit): Promise<PopulationReport> {
  const started = performance.now();
  const share = init.portMappingShare ?? NO_PORT_MAPPING;
  const { jobs } = planPopulation(init.models, init.pairs, init.modes, init.seed, share);
  const catalog = loadProfiles();
  let trialsDone = 0;
  const cells = await runCells(
    jobs.map((job) => ({
      calling: { name: natClass(job.calling), behaviour: modelBehaviour(job.calling, catalog) },
      called: { name: natClass(job.called), behaviour: modelBehaviour(job.called, catalog) },
      mode: job.mode,
      trials: job.trials,
      oneWayMs: init.oneWayMs,
      backgroundPerSecond: init.backgroundPerSecond ?? 0,
      seed: job.seed,
      keepSetups: true,
    })),
    {
      workers: init.workers,
      onCell: (done, total, cell) => {
        trialsDone += cell.trials;
        init.onProgress?.(done, total, trialsDone);
      },
    },
  );
  const results: JobResult[] = cells.map((cell) => ({
    successes: cell.successes,
    trials: cell.trials,
    setupsMs: cell.setupsMs ?? [],
    failures: cell.failures,
    checksSent: cell.checksSent,
    predictionAgesMs: cell.predictionAgesMs,
  }));
  const model = { callS: init.callS, budgetMs: init.budgetMs };
  return {
    config: {
      pairs: init.pairs,
      models: init.models.length,
      classes: new Set(init.models.map(natClass)).size,
      modes: init.modes,
      seed: init.seed,
      rttMs: 2 * (init.oneWayMs[0] + init.oneWayMs[1]),
      callS: init.callS,
      budgetMs: init.budgetMs,
      backgroundPerSecond: init.backgroundPerSecond ?? 0,
      portMappingShare: share,
      workers: poolSize(init.workers, jobs.length),
    },
    modes: init.modes.map((mode) =>
      summarizeMode(
        mode,
        results.filter((_, i) => jobs[i]!.mode === mode),
        model,
      ),
    ),
    cells: jobs
      .map((job, i) => ({
        calling: natClass(job.calling),
        called: natClass(job.called),
        mode: job.mode,
        successes: results[i]!.successes,
        trials: results[i]!.trials,
      }))
      .sort((a, b) => a.calling.localeCompare(b.calling) || a.called.localeCompare(b.called)),
    elapsedS: Math.round((performance.now() - started) / 100) / 10,
  };
}
