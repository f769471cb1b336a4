/**
 * TCP port prediction (issue 21): the same reading of the NAT's allocation as for UDP (paper steps
 * 5-8), over STUN Binding on TCP. A NAT that keeps our local port keeps it for TCP too; a
 * sequential one hands the next TCP session the last one plus its step (from the UDP counter or a
 * TCP counter of its own: sampling over TCP reads whichever TCP sessions use).
 */
import type { Endpoint } from '../net/address.ts';
import type { Network } from '../net/types.ts';
import { type TcpBindingComponents, tcpBinding } from './stun-tcp.ts';

export type TcpAllocation = 'preserving' | 'sequential' | 'random';

export interface TcpProbe {
  readonly publicAddress: string;
  readonly allocation: TcpAllocation;
  /** The step between consecutive TCP sessions' public ports (sequential), else null. */
  readonly delta: number | null;
  /** The newest sample's public port. */
  readonly lastPort: number;
  readonly measuredAtMs: number;
}

/** Steps above this are taken for random allocation: the paper's sequential NATs step by 1 or 2. */
export const MAX_TCP_DELTA = 16;

/** Reads the allocation from samples taken one after another: `{local, mapped}` ports in order. */
export function classifyTcpSamples(samples: readonly { readonly local: number; readonly mapped: number }[]): {
  readonly allocation: TcpAllocation;
  readonly delta: number | null;
} {
  if (samples.length < 2) throw new RangeError('TCP allocation needs at least two samples');
  if (samples.every((s) => s.local === s.mapped)) return { allocation: 'preserving', delta: null };
  const steps = samples.slice(1).map((s, i) => (s.mapped - samples[i]!.mapped + 65536) % 65536);
  const delta = steps[0]!;
  if (delta >= 1 && delta <= MAX_TCP_DELTA && steps.every((d) => d === delta))
    return { allocation: 'sequential', delta };
  return { allocation: 'random', delta: null };
}

/**
 * `samples` Bindings over fresh TCP connections, one after another, from ephemeral ports. Undefined
 * when the server does not answer over TCP, or the answers disagree on our address.
 */
export async function probeTcp(
  c: TcpBindingComponents,
  init: {
    readonly server: Endpoint;
    readonly samples?: number;
    readonly timeoutMs?: number;
    readonly signal?: AbortSignal;
  },
): Promise<TcpProbe | undefined> {
  const taken: { local: number; mapped: number }[] = [];
  let publicAddress: string | undefined;
  for (let i = 0; i < (init.samples ?? 3); i++) {
    const result = await tcpBinding(c, {
      server: init.server,
      timeoutMs: init.timeoutMs,
      signal: init.signal,
    });
    if (!result) return undefined;
    if (publicAddress !== undefined && publicAddress !== result.mapped.address) return undefined;
    publicAddress = result.mapped.address;
    taken.push({ local: result.local.port, mapped: result.mapped.port });
  }
  const { allocation, delta } = classifyTcpSamples(taken);
  return {
    publicAddress: publicAddress!,
    allocation,
    delta,
    lastPort: taken.at(-1)!.mapped,
    measuredAtMs: c.clock.now(),
  };
}

/** Where our punch connects from, and the public endpoint we tell the peer it will come from. */
export interface TcpCandidate {
  readonly localPort: number;
  readonly endpoint: Endpoint;
  /** `preserved`: our NAT keeps the local port; `predicted`: the sample's port plus the step. */
  readonly source: 'preserved' | 'predicted';
  /** When the sample behind a prediction was taken. */
  readonly sampledAtMs?: number;
}

/**
 * A free local TCP port: the stack picks one for a listener that closes at once. The punch binds
 * it again with SO_REUSEADDR when the go comes.
 */
export async function freeTcpPort(network: Network): Promise<number> {
  const server = await network.listen({ port: 0 });
  const port = server.local.port;
  server.close();
  return port;
}

/** The TCP candidate for one call, or undefined when our NAT allocates TCP ports at random. */
export async function prepareTcpCandidate(
  c: TcpBindingComponents,
  probe: TcpProbe,
  init: { readonly server: Endpoint; readonly timeoutMs?: number },
): Promise<TcpCandidate | undefined> {
  if (probe.allocation === 'random') return undefined;
  const localPort = await freeTcpPort(c.network);
  if (probe.allocation === 'preserving')
    return { localPort, endpoint: { address: probe.publicAddress, port: localPort }, source: 'preserved' };
  // Steps 5-8 right before the call: the newest port; our punch's SYN takes the next.
  const sampledAtMs = c.clock.now();
  const sample = await tcpBinding(c, { server: init.server, timeoutMs: init.timeoutMs });
  if (!sample) return undefined;
  const port = ((sample.mapped.port + probe.delta! - 1) % 65535) + 1;
  return { localPort, endpoint: { address: sample.mapped.address, port }, source: 'predicted', sampledAtMs };
}
