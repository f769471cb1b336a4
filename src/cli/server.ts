/** `sc2c server --config config/server.yaml`: signaling, STUN and the admin HTTP API on real sockets. */
import type { Server as HttpServer } from 'node:http';
import type { Command } from 'commander';
import express from 'express';
import { Counter, Gauge, Registry } from 'prom-client';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { type CallRecord, CallRecordStore, parseCallRecord } from '../relay/call-records.ts';
import { RELAY_SOCKET_BUFFER_BYTES, TurnServer } from '../relay/turn-server.ts';
import { SignalingServer } from '../signaling/server.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { UsageError } from '../util/usage-error.ts';
import { loadServerConfig } from './configs.ts';

function metrics(
  server: SignalingServer,
  stun: StunResponder,
  turn?: TurnServer,
  records?: RecordIntake,
): Registry {
  const registry = new Registry();
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
  counter('sc2c_sip_registrations_total', 'Successful REGISTERs.', () => server.counters.registrations);
  counter('sc2c_sip_auth_failures_total', 'REGISTERs refused with 403.', () => server.counters.authFailures);
  counter('sc2c_sip_invites_total', 'INVITEs received.', () => server.counters.invites);
  counter(
    'sc2c_sip_not_found_total',
    'INVITEs to users who are not registered (404).',
    () => server.counters.notFound,
  );
  counter(
    'sc2c_sip_malformed_total',
    'Malformed SIP messages (connection closed).',
    () => server.counters.malformed,
  );
  counter('sc2c_syncs_total', 'SC2C synchronization requests (paper step 17).', () => server.counters.syncs);
  counter('sc2c_stun_requests_total', 'STUN Binding requests answered.', () => stun.counters.requests);
  counter('sc2c_stun_malformed_total', 'Malformed STUN messages dropped.', () => stun.counters.malformed);
  counter(
    'sc2c_stun_ignored_total',
    'Non-STUN or non-request datagrams dropped on the STUN ports.',
    () => stun.counters.ignored,
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
    const t = turn.counters;
    counter('sc2c_turn_requests_total', 'TURN requests received.', () => t.requests);
    counter('sc2c_turn_allocations_total', 'TURN allocations made.', () => t.allocations);
    counter('sc2c_turn_unauthorized_total', '401 challenges and refusals.', () => t.unauthorized);
    counter('sc2c_turn_stale_nonce_total', '438 Stale Nonce.', () => t.staleNonce);
    counter('sc2c_turn_forbidden_total', '403: peers in denied ranges.', () => t.forbidden);
    counter('sc2c_turn_quota_total', '486: per-user quota reached.', () => t.quotaExceeded);
    counter('sc2c_turn_malformed_total', 'Malformed TURN/ChannelData dropped.', () => t.malformed);
    counter('sc2c_turn_oversized_total', 'Oversized datagrams dropped.', () => t.oversized);
    counter(
      'sc2c_turn_rate_limited_total',
      'Unauthenticated requests dropped by the rate limit.',
      () => t.rateLimited,
    );
    counter('sc2c_turn_unpermitted_total', 'Relay data without a permission, dropped.', () => t.unpermitted);
    counter('sc2c_turn_tcp_connections_total', 'TURN-over-TCP connections accepted.', () => t.tcpConnections);
    counter(
      'sc2c_turn_tcp_refused_total',
      'TURN-over-TCP connections refused at capacity.',
      () => t.tcpRefused,
    );
    counter('sc2c_turn_relayed_to_peers_bytes_total', 'Bytes relayed client -> peer.', () => t.bytesToPeers);
    counter(
      'sc2c_turn_relayed_to_clients_bytes_total',
      'Bytes relayed peer -> client.',
      () => t.bytesToClients,
    );
    counter(
      'sc2c_turn_relayed_to_peers_packets_total',
      'Packets relayed client -> peer.',
      () => t.packetsToPeers,
    );
    counter(
      'sc2c_turn_relayed_to_clients_packets_total',
      'Packets relayed peer -> client.',
      () => t.packetsToClients,
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

  constructor(private readonly store: CallRecordStore) {}

  async take(body: string, user: string): Promise<void> {
    let record: CallRecord;
    try {
      record = parseCallRecord(JSON.parse(body));
      if (record.user !== user) throw new Error(`record for user '${record.user}' published by '${user}'`);
    } catch (error) {
      this.refused++;
      throw error;
    }
    this.store.append(record);
    this.stored++;
    this.bytes.direct += record.sent.direct.bytes;
    this.bytes.relay += record.sent.relay.bytes;
  }
}

export function registerServer(program: Command): void {
  program
    .command('server')
    .description(
      'run the SIP signaling server (registrar, call routing, SC2C coordinator), the RFC 5780 STUN server and the admin HTTP API',
    )
    .option('--config <file>', 'server config', 'config/server.yaml')
    .action(async (options: { config: string }) => {
      const config = loadServerConfig(options.config);
      const network = new NodeNetwork();
      const clock = new SystemClock();
      const log = (line: string): void => {
        process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      };
      let stun: StunResponder;
      try {
        stun = await StunResponder.start(network, {
          ...config.stun,
          software: 'sc2c-gateway',
          // The primary socket carries TURN too: every client's relayed media arrives on it.
          receiveBufferBytes: config.turn ? RELAY_SOCKET_BUFFER_BYTES : undefined,
        });
      } catch (error) {
        throw new UsageError(
          `cannot listen for STUN on ${config.stun.primary.address} and ${config.stun.alternate.address} (${(error as Error).message}): both addresses must be on this host, e.g. run it in the lab's server host (sc2c lab exec server -- npx sc2c server), or set stun.primary / stun.alternate in ${options.config}`,
        );
      }
      let turn: TurnServer | undefined;
      const turnSecret = config.turn && (process.env.SC2C_TURN_SECRET ?? config.turn.secret);
      if (config.turn) {
        const t = config.turn;
        turn = TurnServer.attach(
          { network, clock },
          {
            listen: config.stun.primary,
            relayAddress: t.relayAddress ?? config.stun.primary.address,
            realm: t.realm ?? config.sip.realm,
            users: config.users,
            secret: turnSecret,
            userQuota: t.userQuota,
            capacity: t.capacity,
            unauthenticatedPerSecond: t.unauthenticatedPerSecond,
            deniedPeers: t.deniedPeers,
            allowedPeers: t.allowedPeers,
            software: 'sc2c-gateway',
          },
          stun.socketAt(config.stun.primary)!,
        );
        const relay = turn;
        stun.delegate = (data, from) => relay.handle(data, from);
        if (t.tcp) {
          try {
            await relay.listenTcp();
          } catch (error) {
            throw new UsageError(
              `cannot listen for TURN over TCP on ${config.stun.primary.address}:${config.stun.primary.port} (${(error as Error).message}); set turn.tcp: false in ${options.config} to run without it`,
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
              `cannot listen for TURN over TLS on ${at.address}:${at.port} (${(error as Error).message}); check turn.tls in ${options.config}`,
            );
          }
        }
      }
      const records = config.accounting && new RecordIntake(new CallRecordStore(config.accounting.file));
      const server = await SignalingServer.start(
        { network, clock },
        {
          listen: config.sip.listen,
          realm: config.sip.realm,
          users: config.users,
          tls: config.tls,
          log,
          onCallRecord: records && ((body, user) => records.take(body, user)),
          turnCredentials: turnSecret ? { secret: turnSecret, ttlS: config.turn!.credentialTtlS } : undefined,
        },
      );
      let http: HttpServer | undefined;
      if (config.admin) {
        const app = express();
        const registry = metrics(server, stun, turn, records);
        app.get('/healthz', (_req, res) => {
          res.json({ ok: true });
        });
        app.get('/registrations', (_req, res) => {
          res.json(server.registrations());
        });
        app.get('/calls', (_req, res) => {
          res.json(server.calls());
        });
        app.get('/allocations', (_req, res) => {
          res.json(turn?.allocations() ?? []);
        });
        app.get('/metrics', async (_req, res) => {
          res.type(registry.contentType).send(await registry.metrics());
        });
        const admin = config.admin.listen;
        http = app.listen(admin.port, admin.address);
      }
      log(
        `sc2c server: SIP on ${config.sip.listen.address}:${server.local.port}${server.tlsLocal ? `, SIP over TLS on ${server.tlsLocal.port}` : ''} (realm ${config.sip.realm}, ${Object.keys(config.users).length} users), STUN on ${stun
          .endpoints()
          .map((e) => `${e.address}:${e.port}`)
          .join(
            ' ',
          )}${turn ? `, TURN on ${config.stun.primary.address}:${config.stun.primary.port} (UDP${config.turn?.tcp ? ' and TCP' : ''})${config.turnTls ? `, TURN over TLS on ${config.stun.primary.address}:${config.turnTls.port}` : ''}` : ''}${config.admin ? `, admin on http://${config.admin.listen.address}:${config.admin.listen.port}` : ''}${config.accounting ? `, call records to ${config.accounting.file}` : ''}`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      log('stopping');
      http?.close();
      server.close();
      turn?.close();
      stun.close();
    });
}
