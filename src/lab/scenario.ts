/**
 * Lab scenario files (`config/lab/*.yaml`): a public server with two addresses, NATed LANs with
 * hosts, optional multi-level NAT, and delay/jitter/loss per link. Public addresses come from
 * 198.18.0.0/15 (RFC 2544 benchmarking space); private ones from 10.0.0.0/8, and only inside the
 * lab's own namespaces.
 */
import { z } from 'zod';
import { cidrContains, intToIpv4, isIpv4, parseCidr } from '../net/address.ts';
import type { LinkInit } from '../net/virtual/link.ts';
import { ConfigError, parseConfig, readConfigFile } from '../util/config-file.ts';

export const PUBLIC_RANGE = '198.18.0.0/15';
export const PRIVATE_RANGE = '10.0.0.0/8';
/**
 * Kernel NATs: nftables masquerade (a port-restricted cone preserving ports), masquerade
 * random-fully (symmetric, random ports), and the latter with Debian's miniupnpd mapping ports on
 * request (UPnP IGD, NAT-PMP, PCP; issue 20, lab/miniupnpd.ts).
 */
export const KERNEL_NATS = ['masquerade', 'masquerade-random-fully', 'miniupnpd'] as const;
export type KernelNat = (typeof KERNEL_NATS)[number];

const publicRange = parseCidr(PUBLIC_RANGE);
const privateRange = parseCidr(PRIVATE_RANGE);

const name = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,11}$/, 'names are lower-case, start with a letter, at most 12 characters');
const ipv4 = z.string().refine(isIpv4, { message: 'not an IPv4 address' });
const publicAddress = ipv4.refine((a) => isIpv4(a) && cidrContains(publicRange, a), {
  message: `public addresses must be inside ${PUBLIC_RANGE}`,
});
const privateAddress = ipv4.refine((a) => isIpv4(a) && cidrContains(privateRange, a), {
  message: `private addresses must be inside ${PRIVATE_RANGE}`,
});

