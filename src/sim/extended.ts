/**
 * `sc2c sim extended`: the extended matrix of issue 7, one crossed run on the virtual network.
 * Every calling x called NAT pair, where a NAT is a mapping type x a port allocation x a
 * sensitivity, runs under every path (symmetric RTT or asymmetric uplinks) and background load, in
 * every traversal mode. Each cell is real server and gateway code (`runMatrixCell`); cells run in
 * worker threads. Per cell: successes and setup time p50/p95; per dimension: the same pooled.
 */
import type { NatBehaviour, PortAllocation } from '../nat/behaviour.ts';
import type { ProfileCatalog } from '../nat/profiles.ts';
import type { TraversalMode } from '../protocol/sdp.ts';
import { hashString } from '../util/rng.ts';
import { percentile } from '../util/stats.ts';
import type { CellJob, MatrixCell } from './matrix.ts';

export const MAPPINGS = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;
export type Mapping = (typeof MAPPINGS)[number];
/** Paper Table 2's port rules: the next session's port is the last +1, +2, or anything. */
export const ALLOCATIONS = ['+1', '+2', 'random'] as const;
export type Allocation = (typeof ALLOCATIONS)[number];
export const SENSITIVITIES = ['none', 'pks', 'ips'] as const;
export type Sensitivity = (typeof SENSITIVITIES)[number];

export interface ExtendedNat {
  /** `mapping/allocation[/pks|/ips]`, e.g. `symmetric/+2/pks`. */
  readonly name: string;
  readonly mapping: Mapping;
  readonly allocation: Allocation;
  readonly sensitivity: Sensitivity;
}

/** A path between the NATs: `40` is a 40 ms RTT split evenly, `10/150` one-way uplink delays. */
export interface PathVariant {
  readonly name: string;
  readonly oneWayMs: readonly [number, number];
}

export function parsePath(text: string): PathVariant {
  const asym = /^(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(text.trim());
  if (asym) return { name: text.trim(), oneWayMs: [Number(asym[1]), Number(asym[2])] };
  const rtt = Number(text.trim());
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || rtt > 10_000)
    throw new Error(`a path is an RTT in ms (40) or two one-way uplink delays (10/150), not '${text}'`);
  return { name: text.trim(), oneWayMs: [rtt / 4, rtt / 4] };
}

export function extendedNats(
  mappings: readonly Mapping[] = MAPPINGS,
  allocations: readonly Allocation[] = ALLOCATIONS,
  sensitivities: readonly Sensitivity[] = SENSITIVITIES,
): ExtendedNat[] {
  return mappings.flatMap((mapping) =>
    allocations.flatMap((allocation) =>
      sensitivities.map((sensitivity) => ({
        name: `${mapping}/${allocation}${sensitivity === 'none' ? '' : `/${sensitivity}`}`,
        mapping,
        allocation,
        sensitivity,
      })),
    ),
  );
}

const ALLOCATION: Record<Allocation, PortAllocation> = {
  '+1': { type: 'sequential', delta: 1 },
  '+2': { type: 'sequential', delta: 2 },
  random: { type: 'random' },
};

/** The shipped profile of the mapping type (symmetric: symmetric-seq1), its allocation replaced. */
export function extendedBehaviour(nat: ExtendedNat, catalog: ProfileCatalog): NatBehaviour {
  const base = nat.mapping === 'symmetric' ? 'symmetric-seq1' : nat.mapping;
  const spec = nat.sensitivity === 'none' ? base : `${base}+${nat.sensitivity}`;
  return { ...catalog.resolve(spec), allocation: ALLOCATION[nat.allocation] };
}

export interface ExtendedPlan {
  readonly nats: readonly ExtendedNat[];
  readonly paths: readonly PathVariant[];
  readonly backgrounds: readonly number[];
  readonly modes: readonly TraversalMode[];
  readonly trials: number;
  readonly seed: number;
  readonly window?: number;
  /** Let a side pin its mapping before the punch (issue 19). Default true. */
  readonly pin?: boolean;
  /** Birthday punching for random-port NATs (issue 19). Default true. */
  readonly birthday?: boolean;
  /** Drift tracking toward a pinned peer (issue 19). Default true. */
  readonly drift?: boolean;
  /** Crossed ladders between two predicting per-destination NATs; 1 turns them off. */
  readonly crossWindow?: number;
}

/** What each job is, beside the job itself. */
export interface ExtendedCellKey {
  readonly calling: ExtendedNat;
  readonly called: ExtendedNat;
  readonly path: string;
  readonly background: number;
  readonly mode: TraversalMode;
}

