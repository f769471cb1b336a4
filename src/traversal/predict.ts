/**
 * Port prediction (paper §2.2): the public port the NAT will give the next new session. Pure.
 *
 * With an endpoint-independent mapping nothing needs predicting: the media socket's own STUN
 * answer is the port every peer will see. With a destination-dependent mapping and sequential
 * allocation, the media socket's first packet to the peer opens the next session: last + delta.
 * Random allocation cannot be predicted.
 */
import type { NatProbe } from './probe.ts';

export type PortPlan =
  | { readonly kind: 'observe' }
  | { readonly kind: 'predict'; readonly port: number }
  | { readonly kind: 'unpredictable'; readonly reason: string };

export function planPort(
  probe: Pick<NatProbe, 'mapping' | 'allocation' | 'delta'>,
  lastPort: number,
): PortPlan {
  if (probe.mapping === 'endpoint-independent') return { kind: 'observe' };
  if (probe.allocation === 'sequential' && probe.delta !== null) {
    const next = lastPort + probe.delta;
    return { kind: 'predict', port: next > 65535 ? next - 65535 + 1023 : next };
  }
  return {
    kind: 'unpredictable',
    reason: `the NAT maps per destination and allocates ports ${probe.allocation === 'random' ? 'at random' : 'by preservation'}: the next public port cannot be predicted`,
  };
}
