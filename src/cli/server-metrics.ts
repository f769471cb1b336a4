/** `sc2c server`'s /metrics: every signaling, STUN, relay and call-record counter, for Prometheus. */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { TurnServer } from '../relay/turn-server.ts';
import { emptyTurnCounters, type TurnCounters } from '../relay/turn-types.ts';
import type { SignalingCounters, SignalingServer } from '../signaling/server.ts';
import type { StunResponder } from '../traversal/stun-responder.ts';
import type { RecordIntake } from './record-intake.ts';
import { addCounters, type TurnShards } from './relay-shards.ts';

/** Prometheus name and help for each signaling counter: every refusal and drop is counted. */
const SIGNALING_COUNTERS: Record<keyof SignalingCounters, [string, string]> = {
  registrations: ['sc2c_sip_registrations_total', 'Successful REGISTERs.'],
  authFailures: [
    'sc2c_sip_auth_failures_total',
    'REGISTERs refused with 403 (wrong password or unknown user).',
  ],
  authThrottled: [
    'sc2c_sip_auth_throttled_total',
    'REGISTERs refused unchecked: too many failures from the source.',
  ],
  invites: ['sc2c_sip_invites_total', 'INVITEs received.'],
  notFound: ['sc2c_sip_not_found_total', 'INVITEs to users who are not registered (404).'],
  forbiddenCalls: ['sc2c_sip_forbidden_calls_total', "INVITEs refused by the callee's access list (403)."],
  duplicateCallIds: ['sc2c_sip_duplicate_call_ids_total', "INVITEs reusing another party's Call-ID (403)."],
  foreignRequests: [
    'sc2c_sip_foreign_requests_total',
    'In-dialog requests from a connection not party to the dialog.',
  ],
  foreignResponses: [
    'sc2c_sip_foreign_responses_total',
    'Responses from a connection that did not owe them, dropped.',
  ],
  syncs: ['sc2c_syncs_total', 'SC2C synchronization requests (paper step 17).'],
  syncsLimited: ['sc2c_syncs_limited_total', 'Sync requests refused by the per-dialog rate limit (503).'],
  pinsObserved: ['sc2c_pins_observed_total', "Pins read from this server's own STUN Bindings (issue 19)."],
  pinsUnresolved: [
    'sc2c_pins_unresolved_total',
    'Pins named by a STUN Binding that did not arrive in time or came from another address.',
  ],
  malformed: ['sc2c_sip_malformed_total', 'Malformed SIP messages (connection closed).'],
  refusedRequests: [
    'sc2c_sip_refused_requests_total',
    'Requests answered 400/416/420/483/501 before any processing.',
  ],
  connectionsRefused: [
    'sc2c_sip_connections_refused_total',
    'Connections closed on accept: total or per-source cap.',
  ],
  idleClosed: ['sc2c_sip_idle_closed_total', 'Connections closed for not registering in time.'],
  messageTimeouts: [
    'sc2c_sip_message_timeouts_total',
    'Connections closed for a message that never arrived whole.',
  ],
  dialogsRefused: ['sc2c_sip_dialogs_refused_total', 'INVITEs refused by the dialog bounds (486/503).'],
  dialogsExpired: [
    'sc2c_sip_dialogs_expired_total',
    'Dialogs dropped unanswered or after an unanswered BYE.',
  ],
  partiesLost: ['sc2c_sip_parties_lost_total', 'Call parties whose signaling connection dropped mid-call.'],
  forwardedCalls: [
    'sc2c_sip_forwarded_calls_total',
    'Calls forwarded to the node their callee is registered on (issue 24).',
  ],
  unreachable: [
    'sc2c_sip_unreachable_total',
    'Messages whose party was not reachable (lost, or restored and not back).',
  ],
  storeErrors: ['sc2c_store_errors_total', 'Failed writes to the shared store (issue 24).'],
};

/** The relay as /metrics and /allocations see it: this process's TURN server and its shards'. */
export interface RelayView {
  counters(): TurnCounters;
  allocations(): ReturnType<TurnServer['allocations']>;
}

