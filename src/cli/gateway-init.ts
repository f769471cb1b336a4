/** The options every gateway command shares, and the gateway's start-up settings built from them. */
import type { Command } from 'commander';
import type { GatewayInit } from '../gateway/gateway.ts';
import { DIRECT_TRANSPORTS, type DirectTransport } from '../gateway/types.ts';
import { isIpv4 } from '../net/address.ts';
import { defaultRoute } from '../net/default-route.ts';
import { TRAVERSAL_MODES, type TraversalMode } from '../protocol/sdp.ts';
import { DEFAULT_PROTOCOLS, type PortMappingProtocol } from '../traversal/port-mapping.ts';
import { UsageError } from '../util/usage-error.ts';
import {
  type CameraConfig,
  type GatewayConfig,
  loadGatewayConfig,
  parseEndpoint,
  parseRelayUrl,
} from './configs.ts';
import { parseInteger } from './errors.ts';
import { type FailureContext, resolveHost } from './failures.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { mediaRole } from './media.ts';
import { bySite, SITE_NAME } from './site-order.ts';

export interface CommonOptions {
  config: string;
  server?: string;
  stun?: string;
  /** The SIP user; default the config's `user`. */
  user?: string;
  password?: string;
  mode?: string;
  json?: boolean;
  relay?: string | boolean;
  allow?: string;
  /** Commander's form of `--insecure-media`. */
  insecureMedia?: boolean;
  /** Commander's form of `--no-port-mapping`. */
  portMapping?: boolean;
  portMappingLifetime?: number;
  portMappingProtocols?: PortMappingProtocol[];
  /** Issue 21: `--transport udp|auto|tcp`. */
  transport?: DirectTransport;
  /** Issue 24: the site whose gateways start at the same node (default the config's `site`). */
  site?: string;
}

/** Who this process registers as, and with what password: flags, then SC2C_PASSWORD, then the config. */
export interface Identity {
  readonly user: string;
  readonly password: string;
  /** Who may call this user (a camera's `callers`); `undefined` leaves it to the server. */
  readonly allowedCallers?: readonly string[];
}

/** The user and password from `--user`/`--password`, SC2C_PASSWORD or the config's `user`/`password`. */
export function identityFrom(
  options: CommonOptions,
  config: GatewayConfig & { cameraList: ReadonlyMap<string, CameraConfig> },
): Identity {
  const user = options.user ?? config.user;
  if (!user) throw new UsageError(`give --user, or set user (or cameras:) in ${options.config}`);
  // `--user camera1` with a cameras: config serves that camera alone, with its password and callers.
  const camera = config.cameraList.get(user);
  const password = options.password ?? process.env.SC2C_PASSWORD ?? camera?.password ?? config.password;
  if (!password)
    throw new UsageError(`give --password, set SC2C_PASSWORD, or set password in ${options.config}`);
  return {
    user,
    password,
    allowedCallers: allowedCallers(options.allow, camera?.callers ?? config.access?.callers),
  };
}

/**
 * The gateway's start-up settings from the config and the flags, host names resolved; `context`
 * names what to fix when starting fails.
 */
