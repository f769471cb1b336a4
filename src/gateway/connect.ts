/**
 * How a gateway reaches the service (issue 24): the first signaling server that answers, the NAT
 * probe at start, and its settings as seen from the node it registered with.
 */
import type { Endpoint } from '../net/address.ts';
import { SignalingClient } from '../signaling/client.ts';
import { type NatProbe, probeNat, udpBlockedProbe } from '../traversal/probe.ts';
import { NoStunAnswerError } from '../traversal/stun-tests.ts';
import type { GatewayComponents, GatewayInit } from './types.ts';

/**
 * The NAT probe at start. With no STUN answer and a relay reached over TCP or TLS the gateway still
 * starts, relay-only (`udpBlocked`): a network that blocks UDP can carry calls no other way.
 */
export async function startProbe(
  components: GatewayComponents,
  init: GatewayInit,
  signal?: AbortSignal,
): Promise<NatProbe> {
  try {
    return await probeNat(components, { server: init.stunServer, rtoMs: init.stunRtoMs ?? 200, signal });
  } catch (error) {
    if (
      (init.relay?.transport ?? 'udp') === 'udp' ||
      signal?.aborted ||
      !(error instanceof NoStunAnswerError)
    )
      throw error;
    return udpBlockedProbe(components.clock.now());
  }
}

/**
 * The first server that answers, in order (issue 24: the configured node, then the others); the
 * first one's error when none does, so a single-server gateway fails as before.
 */
export async function connectAny(
  components: GatewayComponents,
  init: GatewayInit,
  signal?: AbortSignal,
): Promise<{ signaling: SignalingClient; index: number }> {
  const servers = [init.sip.server, ...(init.failover ?? [])];
  let first: unknown;
  for (const [index, server] of servers.entries()) {
    try {
      return {
        signaling: await SignalingClient.connect(components, { ...init.sip, server }, signal),
        index,
      };
    } catch (error) {
      first ??= error;
      if (signal?.aborted) break;
    }
  }
  throw first;
}

/**
 * `init` as a gateway registered with `node` sees it (issue 24): the STUN server and relay that
 * were on the first server's host move to `node`'s host, on the same ports; any others stay.
 */
export function onNode(init: GatewayInit, node: Endpoint): GatewayInit {
  const home = init.sip.server.address;
  if (node.address === home) return init;
  const moved = (e: Endpoint): Endpoint => (e.address === home ? { address: node.address, port: e.port } : e);
  return {
    ...init,
    stunServer: moved(init.stunServer),
    ...(init.relay ? { relay: { ...init.relay, server: moved(init.relay.server) } } : {}),
  };
}