export function relayView(
  turn: TurnServer | undefined,
  shards: TurnShards | undefined,
): RelayView | undefined {
  if (!turn) return undefined;
  if (!shards) return { counters: () => turn.counters, allocations: () => turn.allocations() };
  return {
    counters: () => addCounters(addCounters(emptyTurnCounters(), turn.counters), shards.counters()),
    allocations: () => [...turn.allocations(), ...shards.allocations()],
  };
}

export function metrics(
  server: SignalingServer,
  stun: StunResponder,
  turn?: RelayView,
  records?: RecordIntake,
): Registry {
  const registry = new Registry();
  // process_resident_memory_bytes, nodejs_heap_size_used_bytes, event-loop lag, open handles…
  collectDefaultMetrics({ register: registry });
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  };
  new Gauge({
    name: 'sc2c_registrations',
    help: 'Live SIP registrations.',
    registers: [registry],
    collect() {
      this.set(server.registrations().length);
    },
  });
  new Gauge({
    name: 'sc2c_calls',
    help: 'Calls the server is routing.',
    registers: [registry],
    collect() {
      this.set(server.calls().length);
    },
  });
  for (const [key, [name, help]] of Object.entries(SIGNALING_COUNTERS))
    counter(name, help, () => server.counters[key as keyof SignalingCounters]);
  new Gauge({
    name: 'sc2c_cluster_links',
    help: 'Links to other server nodes open now (issue 24).',
    registers: [registry],
    collect() {
      this.set(server.linkCount);
    },
  });
  new Gauge({
    name: 'sc2c_sip_connections',
    help: 'Open signaling connections, registered or not.',
    registers: [registry],
    collect() {
      this.set(server.connectionCount);
    },
  });
  counter('sc2c_stun_requests_total', 'STUN Binding requests answered.', () => stun.counters.requests);
  counter('sc2c_stun_malformed_total', 'Malformed STUN messages dropped.', () => stun.counters.malformed);
  counter(
    'sc2c_stun_ignored_total',
    'Non-STUN or non-request datagrams dropped on the STUN ports.',
    () => stun.counters.ignored,
  );
  counter(
    'sc2c_stun_rate_limited_total',
    'STUN Binding requests dropped by the per-source rate limit.',
    () => stun.counters.rateLimited,
  );
  if (turn) {
    new Gauge({
      name: 'sc2c_turn_allocations',
      help: 'Live TURN allocations.',
      registers: [registry],
      collect() {
        this.set(turn.allocations().length);
      },
    });
    // Read anew at each scrape: with relay shards, the sum of every process's counters.
    const t = (): TurnCounters => turn.counters();
    counter('sc2c_turn_requests_total', 'TURN requests received.', () => t().requests);
    counter('sc2c_turn_allocations_total', 'TURN allocations made.', () => t().allocations);
    counter(
      'sc2c_turn_redirected_total',
      'Allocates redirected to a relay shard (300 Try Alternate).',
      () => t().redirected,
    );
    counter('sc2c_turn_unauthorized_total', '401 challenges and refusals.', () => t().unauthorized);
    counter('sc2c_turn_stale_nonce_total', '438 Stale Nonce.', () => t().staleNonce);
    counter('sc2c_turn_forbidden_total', '403: peers in denied ranges.', () => t().forbidden);
    counter('sc2c_turn_quota_total', '486: per-user quota reached.', () => t().quotaExceeded);
    counter('sc2c_turn_malformed_total', 'Malformed TURN/ChannelData dropped.', () => t().malformed);
    counter('sc2c_turn_oversized_total', 'Oversized datagrams dropped.', () => t().oversized);
    counter(
      'sc2c_turn_rate_limited_total',
      'Unauthenticated requests dropped by the rate limit.',
      () => t().rateLimited,
    );
    counter(
      'sc2c_turn_unpermitted_total',
      'Relay data without a permission, dropped.',
      () => t().unpermitted,
    );
    counter('sc2c_turn_latches_total', 'Raw-relay latches accepted (issue 23).', () => t().latches);
    counter(
      'sc2c_turn_latches_refused_total',
      'Raw-relay latches refused: unsigned, or from a second address.',
      () => t().latchesRefused,
    );
    counter(
      'sc2c_turn_kernel_installs_total',
      'Allocations handed to the kernel fast path.',
      () => t().kernelInstalls,
    );
    counter(
      'sc2c_turn_kernel_failures_total',
      'Kernel fast path installs or reads that failed (userspace went on).',
      () => t().kernelFailures,
    );
    counter(
      'sc2c_turn_kernel_packets_total',
      'Packets the kernel forwarded for raw relays (read each second).',
      () => t().kernelPackets,
    );
    counter(
      'sc2c_turn_kernel_bytes_total',
      'UDP payload bytes the kernel forwarded for raw relays.',
      () => t().kernelBytes,
    );
    counter(
      'sc2c_turn_native_packets_total',
      'Packets the native data plane (sc2c-relayd) forwarded on bound channels (read each second).',
      () => t().nativePackets,
    );
    counter(
      'sc2c_turn_native_bytes_total',
      'Bytes the native data plane forwarded on bound channels.',
      () => t().nativeBytes,
    );
    counter(
      'sc2c_turn_native_dropped_total',
      'Datagrams sc2c-relayd dropped because the server did not read them fast enough (its 4 MiB queue was full).',
      () => t().nativeDroppedUp,
    );
    counter(
      'sc2c_turn_native_send_failures_total',
      'Datagrams sc2c-relayd could not send (a full socket buffer, no route).',
      () => t().nativeSendFailures,
    );
    counter(
      'sc2c_turn_tcp_connections_total',
      'TURN-over-TCP connections accepted.',
      () => t().tcpConnections,
    );
    counter(
      'sc2c_turn_tcp_idle_closed_total',
      'TURN-over-TCP connections closed for holding no allocation.',
      () => t().tcpIdleClosed,
    );
    counter(
      'sc2c_turn_allocate_in_flight_total',
      'Allocates dropped or refused while the 5-tuple was already allocating.',
      () => t().allocateInFlight,
    );
    counter(
      'sc2c_turn_backpressure_drops_total',
      'Relayed packets dropped: a TCP client was not reading.',
      () => t().backpressureDrops,
    );
    counter(
      'sc2c_turn_mismatch_total',
      '437/441: requests for an allocation that is not theirs.',
      () => t().mismatch,
    );
    counter(
      'sc2c_turn_tcp_refused_total',
      'TURN-over-TCP connections refused at capacity.',
      () => t().tcpRefused,
    );
    counter(
      'sc2c_turn_relayed_to_peers_bytes_total',
      'Bytes relayed client -> peer.',
      () => t().bytesToPeers,
    );
    counter(
      'sc2c_turn_relayed_to_clients_bytes_total',
      'Bytes relayed peer -> client.',
      () => t().bytesToClients,
    );
    counter(
      'sc2c_turn_relayed_to_peers_packets_total',
      'Packets relayed client -> peer.',
      () => t().packetsToPeers,
    );
    counter(
      'sc2c_turn_relayed_to_clients_packets_total',
      'Packets relayed peer -> client.',
      () => t().packetsToClients,
    );
  }
  if (records) {
    counter('sc2c_call_records_total', 'Call records stored (PUBLISH from gateways).', () => records.stored);
    counter('sc2c_call_records_refused_total', 'Call records refused (400).', () => records.refused);
    new Counter({
      name: 'sc2c_call_media_bytes_total',
      help: 'Media bytes (RTP/RTCP payload) in stored call records, by route, counted at the sender.',
      labelNames: ['route'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ route: 'direct' }, records.bytes.direct);
        this.inc({ route: 'relay' }, records.bytes.relay);
      },
    });
  }
  return registry;
}
