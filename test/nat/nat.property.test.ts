import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FILTERING_BEHAVIOURS, MAPPING_BEHAVIOURS, type PortAllocation } from '../../src/nat/behaviour.ts';
import { formatEndpoint } from '../../src/net/address.ts';
import { nat, PUBLIC, udp } from './helpers.ts';

const allocation = fc.constantFrom<PortAllocation>(
  { type: 'preserve-if-free' },
  { type: 'sequential', delta: 1 },
  { type: 'sequential', delta: 2 },
  { type: 'random' },
);

const config = fc.record({
  mapping: fc.constantFrom(...MAPPING_BEHAVIOURS),
  filtering: fc.constantFrom(...FILTERING_BEHAVIOURS),
  allocation,
  pks: fc.boolean(),
  ips: fc.boolean(),
});

// Small address and port pools so sessions collide and reuse mappings often.
const internal = fc
  .tuple(fc.integer({ min: 2, max: 4 }), fc.integer({ min: 5000, max: 5003 }))
  .map(([h, p]) => `10.0.1.${h}:${p}`);
const remote = fc
  .tuple(fc.integer({ min: 10, max: 11 }), fc.integer({ min: 3478, max: 3479 }))
  .map(([h, p]) => `198.18.0.${h}:${p}`);

/** A small port range so knocks and burns land on ports the allocator would otherwise pick. */
const PORT_RANGE = { min: 20_000, max: 20_063 };

type Op =
  | { kind: 'out'; src: string; dst: string; dtMs: number }
  | { kind: 'knock'; from: string; port: number; dtMs: number }
  | { kind: 'icmp'; dst: string; dtMs: number };

const op = fc.oneof(
  fc.record({
    kind: fc.constant('out' as const),
    src: internal,
    dst: remote,
    dtMs: fc.integer({ min: 0, max: 500 }),
  }),
  fc.record({
    kind: fc.constant('knock' as const),
    from: remote,
    port: fc.integer({ min: PORT_RANGE.min, max: PORT_RANGE.max }),
    dtMs: fc.integer({ min: 0, max: 500 }),
  }),
  fc.record({ kind: fc.constant('icmp' as const), dst: remote, dtMs: fc.integer({ min: 0, max: 500 }) }),
);

describe('NAT model properties', () => {
  it('inbound translation inverts outbound translation', () => {
    fc.assert(
      fc.property(
        config,
        fc.array(fc.tuple(internal, remote), { minLength: 1, maxLength: 30 }),
        (cfg, flows) => {
          const n = nat({ ...cfg, pks: false, ips: false }, 20_000);
          let now = 0;
          for (const [src, dst] of flows) {
            now += 7;
            const result = n.outbound(udp(src, dst), now);
            if (result.action !== 'forward') continue;
            const back = n.inbound({ proto: 'udp', src: udp(src, dst).dst, dst: result.src }, now);
            expect(back).toEqual({ action: 'forward', dst: udp(src, dst).src });
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('no two internal endpoints share a public endpoint; EIM keeps one per internal endpoint', () => {
    fc.assert(
      fc.property(config, fc.array(op, { maxLength: 60 }), (cfg, ops) => {
        const n = nat({ ...cfg, portRange: PORT_RANGE, mappingLifetimeMs: 5000 }, PORT_RANGE.min);
        let now = 0;
        for (const o of ops) {
          now += o.dtMs;
          apply(n, o, now);
          const owners = new Map<string, string>();
          const byInternal = new Map<string, Set<string>>();
          for (const m of n.mappings(now)) {
            const ext = formatEndpoint(m.external);
            const int = formatEndpoint(m.internal);
            const owner = owners.get(ext);
            expect(owner === undefined || owner === int).toBe(true);
            owners.set(ext, int);
            if (!byInternal.has(int)) byInternal.set(int, new Set());
            byInternal.get(int)!.add(ext);
          }
          if (cfg.mapping === 'endpoint-independent') {
            for (const externals of byInternal.values()) expect(externals.size).toBe(1);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a knocked or burned port is never allocated while it is blocked', () => {
    fc.assert(
      fc.property(config, fc.array(op, { maxLength: 80 }), (cfg, ops) => {
        const blockMs = 2000;
        const n = nat(
          { ...cfg, portRange: PORT_RANGE, pksBlockMs: blockMs, ipsBurnMs: blockMs, mappingLifetimeMs: 3000 },
          PORT_RANGE.min,
        );
        // Shadow model: when each port became blocked, judged only from what the NAT reported.
        const blockedUntil = new Map<number, number>();
        let now = 0;
        for (const o of ops) {
          now += o.dtMs;
          if (o.kind === 'out') {
            const before = n.mappings(now).length;
            const result = n.outbound(udp(o.src, o.dst), now);
            if (result.action === 'forward' && result.created) {
              expect((blockedUntil.get(result.src.port) ?? 0) <= now).toBe(true);
            }
            expect(n.mappings(now).length).toBeGreaterThanOrEqual(before);
          } else if (o.kind === 'knock') {
            const result = n.inbound(udp(o.from, `${PUBLIC}:${o.port}`), now);
            if (result.action === 'drop' && result.knocked) blockedUntil.set(o.port, now + blockMs);
          } else {
            const port = apply(n, o, now);
            if (port !== undefined) blockedUntil.set(port, now + blockMs);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

/** Applies an op; for 'icmp', sends an error for the newest mapping to `dst` and returns the burned port. */
function apply(n: ReturnType<typeof nat>, o: Op, now: number): number | undefined {
  if (o.kind === 'out') n.outbound(udp(o.src, o.dst), now);
  else if (o.kind === 'knock') n.inbound(udp(o.from, `${PUBLIC}:${o.port}`), now);
  else {
    const target = n.mappings(now).at(-1);
    if (!target) return undefined;
    const result = n.inboundIcmp({ proto: 'udp', src: target.external, dst: udp(o.dst, o.dst).src }, now);
    if (result.action === 'forward' && result.closedMapping) return target.external.port;
  }
  return undefined;
}