export async function gatewayInit(
  options: CommonOptions,
  role?: { send: boolean; receive: boolean },
  given?: Identity,
): Promise<{ init: GatewayInit; context: FailureContext }> {
  const config = loadGatewayConfig(options.config);
  const { user, password, allowedCallers } = given ?? identityFrom(options, config);
  const mode = (options.mode ?? config.mode) as TraversalMode;
  if (!(TRAVERSAL_MODES as readonly string[]).includes(mode))
    throw new UsageError(`unknown --mode '${mode}'. Allowed: ${TRAVERSAL_MODES.join(', ')}`);
  // Issue 24: several nodes, comma-separated (or a list in the config): the first, then the others.
  const serverText = options.server ?? config.server;
  const site = options.site ?? config.site;
  if (site !== undefined && !SITE_NAME.test(site))
    throw new UsageError(`--site must be lower-case letters, digits and '-' (1-64); got '${site}'`);
  // One site's gateways start at the same node, so their calls stay on it (issue 24).
  const listed = bySite(
    (Array.isArray(serverText) ? serverText : serverText.split(','))
      .map((text) => text.trim())
      .filter((text) => text.length > 0),
    site,
  );
  if (listed.length === 0 || listed.length > 16)
    throw new UsageError(`--server needs 1 to 16 host[:port] entries; got '${String(serverText)}'`);
  const servers = await Promise.all(
    listed.map((text) => resolveHost(parseEndpoint(text, '--server', 5060), '--server')),
  );
  const serverGiven = parseEndpoint(listed[0]!, '--server', 5060);
  const server = servers[0]!;
  const stunServer = await resolveHost(parseEndpoint(options.stun ?? config.stun, '--stun', 3478), '--stun');
  // A server given by name is checked against that name over TLS, unless the config says otherwise.
  const tls = config.tlsOptions && {
    ...config.tlsOptions,
    servername:
      config.tlsOptions.servername ?? (isIpv4(serverGiven.address) ? undefined : serverGiven.address),
  };
  const relay = relayConfig(config.relay, options, user, password, tls);
  const init: GatewayInit = {
    sip: { server, domain: config.domain, user, password, tls },
    ...(servers.length > 1 ? { failover: servers.slice(1) } : {}),
    stunServer,
    mode,
    punch: config.punch,
    rtcpMux: config.rtcpMux,
    media: role && mediaRole(config.media, role.send, role.receive),
    relay: relay && { ...relay, server: await resolveHost(relay.server, '--relay') },
    allowedCallers,
    maxCalls: config.maxCalls,
    dtls: mediaEncryption(options, config.media, user),
    portMapping: portMappingConfig(config.portMapping, options),
    transport: options.transport ?? config.transport,
  };
  return { init, context: { configPath: options.config, user, server, stun: stunServer } };
}

/**
 * DTLS-SRTP unless `--insecure-media` or `media.encryption: none` says otherwise, and then loudly:
 * a warning at start, and `encryption: none` in every call's JSON and record.
 */
function mediaEncryption(
  options: CommonOptions,
  media: ReturnType<typeof loadGatewayConfig>['media'],
  user: string,
): GatewayInit['dtls'] {
  if (options.insecureMedia || media.encryption === 'none') {
    process.stderr.write(
      `warning: ${options.insecureMedia ? '--insecure-media' : 'media.encryption: none'}: video and audio cross the network as plain RTP; anyone on the path can record or inject them\n`,
    );
    return undefined;
  }
  // A user name becomes part of a file name: nothing but the safe characters.
  const path = media.certificate.replaceAll('{user}', user.replace(/[^A-Za-z0-9._~-]/g, '_'));
  return { identity: loadOrCreateIdentity(path, `sc2c ${user}`).identity };
}

/** `--allow a,b` wins over the config's `access.callers`; neither leaves it to the server. */
function allowedCallers(flag: string | undefined, configured: readonly string[] | undefined) {
  if (flag === undefined) return configured;
  const users = flag
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
  if (users.length === 0 || users.some((u) => !/^[A-Za-z0-9._~-]+$/.test(u)))
    throw new UsageError(
      `--allow takes user names separated by commas, e.g. --allow viewer,alice; got '${flag}'`,
    );
  return users;
}

/** `pcp,nat-pmp,upnp` or any of them, in the order to try. */
export function parsePortMappingProtocols(text: string): PortMappingProtocol[] {
  const list = text.split(',').map((p) => p.trim());
  const allowed = DEFAULT_PROTOCOLS as readonly string[];
  if (list.length === 0 || list.some((p) => !allowed.includes(p)) || new Set(list).size !== list.length)
    throw new UsageError(
      `port-mapping protocols: a list of ${allowed.join(', ')} without repeats; got '${text}'`,
    );
  return list as PortMappingProtocol[];
}

/**
 * Issue 20: which router to ask for mappings, from the config (`gateway: auto` reads the default
 * route); `--no-port-mapping` or `enabled: false` asks none. A host with no default router asks
 * none either, and says why on stderr.
 */
