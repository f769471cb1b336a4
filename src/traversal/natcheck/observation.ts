/** What natcheck reports about a NAT, and how it compares with what a profile declares. */
import type {
  FilteringBehaviour,
  MappingBehaviour,
  NatBehaviour,
  UnsolicitedReply,
} from '../../nat/behaviour.ts';

export interface NatObservation {
  readonly mapping: MappingBehaviour;
  readonly filtering: FilteringBehaviour;
  readonly allocation: 'preserve-if-free' | 'sequential' | 'random';
  /** Port step between new sessions (sequential allocation only), else null. */
  readonly delta: number | null;
  /** True when the public port equals the internal port. */
  readonly preservation: boolean;
  /** Null when the test cannot be run against this NAT (see `unobservable`). */
  readonly hairpin: boolean | null;
  readonly pks: boolean | null;
  readonly ips: boolean | null;
  readonly unsolicitedReply: UnsolicitedReply;
}

export type ObservationKey = keyof NatObservation;

export interface NatcheckReport {
  readonly observed: NatObservation;
  /** Behaviours no packet exchange can reveal for this NAT, with the reason. */
  readonly unobservable: Partial<Record<ObservationKey, string>>;
}

export interface NatcheckResult {
  readonly profile: string;
  readonly declared: NatObservation;
  readonly observed: NatObservation;
  /** True only when every observable behaviour equals the declared one. */
  readonly match: boolean;
  readonly mismatches: ObservationKey[];
  readonly unobservable: Partial<Record<ObservationKey, string>>;
}

/** What a black-box test should find on a NAT with `behaviour`. */
export function declaredObservation(behaviour: NatBehaviour): NatObservation {
  const allocation = behaviour.allocation;
  return {
    mapping: behaviour.mapping,
    filtering: behaviour.filtering,
    allocation: allocation.type,
    delta: allocation.type === 'sequential' ? allocation.delta : null,
    preservation: allocation.type === 'preserve-if-free',
    hairpin: behaviour.hairpin,
    pks: behaviour.pks,
    ips: behaviour.ips,
    unsolicitedReply: behaviour.unsolicitedReply,
  };
}

export function compareObservation(
  profile: string,
  declared: NatObservation,
  report: NatcheckReport,
): NatcheckResult {
  const mismatches = (Object.keys(declared) as ObservationKey[]).filter(
    (key) => !(key in report.unobservable) && declared[key] !== report.observed[key],
  );
  return {
    profile,
    declared,
    observed: report.observed,
    match: mismatches.length === 0,
    mismatches,
    unobservable: report.unobservable,
  };
}
