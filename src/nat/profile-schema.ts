/** zod schemas for NAT profile files; every error names the field at fault and what it allows. */
import { z } from 'zod';
import {
  FILTERING_BEHAVIOURS,
  MAPPING_BEHAVIOURS,
  PORT_MAPPING_SERVERS,
  TCP_COUNTERS,
  UNSOLICITED_REPLIES,
  UNSOLICITED_TCP_REPLIES,
} from './behaviour.ts';

const port = z.number().int().min(1).max(65535);

export const allocationSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('preserve-if-free') }).strict(),
  z.object({ type: z.literal('sequential'), delta: z.number().int().min(1).max(1000) }).strict(),
  z.object({ type: z.literal('random') }).strict(),
]);

const nonNegativeMs = z.number().int().min(0);

/** Every field optional: used for defaults, profiles and modifiers alike. */
export const partialBehaviourSchema = z
  .object({
    mapping: z.enum(MAPPING_BEHAVIOURS),
    filtering: z.enum(FILTERING_BEHAVIOURS),
    allocation: allocationSchema,
    portRange: z
      .object({ min: port, max: port })
      .strict()
      .refine((r) => r.min <= r.max, { message: 'portRange.min must not exceed portRange.max' }),
    mappingLifetimeMs: nonNegativeMs,
    tcpMappingLifetimeMs: nonNegativeMs,
    refreshOnInbound: z.boolean(),
    hairpin: z.boolean(),
    unsolicitedReply: z.enum(UNSOLICITED_REPLIES),
    unsolicitedTcpReply: z.enum(UNSOLICITED_TCP_REPLIES),
    tcpCounter: z.enum(TCP_COUNTERS),
    pks: z.boolean(),
    pksBlockMs: nonNegativeMs,
    ips: z.boolean(),
    ipsBurnMs: nonNegativeMs,
    portMapping: z.array(z.enum(PORT_MAPPING_SERVERS)).max(PORT_MAPPING_SERVERS.length),
  })
  .partial()
  .strict();

export const fullBehaviourSchema = partialBehaviourSchema.required();

export const profileFileSchema = z
  .object({
    defaults: partialBehaviourSchema,
    profiles: z.record(
      z.string().regex(/^[a-z0-9-]+$/, 'profile names are lower-case kebab-case'),
      partialBehaviourSchema,
    ),
    modifiers: z.record(z.string().regex(/^[a-z0-9-]+$/), partialBehaviourSchema).default({}),
  })
  .strict();

export type ProfileFile = z.infer<typeof profileFileSchema>;