function portMappingConfig(
  config: GatewayConfig['portMapping'],
  options: CommonOptions,
): GatewayInit['portMapping'] {
  if (options.portMapping === false || !config.enabled) return undefined;
  const base = {
    lifetimeS: options.portMappingLifetime ?? config.lifetimeS,
    maxLeases: config.maxLeases,
    protocols: options.portMappingProtocols ?? config.protocols,
  };
  if (config.gateway !== 'auto') return { ...base, gateway: config.gateway };
  const route = defaultRoute();
  if ('reason' in route) {
    if (!options.json) process.stderr.write(`port mapping off: ${route.reason}\n`);
    return undefined;
  }
  return { ...base, gateway: route.gateway, clientAddress: route.address };
}

/** The relay from the config, `--relay <ip:port>` to override it, `--no-relay` to go without. */
function relayConfig(
  relay: ReturnType<typeof loadGatewayConfig>['relay'],
  options: CommonOptions,
  user: string,
  password: string,
  tls: { ca?: string; servername?: string; fingerprint?: string } | undefined,
): GatewayInit['relay'] {
  if (options.relay === false) return undefined;
  const server =
    typeof options.relay === 'string' ? options.relay : relay?.enabled ? relay.server : undefined;
  if (!server) return undefined;
  return {
    ...parseRelayUrl(server, '--relay'),
    tls,
    username: relay?.username ?? user,
    password: relay?.password ?? password,
    // An account of its own on the relay (relay.username) is meant to be used as it is.
    credentials: relay?.credentials ?? (relay?.username ? 'static' : 'issued'),
    budgetMs: relay?.budgetMs,
    deadAfterMs: relay?.deadAfterMs,
    retryDirectMs: relay?.retryDirectMs,
    retryDirectAttempts: relay?.retryDirectAttempts,
    raw: relay?.raw,
  };
}

export function withCommon(command: Command): Command {
  return command
    .option(
      '--config <file>',
      'gateway config (server, stun, domain, mode, punch timings)',
      'config/gateway.yaml',
    )
    .option(
      '--server <host[:port],...>',
      'SIP server (default from the config); several nodes comma-separated, tried in order',
    )
    .option('--site <name>', "start the server list at this site's node, as its other gateways do")
    .option('--stun <host[:port]>', 'STUN server (default from the config)')
    .option('--user <name>', "SIP user to register as (default the config's user)")
    .option('--password <secret>', 'SIP password (or SC2C_PASSWORD)')
    .option('--mode <mode>', `traversal mode: ${TRAVERSAL_MODES.join(', ')}`)
    .option(
      '--relay <server>',
      'TURN relay for calls no direct path serves: ip[:port], or an RFC 7065 URI turn:ip[:port][?transport=udp|tcp] (tcp where UDP is blocked) or turns:ip[:port] (TLS, trusting tls.caFile) (default from the config)',
    )
    .option('--no-relay', 'direct paths only: no TURN allocation')
    .option(
      '--no-port-mapping',
      'never ask our router to map the media port (PCP, NAT-PMP); the config says portMapping.enabled',
    )
    .option(
      '--port-mapping-lifetime <s>',
      'lease lifetime to ask the router for; renewed at half what it grants (default portMapping.lifetimeS)',
      parseInteger('--port-mapping-lifetime', 2, 86_400),
    )
    .option(
      '--port-mapping-protocols <list>',
      `protocols to ask the router with, in order (default portMapping.protocols: ${DEFAULT_PROTOCOLS.join(',')})`,
      parsePortMappingProtocols,
    )
    .option(
      '--transport <udp|auto|tcp>',
      'direct path to try: auto = UDP, or a TCP simultaneous open where either side blocks UDP; tcp = TCP only; udp = UDP only (default transport in the config: auto)',
      parseTransport,
    )
    .option(
      '--insecure-media',
      'plain RTP instead of DTLS-SRTP (QA comparisons only; the peer must turn encryption off too)',
    )
    .option('--json', 'print machine-readable JSON');
}

export function parseTransport(text: string): DirectTransport {
  if (!(DIRECT_TRANSPORTS as readonly string[]).includes(text))
    throw new UsageError(`--transport must be one of ${DIRECT_TRANSPORTS.join(', ')}; got '${text}'`);
  return text as DirectTransport;
}
