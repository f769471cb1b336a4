/** The paper's 134-model NAT population (`config/nat-population.yaml`), expanded to one entry a model. */
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseConfig, readConfigFile } from '../util/config-file.ts';
import type { NatBehaviour, PortAllocation, PortMappingServer } from './behaviour.ts';
import type { ProfileCatalog } from './profiles.ts';

export const DEFAULT_POPULATION_PATH = fileURLToPath(
  new URL('../../config/nat-population.yaml', import.meta.url),
);

export const STUN_TYPES = ['full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;
export const PORT_RULES = ['+1', '+2', 'random'] as const;

const groupSchema = z
  .object({
    count: z.number().int().min(1),
    stunType: z.enum(STUN_TYPES),
    portRule: z.enum(PORT_RULES),
    pks: z.boolean().default(false),
    ips: z.boolean().default(false),
    brand: z.string().optional(),
    model: z.string().optional(),
  })
  .strict()
  .refine((g) => !(g.pks && g.ips), {
    message: 'a model is PKS or IPS, not both (paper Table 3 is a partition)',
  });

const populationSchema = z.object({ groups: z.array(groupSchema).min(1) }).strict();

export interface NatModel {
  readonly id: string;
  readonly brand?: string;
  readonly model?: string;
  readonly stunType: (typeof STUN_TYPES)[number];
  readonly portRule: (typeof PORT_RULES)[number];
  readonly pks: boolean;
  readonly ips: boolean;
  /**
   * Issue 20: the port-mapping protocol this NAT answers, if any. Not in the population file's
   * groups (the paper measured none): drawn per NAT with the shares of `PortMappingShare`.
   */
  readonly portMapping?: PortMappingServer;
}

/** The share of NATs answering each port-mapping protocol (issue 20): an assumption, not a measurement. */
export interface PortMappingShare {
  readonly pcp: number;
  readonly natpmp: number;
  readonly upnp: number;
}

const BASE_PROFILE: Record<NatModel['stunType'], string> = {
  'full-cone': 'full-cone',
  'restricted-cone': 'restricted-cone',
  'port-restricted-cone': 'port-restricted-cone',
  symmetric: 'symmetric-seq1',
};

const ALLOCATION: Record<NatModel['portRule'], PortAllocation> = {
  '+1': { type: 'sequential', delta: 1 },
  '+2': { type: 'sequential', delta: 2 },
  random: { type: 'random' },
};

export function parsePopulation(text: string, source: string): NatModel[] {
  const { groups } = parseConfig(text, source, populationSchema);
  const models: NatModel[] = [];
  for (const group of groups) {
    for (let i = 0; i < group.count; i++) {
      models.push({
        id: `nat-${String(models.length + 1).padStart(3, '0')}`,
        brand: group.brand,
        model: group.model,
        stunType: group.stunType,
        portRule: group.portRule,
        pks: group.pks,
        ips: group.ips,
      });
    }
  }
  return models;
}

export function loadPopulation(path: string = DEFAULT_POPULATION_PATH): NatModel[] {
  return parsePopulation(readConfigFile(path, 'population file'), path);
}

/** The behaviour of one population model, built from the named base profile. */
export function modelBehaviour(model: NatModel, catalog: ProfileCatalog): NatBehaviour {
  const base = catalog.resolve(BASE_PROFILE[model.stunType]);
  return {
    ...base,
    allocation: ALLOCATION[model.portRule],
    pks: model.pks,
    ips: model.ips,
    portMapping: model.portMapping ? [model.portMapping] : [],
  };
}