export function planExtended(
  plan: ExtendedPlan,
  catalog: ProfileCatalog,
): { keys: ExtendedCellKey[]; jobs: CellJob[] } {
  const keys: ExtendedCellKey[] = [];
  const jobs: CellJob[] = [];
  const behaviours = new Map(plan.nats.map((n) => [n.name, extendedBehaviour(n, catalog)]));
  for (const calling of plan.nats)
    for (const called of plan.nats)
      for (const path of plan.paths)
        for (const background of plan.backgrounds)
          for (const mode of plan.modes) {
            keys.push({ calling, called, path: path.name, background, mode });
            jobs.push({
              calling: { name: calling.name, behaviour: behaviours.get(calling.name)! },
              called: { name: called.name, behaviour: behaviours.get(called.name)! },
              mode,
              trials: plan.trials,
              oneWayMs: path.oneWayMs,
              backgroundPerSecond: background,
              window: plan.window,
              pin: plan.pin,
              birthday: plan.birthday,
              drift: plan.drift,
              crossWindow: plan.crossWindow,
              seed:
                (hashString(`${calling.name}|${called.name}|${path.name}|${background}|${mode}`) ^
                  plan.seed) >>>
                0,
              keepSetups: true,
            });
          }
  return { keys, jobs };
}

/** One cell of the report: the key flattened, the result, setup percentiles. */
export interface ExtendedCell {
  readonly calling: string;
  readonly called: string;
  readonly path: string;
  readonly background: number;
  readonly mode: TraversalMode;
  readonly successes: number;
  readonly trials: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
  readonly failures: Readonly<Record<string, number>>;
}

/** Cells pooled along one dimension: success and setup percentiles over every trial in the group. */
export interface ExtendedGroup {
  readonly dimension: string;
  readonly value: string;
  readonly mode: TraversalMode;
  readonly successes: number;
  readonly trials: number;
  readonly rate: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
}

/** The dimensions the report pools along, and each cell's value in it. */
export const DIMENSIONS: Readonly<Record<string, (k: ExtendedCellKey) => string>> = {
  mapping: (k) => `${k.calling.mapping} -> ${k.called.mapping}`,
  allocation: (k) => `${k.calling.allocation} -> ${k.called.allocation}`,
  sensitivity: (k) => `${k.calling.sensitivity} -> ${k.called.sensitivity}`,
  path: (k) => k.path,
  background: (k) => `${k.background}/s`,
  all: () => 'all',
};

const round = (v: number): number => Math.round(v * 10) / 10;

export function summarizeExtended(
  keys: readonly ExtendedCellKey[],
  results: readonly MatrixCell[],
): { cells: ExtendedCell[]; groups: ExtendedGroup[] } {
  const setupStats = (setups: number[]): { setupMsP50: number | null; setupMsP95: number | null } => {
    const sorted = [...setups].sort((a, b) => a - b);
    return sorted.length
      ? { setupMsP50: round(percentile(sorted, 50)), setupMsP95: round(percentile(sorted, 95)) }
      : { setupMsP50: null, setupMsP95: null };
  };
  const cells = keys.map((k, i) => {
    const r = results[i]!;
    return {
      calling: k.calling.name,
      called: k.called.name,
      path: k.path,
      background: k.background,
      mode: k.mode,
      successes: r.successes,
      trials: r.trials,
      ...setupStats([...(r.setupsMs ?? [])]),
      failures: r.failures,
    };
  });
  const groups: ExtendedGroup[] = [];
  for (const [dimension, valueIn] of Object.entries(DIMENSIONS)) {
    const pooled = new Map<string, { successes: number; trials: number; setups: number[] }>();
    keys.forEach((k, i) => {
      const id = `${valueIn(k)}\u0000${k.mode}`;
      const group = pooled.get(id) ?? { successes: 0, trials: 0, setups: [] };
      group.successes += results[i]!.successes;
      group.trials += results[i]!.trials;
      for (const s of results[i]!.setupsMs ?? []) group.setups.push(s);
      pooled.set(id, group);
    });
    for (const [id, g] of pooled) {
      const [value, mode] = id.split('\u0000') as [string, TraversalMode];
      groups.push({
        dimension,
        value,
        mode,
        successes: g.successes,
        trials: g.trials,
        rate: g.trials ? Math.round((g.successes / g.trials) * 10_000) / 10_000 : 0,
        ...setupStats(g.setups),
      });
    }
  }
  return { cells, groups };
}
