/** What the gateway commands print about a call and a NAT probe: one shape for text and JSON. */
import type { CallOutcome, GatewayInit } from '../gateway/gateway.ts';
import type { NatProbe } from '../traversal/probe.ts';

export function summarize(outcome: CallOutcome) {
  return {
    callId: outcome.callId,
    role: outcome.role,
    peer: outcome.peer,
    mode: outcome.mode,
    ok: outcome.ok,
    reason: outcome.reason,
    setupMs:
      outcome.confirmedAtMs === undefined ? null : Math.round(outcome.confirmedAtMs - outcome.startedAtMs),
    local: outcome.local && {
      publicEndpoint: outcome.local.publicEndpoint,
      portSource: outcome.local.portSource,
      nat: outcome.local.nat,
    },
    remote: outcome.remote && {
      publicEndpoint: outcome.remote.publicEndpoint,
      portSource: outcome.remote.portSource,
      nat: outcome.remote.nat,
    },
    // Issue 21: which path carries media: `direct`, `direct-tcp` or `relay` (null: none).
    path: finalPath(outcome),
    /** The confirmed pair: our socket's local endpoint and the peer's. */
    pair: outcome.path && {
      local: outcome.path.socket.local,
      remote: outcome.path.remote,
      rtcp: outcome.path.rtcp && { local: outcome.path.rtcp.socket.local, remote: outcome.path.rtcp.remote },
    },
    checksSent: outcome.checksSent,
    predictionAgeMs: outcome.predictionAgeMs === undefined ? null : Math.round(outcome.predictionAgeMs),
    drift: outcome.drift
      ? {
          atLeast: outcome.drift.atLeast,
          expected: Math.round(outcome.drift.expected * 10) / 10,
          ratePerSecond:
            outcome.drift.ratePerSecond === null ? null : Math.round(outcome.drift.ratePerSecond * 10) / 10,
          samples: outcome.drift.samples,
        }
      : null,
    encryption: outcome.encryption ?? (outcome.ok ? 'none' : null),
    dtlsMs: outcome.dtlsMs === undefined ? null : Math.round(outcome.dtlsMs),
    attempts: outcome.attempts ?? 1,
    route: outcome.route ?? (outcome.ok ? 'direct' : null),
    // Issue 23: `kernel`, `raw` or `turn` when a relay leg was set up (null without one).
    relayPath: outcome.relayPath ?? null,
    directReason: outcome.directReason,
  };
}

/**
 * Where media goes (issue 21), read when asked: at set-up the route it starts on; at the end of a
 * call that started on the relay and moved to a direct path later (a background retry) `direct`
 * or `direct-tcp`, and `relay` for one that fell back.
 */
export function finalPath(outcome: CallOutcome): 'direct' | 'direct-tcp' | 'relay' | null {
  if (!outcome.ok) return null;
  const routed = outcome.routed;
  if (!routed) return outcome.transport === 'tcp' ? 'direct-tcp' : 'direct';
  if (routed.route === 'relay') return 'relay';
  return routed.directTransport === 'tcp' ? 'direct-tcp' : 'direct';
}

/** The TURN server a call's relay leg used, and how it was reached: `{address, port, transport}`. */
export function relayServer(relay: GatewayInit['relay']) {
  return relay ? { ...relay.server, transport: relay.transport ?? 'udp' } : null;
}

/** Bytes and packets per route of a call, both directions, for the JSON result and the report. */
export function routeBytes(outcome: CallOutcome) {
  const c = outcome.routed?.counters;
  if (!c) return undefined;
  return {
    direct: {
      bytes: c.direct.bytesSent + c.direct.bytesReceived,
      packets: c.direct.packetsSent + c.direct.packetsReceived,
    },
    relay: {
      bytes: c.relay.bytesSent + c.relay.bytesReceived,
      packets: c.relay.packetsSent + c.relay.packetsReceived,
    },
    switches: outcome.routed!.switches,
  };
}

/** RFC 3489 names, for comparison with classic tools such as turnutils_natdiscovery. */
export function classicType(probe: NatProbe): string {
  if (probe.mapping !== 'endpoint-independent') return 'symmetric';
  if (probe.filtering === 'unknown') return 'cone (filtering unknown: the STUN server has one address)';
  return {
    'endpoint-independent': 'full cone',
    'address-dependent': 'restricted cone',
    'address-and-port-dependent': 'port restricted cone',
  }[probe.filtering];
}
