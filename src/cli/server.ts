/** `sc2c server --config config/server.yaml`: signaling, STUN and the admin HTTP API on real sockets. */
import { X509Certificate } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { Command } from 'commander';
import { cidrContains, parseCidr } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { CallRecordStore } from '../relay/call-records.ts';
import { OffloadUnavailable, startKernelPath } from '../relay/kernel-offload.ts';
import { NativeNetwork } from '../relay/native-socket.ts';
import { RELAY_SOCKET_BUFFER_BYTES, TurnServer } from '../relay/turn-server.ts';
import type { RelayOffload } from '../relay/turn-types.ts';
import { passwordsOf } from '../signaling/accounts.ts';
import { CAMERAS_EVENT, REPORT_EVENT } from '../signaling/presence.ts';
import { SignalingServer } from '../signaling/server.ts';
import { NODE_ID } from '../signaling/store.ts';
import { RecentBindings } from '../traversal/recent-bindings.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { StunTcpResponder } from '../traversal/stun-tcp.ts';
import { UsageError } from '../util/usage-error.ts';
import { adminApp } from '../web/admin.ts';
import { loadServerConfig, placeholderSecrets } from './configs.ts';
import { listenProblem, parseInteger } from './errors.ts';
import { createLog, LOG_LEVELS, parseLogLevel } from './log.ts';
import { openFileLimit } from './open-files.ts';
import { RecordIntake } from './record-intake.ts';
import { startRelayPlane } from './relay-plane.ts';
import { TurnShards } from './relay-shards.ts';
import { metrics, relayView } from './server-metrics.ts';
import { openStore, shownStoreUrl } from './server-store.ts';
import { stopRequested } from './shutdown.ts';

/** The lab's "public internet" (RFC 2544's benchmarking range, never routed on the real one). */
const LAB_RANGE = parseCidr('198.18.0.0/15');

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
    .option(
      '--store <url>',
      "issue 24: 'memory' or redis[s]://host[:port][/db] (overrides the config's store)",
    )
    .option('--node <id>', "issue 24: this node's id in the store (overrides the config's node)")
    .action(
      async (options: {
        config: string;
        logJson?: boolean;
        logLevel: string;
        relayShards?: number;
        store?: string;
        node?: string;
      }) => {
        const logger = createLog({ json: options.logJson, level: parseLogLevel(options.logLevel), fd: 2 });
        const loaded = loadServerConfig(options.config);
        if (options.relayShards !== undefined && !loaded.turn)
          throw new UsageError(`--relay-shards: ${options.config} runs no TURN relay (no turn: section)`);
        const config = {
          ...(options.relayShards !== undefined && loaded.turn
            ? { ...loaded, turn: { ...loaded.turn, shards: options.relayShards } }
            : loaded),
          store: options.store ?? loaded.store,
          node: options.node ?? loaded.node,
        };
        if (!/^(memory|rediss?:\/\/\S+)$/.test(config.store))
          throw new UsageError(
            `--store must be 'memory' or redis://host[:port][/db] (rediss:// for TLS); got '${config.store}'`,
          );
        if (!NODE_ID.test(config.node))
          throw new UsageError(
            `--node must be lower-case letters, digits and '-' (1-32); got '${config.node}'`,
          );
        const clusterSecret = config.cluster && (process.env.SC2C_CLUSTER_SECRET ?? config.cluster.secret);
        if (config.cluster && config.store === 'memory')
          throw new UsageError(
            `${options.config} has a cluster: section but store is memory: the nodes need a shared store (store: redis://…)`,
          );
        if (config.cluster && (!clusterSecret || clusterSecret.length < 16))
          throw new UsageError(
            `${options.config}: the cluster needs a secret of at least 16 characters (cluster.secret or SC2C_CLUSTER_SECRET), the same on every node`,
          );
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
          // The store first: an unreachable Redis is said before anything listens.
          const store = await openStore(config.store, clock, options.config);
          opened.push(() => void store.close());
          // Issue 23: with the native data plane, the STUN/TURN UDP sockets live in sc2c-relayd.
          // With shards, UDP is relayed there (each with its own plane): the front keeps Node's sockets.
          const relayPlane = await (config.turn && config.turn.shards > 1
            ? Promise.resolve({ plane: undefined, note: 'UDP relayed in the shards' })
            : startRelayPlane(config.turn ? config.turn.dataPlane : 'node')
          ).catch((error: Error) => {
            throw new UsageError(`${error.message} (set turn.dataPlane in ${options.config})`);
          });
          const plane = relayPlane.plane;
          if (plane) {
            opened.push(() => plane.close());
            plane.on('exit', (why) => {
              log(`${why}: the STUN and TURN sockets went with it; stopping`, 'warn');
              process.exitCode = 1;
              process.kill(process.pid, 'SIGTERM');
            });
          }
          const udpNetwork = plane ? new NativeNetwork(plane, network) : network;
          let stun: StunResponder;
          try {
            stun = await StunResponder.start(udpNetwork, {
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
                  kernelPath: t.kernelPath,
                  dataPlane: t.dataPlane,
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
            let offload: RelayOffload | undefined;
            // With shards, UDP allocations (the only ones the kernel path serves) are made there.
            if (t.kernelForwarding !== 'off' && !shards) {
              try {
                const path = await startKernelPath(t.kernelPath);
                offload = path.offload;
                kernel = path.description;
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
              { network: udpNetwork, clock },
              { ...serverInit, listen: config.stun.primary, offload, shards, channelPlane: plane },
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
            config.accounting &&
            new RecordIntake(
              new CallRecordStore(config.accounting.file),
              log,
              config.store === 'memory' ? undefined : store,
            );
          stun.bindings = new RecentBindings(clock);
          const server: SignalingServer = await SignalingServer.start(
            { network, clock, ...(config.store === 'memory' ? {} : { store }) },
            {
              node: config.node,
              ...(config.cluster && clusterSecret
                ? { cluster: { secret: clusterSecret, advertise: config.cluster.advertise } }
                : {}),
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
            // Not a listen error (no errno code): the store or the cluster could not start.
            if ((error as NodeJS.ErrnoException).code === undefined)
              throw new UsageError(`cannot start signaling: ${(error as Error).message}`);
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
                store: server.store,
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
              )}${turn ? `, TURN on ${config.stun.primary.address}:${config.stun.primary.port} (UDP${config.turn?.tcp ? ' and TCP' : ''})${config.turnTls ? `, TURN over TLS on ${config.stun.primary.address}:${config.turnTls.port}` : ''}${kernel ? ` with ${kernel}` : ''}, ${relayPlane.note}${shards ? `, relay shards on ports ${shards.endpoints.map((e) => e.port).join(' ')} (${shards.kernel})` : ''}` : ''}${config.admin ? `, admin on http://${config.admin.listen.address}:${config.admin.listen.port}` : ''}${config.accounting ? `, call records to ${config.accounting.file}` : ''}${config.store === 'memory' ? '' : `, node ${config.node} with store ${shownStoreUrl(config.store)}${config.cluster ? ' (cluster)' : ''}`}`,
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