const direction = z
  .object({
    latencyMs: z.number().min(0).max(10_000).optional(),
    jitterMs: z.number().min(0).max(10_000).optional(),
    loss: z.number().min(0).max(1).optional(),
    /** Flip one payload bit of every Nth RTP-looking datagram (an on-path attacker, issue 17). */
    corruptEvery: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();
const link = direction.extend({ up: direction.optional(), down: direction.optional() }).strict();

const host = z.object({ name, address: privateAddress, link: link.optional() }).strict();

const nat = z
  .object({
    name,
    /** A NAT profile spec (userspace NAT model), e.g. symmetric-seq1+pks. */
    profile: z.string().optional(),
    /** Or the kernel's own NAT in a namespace, through nftables. */
    kernel: z.enum(KERNEL_NATS).optional(),
    publicAddress: ipv4,
    lan: z.string().refine(
      (c) => {
        try {
          const cidr = parseCidr(c);
          return (
            cidr.prefixLength >= 8 && cidr.prefixLength <= 30 && cidrContains(privateRange, c.split('/')[0]!)
          );
        } catch {
          return false;
        }
      },
      { message: `lan must be a prefix inside ${PRIVATE_RANGE}, /8 to /30, e.g. 10.0.1.0/24` },
    ),
    /** The NAT this one sits behind (multi-level NAT); default the public internet. */
    upstream: name.optional(),
    link: link.optional(),
    hosts: z.array(host).min(1),
  })
  .strict()
  .refine((n) => (n.profile === undefined) !== (n.kernel === undefined), {
    message: "give exactly one of 'profile' (userspace NAT model) or 'kernel' (nftables)",
  });

const publicHost = z.object({ name, address: publicAddress, link: link.optional() }).strict();

const step = z
  .object({
    host: name,
    command: z.array(z.string()).min(1),
    /** Leave it running (a server) while later steps run; it is stopped at the end. */
    background: z.boolean().default(false),
  })
  .strict();

export const scenarioSchema = z
  .object({
    description: z.string().optional(),
    server: z
      .object({
        addresses: z
          .array(publicAddress)
          .length(2, 'the server needs exactly two public addresses (RFC 5780 tests)'),
        link: link.optional(),
      })
      .strict(),
    nats: z.array(nat).default([]),
    hosts: z.array(publicHost).default([]),
    run: z.array(step).default([]),
  })
  .strict();

export type Scenario = z.infer<typeof scenarioSchema>;
export type NatSpec = Scenario['nats'][number];
export type LinkSpec = z.infer<typeof link>;

export function toLinkInit(spec: LinkSpec | undefined): LinkInit {
  return spec ?? {};
}

/** Cross-field rules zod cannot express per field. Throws ConfigError naming the field. */
function checkTopology(scenario: Scenario, source: string): void {
  const fail = (path: string, message: string): never => {
    throw new ConfigError(`${source} is not valid:\n  ${path}: ${message}`);
  };
  const names = new Set<string>(['server', 'internet', 'lab-stun']);
  // The internet router's own address and the lab's STUN responder for miniupnpd (lab/miniupnpd.ts).
  const addresses = new Set<string>(['198.18.255.254', '198.19.255.1', '198.19.255.2']);
  scenario.server.addresses.forEach((a, i) => {
    if (addresses.has(a)) fail(`server.addresses.${i}`, `address ${a} is reserved by the lab`);
    addresses.add(a);
  });
  const claim = (n: string, path: string): void => {
    if (names.has(n)) fail(path, `name '${n}' is used twice (or is reserved)`);
    names.add(n);
  };
  const own = (a: string, path: string): void => {
    if (addresses.has(a)) fail(path, `address ${a} is used twice (or is reserved by the lab)`);
    addresses.add(a);
  };
  scenario.hosts.forEach((h, i) => {
    claim(h.name, `hosts.${i}.name`);
    own(h.address, `hosts.${i}.address`);
  });
  const byName = new Map(scenario.nats.map((n) => [n.name, n]));
  scenario.nats.forEach((n, i) => {
    claim(n.name, `nats.${i}.name`);
    const lan = parseCidr(n.lan);
    own(n.publicAddress, `nats.${i}.publicAddress`);
    if (n.upstream) {
      const up = byName.get(n.upstream);
      if (!up) fail(`nats.${i}.upstream`, `no NAT named '${n.upstream}'`);
      if (!cidrContains(parseCidr(up!.lan), n.publicAddress)) {
        fail(`nats.${i}.publicAddress`, `behind '${n.upstream}' it must be inside that NAT's lan ${up!.lan}`);
      }
      if (n.kernel) fail(`nats.${i}.kernel`, 'a kernel NAT must face the public internet (no upstream)');
    } else if (!cidrContains(publicRange, n.publicAddress)) {
      fail(`nats.${i}.publicAddress`, `public addresses must be inside ${PUBLIC_RANGE}`);
    }
    n.hosts.forEach((h, j) => {
      claim(h.name, `nats.${i}.hosts.${j}.name`);
      own(h.address, `nats.${i}.hosts.${j}.address`);
      if (!cidrContains(lan, h.address))
        fail(`nats.${i}.hosts.${j}.address`, `${h.address} is not inside lan ${n.lan}`);
    });
  });
  // Upstream chains must end at the internet.
  for (const n of scenario.nats) {
    const seen = new Set<string>();
    for (let cur: NatSpec | undefined = n; cur?.upstream; cur = byName.get(cur.upstream)) {
      if (seen.has(cur.name)) fail('nats', `upstream chain through '${n.name}' is a loop`);
      seen.add(cur.name);
    }
  }
  const hostNames = new Set([
    'server',
    ...scenario.hosts.map((h) => h.name),
    ...scenario.nats.flatMap((n) => n.hosts.map((h) => h.name)),
  ]);
  scenario.run.forEach((s, i) => {
    if (!hostNames.has(s.host)) fail(`run.${i}.host`, `no host named '${s.host}'`);
  });
}

export function parseScenario(text: string, source: string): Scenario {
  const scenario = parseConfig(text, source, scenarioSchema);
  checkTopology(scenario, source);
  return scenario;
}

export function loadScenario(path: string): Scenario {
  return parseScenario(readConfigFile(path, 'lab scenario'), path);
}

/** The NAT's own address on its LAN: the first address of the prefix (x.x.x.1 for a /24). */
export function natInsideAddress(nat: NatSpec): string {
  const { base } = parseCidr(nat.lan);
  return intToIpv4(base + 1);
}

/** Upstream NATs before the NATs behind them. */
export function natsInBuildOrder(scenario: Scenario): NatSpec[] {
  const done = new Set<string>();
  const order: NatSpec[] = [];
  const byName = new Map(scenario.nats.map((n) => [n.name, n]));
  const visit = (n: NatSpec): void => {
    if (done.has(n.name)) return;
    if (n.upstream) visit(byName.get(n.upstream)!);
    done.add(n.name);
    order.push(n);
  };
  scenario.nats.forEach(visit);
  return order;
}
