/** `sc2c server --config config/server.yaml`: signaling, STUN and the admin HTTP API on real sockets. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { Command } from 'commander';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { cidrContains, parseCidr } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import {
  type CallRecord,
  CallRecordStore,
  parseCallRecord,
  savingsOverTime,
  summarizeCalls,
} from '../relay/call-records.ts';
import { NftRelayOffload, OffloadUnavailable } from '../relay/nft-offload.ts';
import { RELAY_SOCKET_BUFFER_BYTES, TurnServer } from '../relay/turn-server.ts';
import { addCounters, TurnShards } from '../relay/turn-shards.ts';
import { emptyTurnCounters, type TurnCounters } from '../relay/turn-types.ts';
import { passwordsOf } from '../signaling/accounts.ts';
import { CAMERAS_EVENT, REPORT_EVENT } from '../signaling/presence.ts';
import { type SignalingCounters, SignalingServer } from '../signaling/server.ts';
import { RecentBindings } from '../traversal/recent-bindings.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { StunTcpResponder } from '../traversal/stun-tcp.ts';
import { UsageError } from '../util/usage-error.ts';
import { adminApp } from '../web/admin.ts';
import { loadServerConfig, placeholderSecrets } from './configs.ts';
import { listenProblem, parseInteger } from './errors.ts';
import { createLog, LOG_LEVELS, parseLogLevel } from './log.ts';
import { stopRequested } from './shutdown.ts';

/** The lab's "public internet" (RFC 2544's benchmarking range, never routed on the real one). */
const LAB_RANGE = parseCidr('198.18.0.0/15');

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
};

