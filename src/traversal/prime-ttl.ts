/**
 * Issue 21: the TTL a priming packet needs (seed 002: it must cross our own NAT and expire before
 * the peer's). The smallest TTL that gets past our NAT is read from the NAT's own port counter:
 * behind a NAT that allocates in sequence with a known step, a packet from a fresh socket opens a
 * mapping (and takes a port) only if it reached the NAT. So between two STUN samples, a packet
 * with TTL t moves the counter by two steps when t crosses the NAT and by one when it died on our
 * side. A NAT that allocates at random (or keeps ports) cannot be read this way. A router on our LAN between us and the NAT makes the answer 3 or more; directly behind the
 * NAT it is 2 (a router drops a packet whose TTL it would take to 0 before NAT sees it).
 */
import type { Endpoint } from '../net/address.ts';
import { freshPort } from './probe.ts';
import type { StunTestsComponents } from './stun-tests.ts';

/** TTLs tried; a NAT further than this many hops is not worth priming past. */
export const MAX_PRIME_TTL = 8;

export interface PrimeTtlInit {
  readonly server: Endpoint;
  /** Our NAT's allocation step (the probe's `delta`). */
  readonly delta: number;
  readonly rtoMs?: number;
  readonly maxTtl?: number;
  /** Samples disturbed by other traffic (a step neither 1 nor 2 deltas) are retried this often per TTL. */
  readonly retries?: number;
}

export type PrimeTtlResult =
  | { readonly ttl: number; readonly samples: number }
  | { readonly ttl: null; readonly reason: string; readonly samples: number };

export async function findPrimeTtl(c: StunTestsComponents, init: PrimeTtlInit): Promise<PrimeTtlResult> {
  const maxTtl = Math.min(init.maxTtl ?? MAX_PRIME_TTL, 64);
  const sample = () => freshPort(c, { server: init.server, rtoMs: init.rtoMs, attempts: 3 });
  const step = (from: number, to: number): number => (to - from + 65536) % 65536;
  let samples = 0;
  for (let ttl = 1; ttl <= maxTtl; ttl++) {
    for (let attempt = 0; attempt <= (init.retries ?? 2); attempt++) {
      const before = await sample();
      const socket = await c.network.bindUdp();
      try {
        // A destination no earlier packet of ours went to: the server's address, a port per try.
        const to = { address: init.server.address, port: 40_000 + ttl * 16 + attempt };
        await socket.sendWithTtl(new Uint8Array(4), to, ttl);
      } finally {
        socket.close();
      }
      const after = await sample();
      samples += 2;
      const moved = step(before, after);
      if (moved === 2 * init.delta) return { ttl, samples };
      if (moved === init.delta) break; // died before our NAT: try one more hop
      // Another session took ports meanwhile: sample this TTL again.
    }
  }
  return {
    ttl: null,
    reason: `no TTL up to ${maxTtl} moved our NAT's counter as expected (it does not allocate in sequence, or other traffic kept moving it)`,
    samples,
  };
}