/** This process's open-file limit (soft), from /proc; Infinity when unlimited or unreadable. */
function openFileLimit(): number {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line && line[1] !== 'unlimited' ? Number(line[1]) : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** The relay as /metrics and /allocations see it: this process's TURN server and its shards'. */
interface RelayView {
  counters(): TurnCounters;
  allocations(): ReturnType<TurnServer['allocations']>;
}

function relayView(turn: TurnServer | undefined, shards: TurnShards | undefined): RelayView | undefined {
  if (!turn) return undefined;
  if (!shards) return { counters: () => turn.counters, allocations: () => turn.allocations() };
  return {
    counters: () => addCounters(addCounters(emptyTurnCounters(), turn.counters), shards.counters()),
    allocations: () => [...turn.allocations(), ...shards.allocations()],
  };
}

function metrics(
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
      'Bytes the kernel forwarded for raw relays.',
      () => t().kernelBytes,
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

/** Takes call records from gateways: validated, the user checked, stored (fsynced) before the 200. */
class RecordIntake {
  stored = 0;
  refused = 0;
  readonly bytes = { direct: 0, relay: 0 };

  constructor(
    private readonly store: CallRecordStore,
    private readonly log: (line: string, level?: 'info' | 'warn', fields?: Record<string, unknown>) => void,
  ) {}

  async take(body: string, user: string): Promise<void> {
    let record: CallRecord;
    try {
      record = parseCallRecord(JSON.parse(body));
      if (record.user !== user) throw new Error(`record for user '${record.user}' published by '${user}'`);
    } catch (error) {
      this.refused++;
      throw error;
    }
    await this.store.appendAsync(record);
    this.stored++;
    const bytes = (route: 'direct' | 'relay') => record.sent[route].bytes + record.received[route].bytes;
    this.log(
      `call ${record.callId} record from ${user} (${record.role}, peer ${record.peer}): ${record.ok ? `route ${record.route}` : `failed: ${record.reason ?? 'unknown'}`}, ${bytes('direct')} bytes direct, ${bytes('relay')} relayed`,
      'info',
      {
        event: 'call-record',
        callId: record.callId,
        user,
        peer: record.peer,
        ok: record.ok,
        route: record.route,
        directBytes: bytes('direct'),
        relayBytes: bytes('relay'),
      },
    );
    this.bytes.direct += record.sent.direct.bytes;
    this.bytes.relay += record.sent.relay.bytes;
    this.#cache = undefined;
  }

  #cache?: { atMs: number; records: CallRecord[] };

  /**
   * Issue 22: `sc2c report`'s figures over the calls `user` took part in (`x-sc2c-report`), with
   * the saved ratio over time and calls by route, for the console's charts. The file is read at
   * most once per 5 s, however often consoles ask.
   */
  reportFor(user: string) {
    const now = Date.now();
    if (!this.#cache || now - this.#cache.atMs > 5000)
      this.#cache = { atMs: now, records: this.store.read().records };
    const mine = this.#cache.records.filter((r) => r.user === user || r.peer === user);
    const report = summarizeCalls(mine);
    const failed = new Set(mine.filter((r) => !r.ok).map((r) => r.callId));
    for (const r of mine) if (r.ok) failed.delete(r.callId);
    return {
      user,
      ...report,
      byRoute: {
        direct: report.total.calls - report.total.relayedCalls - failed.size,
        relay: report.total.relayedCalls,
        failed: failed.size,
      },
      series: savingsOverTime(mine),
    };
  }
}

/**
 * Refuses the shipped placeholder secrets outside the lab, and an admin API reachable from other
 * hosts without a token (issue 16). The lab is the server whose STUN address is in 198.18.0.0/15.
 */
function checkSecrets(
  config: ReturnType<typeof loadServerConfig>,
  path: string,
  turnSecret: string | undefined,
  adminToken: string | undefined,
  log: (line: string) => void,
): void {
  const placeholders = placeholderSecrets(config, turnSecret);
  if (placeholders.length > 0) {
    if (!cidrContains(LAB_RANGE, config.stun.primary.address))
      throw new UsageError(
        `${path} still has the shipped placeholder for ${placeholders.join(', ')}; outside the lab (198.18.0.0/15) set your own (sc2c init writes random ones)`,
      );
    log(`lab placeholders in use (${placeholders.join(', ')}): fine in the lab, refused anywhere else`);
  }
  const admin = config.admin?.listen;
  if (admin && !adminToken && !cidrContains(parseCidr('127.0.0.0/8'), admin.address))
    throw new UsageError(
      `the admin API would listen on ${admin.address} without a token; set admin.token in ${path} or SC2C_ADMIN_TOKEN, or listen on 127.0.0.1`,
    );
}

export function registerServer(program: Command): void {
  program
    .command('server')
    .description(
      'run the SIP signaling server (registrar, call routing, SC2C coordinator), the RFC 5780 STUN server and the admin HTTP API',
    )
    .option('--config <file>', 'server config', 'config/server.yaml')
    .option('--log-json', 'log one JSON object per line (level, time, msg and fields)')
    .option('--log-level <level>', `lowest level logged: ${LOG_LEVELS.join(', ')}`, 'info')
    .option(
      '--relay-shards <n>',
      "relay UDP allocations in this many shard processes (overrides the config's turn.shards; 1 relays in this process)",
      parseInteger('--relay-shards', 1, 16),
    )
    .action(
      async (options: { config: string; logJson?: boolean; logLevel: string; relayShards?: number }) => {
        const logger = createLog({ json: options.logJson, level: parseLogLevel(options.logLevel), fd: 2 });
        const loaded = loadServerConfig(options.config);
        if (options.relayShards !== undefined && !loaded.turn)
          throw new UsageError(`--relay-shards: ${options.config} runs no TURN relay (no turn: section)`);
        const config =
          options.relayShards !== undefined && loaded.turn
            ? { ...loaded, turn: { ...loaded.turn, shards: options.relayShards } }
            : loaded;
        const network = new NodeNetwork();
        const clock = new SystemClock();
        const log = (line: string, level: 'info' | 'warn' = 'info', fields?: Record<string, unknown>): void =>
          logger[level](line, fields);
        const turnSecret = config.turn && (process.env.SC2C_TURN_SECRET ?? config.turn.secret);
        const adminToken = process.env.SC2C_ADMIN_TOKEN ?? config.admin?.token;
        checkSecrets(config, options.config, turnSecret, adminToken, log);
        const files = openFileLimit();
        if (config.sip.maxConnections + 256 > files)
          log(
            `sip.maxConnections is ${config.sip.maxConnections} but this process may open ${files} files: connections beyond about ${Math.max(0, files - 256)} will fail to be accepted (raise ulimit -n)`,
            'warn',
          );
        // Whatever opened before a later listen fails is closed, so the error exits the process.
        const opened: (() => void)[] = [];
        try {
          let stun: StunResponder;
          try {
            stun = await StunResponder.start(network, {
              primary: config.stun.primary,
              alternate: config.stun.alternate,
              perSourcePerSecond: config.stun.perSourcePerSecond,
              now: () => clock.now(),
              software: 'sc2c-gateway',
              // The primary socket carries TURN too: every client's relayed media arrives on it.
              receiveBufferBytes: config.turn ? RELAY_SOCKET_BUFFER_BYTES : undefined,
            });
            opened.push(() => stun.close());
          } catch (error) {
            const { primary, alternate } = config.stun;
            const where =
              primary.address === alternate.address
                ? `${primary.address} ports ${primary.port} and ${alternate.port}`
                : `${primary.address} and ${alternate.address}`;
            throw new UsageError(
              `cannot listen for STUN on ${where} (${listenProblem(error)}): the address must be on this host and the ports free; set stun.primary (and stun.alternate, or leave it out for one address) in ${options.config}, or in the lab run it in the server host (sc2c lab exec server -- npx sc2c server)`,
            );
          }
          let turn: TurnServer | undefined;
          let shards: TurnShards | undefined;
          let kernel: string | undefined;
          if (config.turn) {
            const t = config.turn;
            const serverInit = {
              relayAddress: t.relayAddress ?? config.stun.primary.address,
              realm: t.realm ?? config.sip.realm,
              users: passwordsOf(config.users),
              secret: turnSecret,
              maxCredentialTtlS: t.credentialTtlS,
              userQuota: t.userQuota,
              capacity: t.capacity,
              perSourceQuota: t.perSourceQuota,
              unauthenticatedPerSecond: t.unauthenticatedPerSecond,
              deniedPeers: t.deniedPeers,
              allowedPeers: t.allowedPeers,
              software: 'sc2c-gateway',
            };
            if (t.shards > 1) {
              const firstPort = t.shardPort ?? config.stun.primary.port + 100;
              try {
                shards = await TurnShards.start({
                  count: t.shards,
                  address: config.stun.primary.address,
                  firstPort,
                  // Each shard holds its share of the capacity.
                  server: { ...serverInit, capacity: Math.ceil(t.capacity / t.shards) },
                  kernelForwarding: t.kernelForwarding,
                  log,
                });
              } catch (error) {
                throw new UsageError(
                  `cannot start ${t.shards} relay shards on ${config.stun.primary.address} ports ${firstPort}-${firstPort + t.shards - 1}: ${(error as Error).message} (turn.shards and turn.shardPort in ${options.config}, or --relay-shards)`,
                );
              }
              const running = shards;
              opened.push(() => running.close());
            }
            let offload: NftRelayOffload | undefined;
            // With shards, UDP allocations (the only ones the kernel path serves) are made there.
            if (t.kernelForwarding !== 'off' && !shards) {
              try {
                offload = await NftRelayOffload.start();
                kernel = `kernel forwarding in nftables table ${offload.table}`;
              } catch (error) {
                const why = error instanceof OffloadUnavailable ? error.message : String(error);
                if (t.kernelForwarding === 'on')
                  throw new UsageError(
                    `turn.kernelForwarding is on in ${options.config} but the kernel path cannot run: ${why}`,
                  );
                kernel = `no kernel forwarding (${why})`;
              }
            }
            // The TURN server owns it from here: closing the relay removes the table.
            turn = TurnServer.attach(
              { network, clock },
              { ...serverInit, listen: config.stun.primary, offload, shards },
              stun.socketAt(config.stun.primary)!,
            );
            const relay = turn;
            opened.push(() => relay.close());
            stun.delegate = (data, from) => relay.handle(data, from);
            if (t.tcp) {
              try {
                await relay.listenTcp();
              } catch (error) {
                throw new UsageError(
                  `cannot listen for TURN over TCP on ${config.stun.primary.address}:${config.stun.primary.port} (${listenProblem(error)}); set turn.tcp: false in ${options.config} to run without it`,
                );
              }
            }
            const turnTls = config.turnTls;
            if (turnTls) {
              const at = { address: config.stun.primary.address, port: turnTls.port };
              try {
                await relay.listenTcp(at, turnTls);
              } catch (error) {
                throw new UsageError(
                  `cannot listen for TURN over TLS on ${at.address}:${at.port} (${listenProblem(error)}); check turn.tls in ${options.config}`,
                );
              }
            }
          }
          if (!config.turn?.tcp) {
            // Issue 21: gateways predict their TCP ports with Binding over TCP on the STUN port, which
            // TURN over TCP answers when it runs; without it, a Binding-only TCP responder does.
            try {
              const tcpStun = await StunTcpResponder.start(
                { network, clock },
                { listen: config.stun.primary },
              );
              opened.push(() => tcpStun.close());
            } catch (error) {
              throw new UsageError(
                `cannot listen for STUN over TCP on ${config.stun.primary.address}:${config.stun.primary.port} (${listenProblem(error)}): the port must be free for TCP too`,
              );
            }
          }
          const records =
            config.accounting && new RecordIntake(new CallRecordStore(config.accounting.file), log);
          stun.bindings = new RecentBindings(clock);
          const server: SignalingServer = await SignalingServer.start(
            { network, clock },
            {
              listen: config.sip.listen,
              realm: config.sip.realm,
              users: config.users,
              limits: {
                maxConnections: config.sip.maxConnections,
                maxConnectionsPerSource: config.sip.maxConnectionsPerSource,
              },
              tls: config.tls,
              log,
              onCallRecord: records && ((body, user) => records.take(body, user)),
              // Issue 22: what a console fetches for its viewer (SUBSCRIBE with Expires: 0).
              fetchable: new Map<string, (user: string) => Promise<unknown>>([
                [CAMERAS_EVENT, async (user) => ({ cameras: server.callableBy(user) })],
                ...(records
                  ? [[REPORT_EVENT, async (user: string) => records.reportFor(user)] as const]
                  : []),
              ]),
              turnCredentials: turnSecret
                ? { secret: turnSecret, ttlS: config.turn!.credentialTtlS }
                : undefined,
              // Issue 19: pins read from our own STUN server's Bindings.
              bindings: stun.bindings,
            },
          ).catch((error: unknown) => {
            const { address, port } = config.sip.listen;
            throw new UsageError(
              `cannot listen for SIP on ${address}:${port}${config.sip.tls ? ` or ${config.sip.tls.port} (TLS)` : ''} (${listenProblem(error)}); set sip.listen in ${options.config}`,
            );
          });
          opened.push(() => server.close());
          if (config.admin) {
            const registry = metrics(server, stun, relayView(turn, shards), records);
            const app = adminApp(adminToken, registry, {
              health: () => ({
                sip: server.listening,
                stun: stun.listening,
                turn: turn ? turn.listening : 'off',
              }),
              registrations: () => server.registrations(),
              calls: () => server.calls(),
              allocations: () => relayView(turn, shards)?.allocations() ?? [],
            });
            const admin = config.admin.listen;
            await new Promise<HttpServer>((resolve, reject) => {
              const listening = app.listen(admin.port, admin.address, () => resolve(listening));
              opened.push(() => listening.close());
              listening.once('error', (error: Error) =>
                reject(
                  new UsageError(
                    `cannot listen for the admin API on ${admin.address}:${admin.port} (${listenProblem(error)}); set admin.listen in ${options.config}`,
                  ),
                ),
              );
            });
          }
          log(
            `sc2c server: SIP on ${config.sip.listen.address}:${server.local.port}${server.tlsLocal ? `, SIP over TLS on ${server.tlsLocal.port} (certificate sha-256 ${certificateFingerprint(config.tls!.cert)}: pin it with tls.fingerprint in gateway configs)` : ''} (realm ${config.sip.realm}, ${config.users.size} users), STUN on ${stun
              .endpoints()
              .map((e) => `${e.address}:${e.port}`)
              .join(
                ' ',
              )}${turn ? `, TURN on ${config.stun.primary.address}:${config.stun.primary.port} (UDP${config.turn?.tcp ? ' and TCP' : ''})${config.turnTls ? `, TURN over TLS on ${config.stun.primary.address}:${config.turnTls.port}` : ''}${kernel ? ` with ${kernel}` : ''}${shards ? `, relay shards on ports ${shards.endpoints.map((e) => e.port).join(' ')} (${shards.kernel})` : ''}` : ''}${config.admin ? `, admin on http://${config.admin.listen.address}:${config.admin.listen.port}` : ''}${config.accounting ? `, call records to ${config.accounting.file}` : ''}`,
          );
        } catch (error) {
          for (const close of opened.reverse()) close();
          throw error;
        }
        await stopRequested();
        log('stopping');
        for (const close of opened.reverse()) close();
      },
    );
}

/** The SHA-256 fingerprint of a PEM certificate, as gateways pin it (`tls.fingerprint`). */
function certificateFingerprint(pem: string): string {
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch {
    return 'unreadable';
  }
}
