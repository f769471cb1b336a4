/** Server and gateway config files: validated at start-up, every error names the field. */

import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { DIRECT_TRANSPORTS } from '../gateway/types.ts';
import { parseSource } from '../media/source.ts';
import { type Endpoint, isIpv4 } from '../net/address.ts';
import { SHA256_FINGERPRINT } from '../protocol/dtls/certificate.ts';
import { TRAVERSAL_MODES } from '../protocol/sdp.ts';
import { KERNEL_PATH_CHOICES } from '../relay/kernel-offload.ts';
import { type Accounts, accountsFrom } from '../signaling/accounts.ts';
import { parseConfig, readConfigFile } from '../util/config-file.ts';
import { UsageError } from '../util/usage-error.ts';
import { SITE_NAME } from './site-order.ts';

const port = z.number().int().min(0).max(65535);
const ipv4 = z.string().refine(isIpv4, { message: 'not an IPv4 address' });
const listen = z.object({ address: ipv4.default('0.0.0.0'), port }).strict();
const password = z.string().min(8, 'passwords need at least 8 characters');
/**
 * A user: its password, or its password and who may call it (`callers`: user names, or `any` for
 * every registered user). A user given without `callers` can be called by nobody: it only places
 * calls (a viewer). Cameras list their viewers.
 */
const user = z.union([
  password,
  z
    .object({ password, callers: z.union([z.array(z.string().min(1)), z.literal('any')]).optional() })
    .strict(),
]);
const endpoint = z
  .object({ address: ipv4, port: port.refine((p) => p > 0, 'port must be 1-65535') })
  .strict();

/** The server config's schema (exported for the config-loader fuzz target). */
export const serverSchema = z
  .object({
    sip: z
      .object({
        listen,
        realm: z.string().min(1),
        users: z.record(z.string(), user).optional(),
        usersFile: z.string().optional(),
        /** SIP over TLS: PEM files, relative to the config file. */
        tls: z.object({ port, certFile: z.string(), keyFile: z.string() }).strict().optional(),
        /**
         * Signaling connections at once (more are closed on accept): one per registered device.
         * The process needs an open-file limit above it (`ulimit -n`).
         */
        maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
        /** Connections from one source address: a site's gateways share its NAT's address. */
        maxConnectionsPerSource: z.number().int().min(1).max(1_000_000).default(256),
      })
      .strict()
      .refine((s) => s.users || s.usersFile, { message: "give 'users' or 'usersFile'" }),
    /**
     * The RFC 5780 STUN server. `alternate` on a second address of this host adds the filtering
     * test and address-dependent mapping; without it the alternate is the primary's address on
     * the next port, which is all mapping, the allocation step and port prediction need.
     */
    stun: z
      .object({
        primary: endpoint,
        alternate: endpoint.optional(),
        /** Binding requests answered per source address and second (a burst of twice that). */
        perSourcePerSecond: z.number().int().min(1).max(100_000).default(100),
      })
      .strict(),
    /** The embedded TURN server, on the STUN primary port (RFC 8656 over UDP and TCP). Omit to run none. */
    turn: z
      .object({
        realm: z.string().min(1).optional(),
        /** Also take TURN clients over TCP on the same port number (RFC 8656 §3.1). */
        tcp: z.boolean().default(true),
        /** TURN over TLS (`turns:`, conventionally port 5349) with this certificate and key (relative to this file). */
        tls: z.object({ port, certFile: z.string(), keyFile: z.string() }).strict().optional(),
        relayAddress: ipv4.optional(),
        /** Shared secret for short-lived per-call credentials (TURN REST API form). */
        secret: z.string().min(16, 'the TURN secret needs at least 16 characters').optional(),
        credentialTtlS: z.number().int().min(60).max(86_400).default(3600),
        userQuota: z.number().int().min(1).max(1000).default(10),
        capacity: z.number().int().min(1).max(100_000).default(1000),
        /** Allocations one source address may hold, whatever the user (486 beyond). */
        perSourceQuota: z.number().int().min(1).max(100_000).default(100),
        unauthenticatedPerSecond: z.number().min(1).max(10_000).default(20),
        deniedPeers: z.array(z.string()).optional(),
        allowedPeers: z.array(z.string()).default([]),
        /**
         * Forward raw-relay allocations (our own gateways' calls) in the kernel: `auto` when this
         * process may (CAP_NET_ADMIN and the tools of `kernelPath`), `on` to insist (the server
         * refuses to start without it), `off` for userspace only (issue 23).
         */
        kernelForwarding: z.enum(['auto', 'on', 'off']).default('auto'),
        /**
         * How the kernel forwards them: `bpf` an eBPF program at the tc ingress hook (clang,
         * bpftool, tc), `nft` stateless nftables rules at the netdev ingress hook (nft), `auto`
         * eBPF where it can run, nftables otherwise.
         */
        kernelPath: z.enum(KERNEL_PATH_CHOICES).default('auto'),
        /**
         * Who forwards UDP clients' bound channels (issue 23): `native` is sc2c-relayd, a C process
         * that owns the relay's sockets and forwards in batches (the server refuses to start
         * without it), `node` this process, `auto` relayd when it can be built (cc) and run.
         */
        dataPlane: z.enum(['auto', 'native', 'node']).default('auto'),
        /**
         * Relay shards (issue 23, many cores): with 2 or more, UDP allocations are made in that many
         * processes of their own, on ports `shardPort`, `shardPort + 1`, ..., and each client's
         * Allocate is redirected there (300 Try Alternate). 1 (the default) relays in this process.
         */
        shards: z.number().int().min(1).max(16).default(1),
        /** The first relay shard's port (on the STUN primary address). Default: the primary port + 100. */
        shardPort: port.optional(),
      })
      .strict()
      .optional(),
    /**
     * The admin HTTP API. Loopback unless told otherwise; on any other address it needs a bearer
     * token (`token`, or SC2C_ADMIN_TOKEN in the environment), checked on every route but /healthz.
     */
    admin: z
      .object({
        listen: z.object({ address: ipv4.default('127.0.0.1'), port }).strict(),
        token: z.string().min(16, 'the admin token needs at least 16 characters').optional(),
      })
      .strict()
      .optional(),
    /**
     * Issue 24: where registrations, confirmed dialogs and call-record keys also go. `memory` keeps
     * them in this process only; `redis://host[:port][/db]` shares them with other nodes and keeps
     * them across a restart.
     */
    store: z
      .string()
      .regex(/^(memory|rediss?:\/\/[^\s]+)$/, "'memory', redis://host[:port][/db] or rediss:// (TLS)")
      .default('memory'),
    /** This node's id in the store: lower-case letters, digits and '-' (1-32). Nodes sharing a store need different ids. */
    node: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "lower-case letters, digits and '-' (1-32)")
      .default('main'),
    /**
     * Issue 24: several nodes, one service (needs a redis:// store). Calls to users registered on
     * another node go there over a SIP link authenticated with `secret` (or SC2C_CLUSTER_SECRET).
     * `advertise` is where the other nodes reach this one's SIP port (default: sip.listen).
     */
    cluster: z
      .object({
        secret: z.string().min(16, 'the cluster secret needs at least 16 characters').optional(),
        advertise: endpoint.optional(),
      })
      .strict()
      .optional(),
    /** Call records from gateways (PUBLISH): an append-only, fsynced JSON-lines file, relative to this file. */
    accounting: z
      .object({ file: z.string().min(1) })
      .strict()
      .optional(),
  })
  .strict();

const usersSchema = z.object({ users: z.record(z.string(), user) }).strict();

export type ServerConfig = Omit<z.infer<typeof serverSchema>, 'stun'> & {
  stun: z.infer<typeof serverSchema>['stun'] & { alternate: Endpoint };
  /** Every user with its password and access list; a user with no `callers` may be called by nobody. */
  users: Accounts;
  tls?: { port: number; cert: string; key: string };
  /** TURN over TLS, its files read. */
  turnTls?: { port: number; cert: string; key: string };
};

export function loadServerConfig(path: string): ServerConfig {
  const config = parseConfig(readConfigFile(path, 'server config'), path, serverSchema);
  const users = new Map(accountsFrom(config.sip.users ?? {}, new Set()));
  if (config.sip.usersFile) {
    const usersPath = resolve(dirname(path), config.sip.usersFile);
    const fromFile = parseConfig(readConfigFile(usersPath, 'users file'), usersPath, usersSchema).users;
    for (const [name, account] of accountsFrom(fromFile, new Set())) users.set(name, account);
  }
  const tlsFiles = (t: { port: number; certFile: string; keyFile: string }, what: string) => ({
    port: t.port,
    cert: readConfigFile(resolve(dirname(path), t.certFile), `${what} certificate`),
    key: readConfigFile(resolve(dirname(path), t.keyFile), `${what} key`),
  });
  const tls = config.sip.tls && tlsFiles(config.sip.tls, 'TLS');
  const turnTls = config.turn?.tls && tlsFiles(config.turn.tls, 'TURN TLS');
  const accounting = config.accounting && { file: resolve(dirname(path), config.accounting.file) };
  const { primary } = config.stun;
  const alternate = config.stun.alternate ?? { address: primary.address, port: primary.port + 1 };
  if (alternate.address === primary.address && alternate.port === primary.port)
    throw new UsageError(
      `${path}: stun.alternate is the same as stun.primary; give another address (or port), or leave it out`,
    );
  if (alternate.port > 65535)
    throw new UsageError(
      `${path}: stun.primary.port leaves no next port for the alternate; set stun.alternate`,
    );
  return { ...config, stun: { ...config.stun, alternate }, users, tls, turnTls, accounting };
}

/** SIP user names we accept in configs: they end up in URIs, file names and metric labels. */
const userName = z
  .string()
  .regex(/^[A-Za-z0-9._~-]{1,64}$/, 'letters, digits and . _ ~ - only (1-64)')
  .refine((name) => !['__proto__', 'constructor', 'prototype'].includes(name), 'a reserved name');

/**
 * One camera of a gateway that serves several (issue 18): registered as its own SIP user, with
 * its own access list; its source is pulled once however many viewers watch.
 */
const camera = z
  .object({
    /** testsrc | file:PATH | rtsp://… | v4l2:/dev/videoN, checked at start. */
    source: z.string().refine((text) => {
      try {
        parseSource(text);
        return true;
      } catch {
        return false;
      }
    }, 'a source: testsrc, file:PATH, rtsp://HOST/PATH or v4l2:/dev/videoN'),
    password,
    /** Who may call this camera (user names); left out, the server's users file decides. */
    callers: z.array(userName).optional(),
    /**
     * Re-encode with the media settings. Default: an H.264 RTSP camera is passed through as it is
     * (`-c copy`), every other source is encoded.
     */
    transcode: z.boolean().optional(),
  })
  .strict();

/** Cameras one gateway serves: a 64-camera NVR with room to spare, and a bound on processes. */
export const MAX_CAMERAS = 128;

/** The gateway config's schema. */
export const gatewaySchema = z
  .object({
    /** The SIP server, or several nodes of one service (issue 24): the first, then the others on failover. */
    server: z.union([z.string(), z.array(z.string()).min(1).max(16)]),
    /**
     * Issue 24: with several servers, gateways naming the same site start at the same node of the
     * list (a hash of the name picks it), so a site's calls stay on one node. Default: in order.
     */
    site: z.string().regex(SITE_NAME, "lower-case letters, digits and '-' (1-64)").optional(),
    /** The SIP user this gateway (or viewer) registers as, unless `--user` says otherwise. */
    user: userName.optional(),
    /** Its password (SC2C_PASSWORD or `--password` win); keep the file private (sc2c init makes it 0600). */
    password: password.optional(),
    /** Several cameras, each its own SIP user: `sc2c gateway` with no `--user` serves them all. */
    cameras: z
      .record(userName, camera)
      .refine((c) => Object.keys(c).length <= MAX_CAMERAS, `at most ${MAX_CAMERAS} cameras`)
      // Also where a hostile key (`__proto__`) vanished in parsing: no camera is an error, not a quiet no-op.
      .refine((c) => Object.keys(c).length > 0, 'list at least one camera')
      .optional(),
    stun: z.string(),
    domain: z.string().min(1),
    mode: z.enum(TRAVERSAL_MODES).default('sc2c'),
    /**
     * Who may call this gateway's user, checked here as well as by the server (defence in depth:
     * a server bug or a stolen server connection still cannot start our camera). Omit to rely on
     * the server's access list alone.
     */
    access: z
      .object({ callers: z.array(z.string().min(1)) })
      .strict()
      .optional(),
    /** Calls at once; more get 486 Busy Here before any media is set up. */
    maxCalls: z.number().int().min(1).max(1000).default(16),
    rtcpMux: z.boolean().default(true),
    /**
     * Connect to the server with SIP over TLS; caFile (relative to this file) is the CA to trust. The
     * same trust holds for a relay reached over TLS (`turns:`).
     */
    tls: z
      .object({
        caFile: z.string().optional(),
        servername: z.string().optional(),
        /** The server certificate's SHA-256 fingerprint, pinned: `sc2c server` prints it at start. */
        fingerprint: z
          .string()
          .regex(SHA256_FINGERPRINT, 'a SHA-256 fingerprint: 32 hex pairs with colons')
          .optional(),
      })
      .strict()
      .optional(),
    punch: z
      .object({
        intervalMs: z.number().int().min(1).max(1000),
        timeoutMs: z.number().int().min(100).max(120_000),
        keepaliveMs: z.number().int().min(1000).max(600_000),
        window: z.number().int().min(1).max(16),
        /** Issue 19: pin our mapping with low-TTL rungs before the punch (on by default). */
        pin: z.boolean(),
        pinWindow: z.number().int().min(1).max(32),
        pinChecks: z.number().int().min(1).max(32),
        /** Issue 19: track our NAT's counter while waiting for a pinned peer's go. */
        drift: z.boolean(),
        /** Issue 19: crossed ladders between two predicting per-destination NATs (1: off). */
        crossWindow: z.number().int().min(1).max(32),
        pinTtl: z.number().int().min(1).max(16),
        /** Issue 21: sc2c-ttl's priming TTL; unset, a gateway in sc2c-ttl mode reads it at start. */
        primeTtl: z.number().int().min(1).max(16),
        /** Issue 21: sc2c-ttl's wait from the low-TTL primes to the full checks. */
        primeWaitMs: z.number().int().min(0).max(5000),
        /** Issue 19: birthday punching where our NAT allocates at random. */
        birthday: z.boolean(),
        birthdayPorts: z.number().int().min(1).max(1024),
        birthdayProbes: z.number().int().min(1).max(16_384),
        birthdayRate: z.number().int().min(1).max(10_000),
      })
      .partial()
      .strict()
      .default({}),
    /**
     * Issue 21: which direct path to try. `auto`: UDP, or a TCP simultaneous open where either
     * side's UDP is blocked; `tcp`: TCP only; `udp`: UDP only (no TCP probe at start).
     */
    transport: z.enum(DIRECT_TRANSPORTS).default('auto'),
    /**
     * Issue 20: ask our router for each call's media port (PCP, then NAT-PMP). `gateway: auto`
     * reads the default router from the routing table.
     */
    portMapping: z
      .object({
        enabled: z.boolean().default(true),
        gateway: z
          .string()
          .refine((g) => g === 'auto' || isIpv4(g), { message: "an IPv4 address, or 'auto'" })
          .default('auto'),
        lifetimeS: z.number().int().min(2).max(86_400).default(1800),
        maxLeases: z.number().int().min(1).max(1024).default(64),
        /** Tried in this order at start; the first that answers is kept. */
        protocols: z
          .array(z.enum(['pcp', 'nat-pmp', 'upnp']))
          .min(1)
          .max(3)
          .refine((l) => new Set(l).size === l.length, { message: 'each protocol once' })
          .default(['pcp', 'nat-pmp', 'upnp']),
      })
      .strict()
      .prefault({}),
    /** TURN relay fallback (issue 6). Credentials default to the SIP user and password. */
    relay: z
      .object({
        enabled: z.boolean().default(true),
        server: z.string(),
        username: z.string().optional(),
        password: z.string().optional(),
        credentials: z.enum(['issued', 'static']).optional(),
        budgetMs: z.number().int().min(50).max(30_000).default(1000),
        deadAfterMs: z.number().int().min(100).max(30_000).default(500),
        retryDirectMs: z.number().int().min(500).max(600_000).default(3000),
        retryDirectAttempts: z.number().int().min(0).max(100).default(5),
        /**
         * Ask the relay for a raw relay (issue 23): our server then forwards the peer's media to us
         * as plain datagrams, in the kernel where it may. Other servers ignore the request.
         */
        raw: z.boolean().default(true),
      })
      .strict()
      .optional(),
    media: z
      .object({
        source: z.string().default('testsrc'),
        width: z.number().int().min(16).max(3840).default(640),
        height: z.number().int().min(16).max(2160).default(360),
        fps: z.number().int().min(1).max(120).default(30),
        videoBitrateKbps: z.number().int().min(50).max(50_000).default(1000),
        keyframeIntervalS: z.number().min(0.1).max(60).default(2),
        audio: z.enum(['opus', 'pcmu', 'none']).default('opus'),
        jitterMs: z.number().int().min(0).max(2000).default(60),
        peerTimeoutMs: z.number().int().min(500).max(600_000).default(5000),
        /** DTLS-SRTP on every call (issue 17), or `none`: plain RTP, as `--insecure-media`. */
        encryption: z.enum(['dtls-srtp', 'none']).default('dtls-srtp'),
        /**
         * This gateway's DTLS certificate and key (PEM), relative to this file; `{user}` is
         * replaced. Made on first start when missing.
         */
        certificate: z.string().min(1).default('../var/dtls-{user}.pem'),
      })
      .strict()
      .prefault({}),
    /**
     * Call records: sent to the server at the end of each call (PUBLISH). One the server does not
     * take is kept in `spoolFile` (relative to this file; `{user}` is replaced) and sent again at
     * the next start.
     */
    accounting: z
      .object({
        publish: z.boolean().default(true),
        spoolFile: z.string().min(1).default('../var/spool-{user}.jsonl'),
      })
      .strict()
      .prefault({}),
    /**
     * Issue 22: `sc2c console`, the operator's browser console run by this (viewer) gateway. Off
     * loopback it needs a token (here, SC2C_CONSOLE_TOKEN or --token).
     */
    console: z
      .object({
        listen: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8090),
        token: z.string().min(16).optional(),
        maxCalls: z.number().int().min(1).max(64).default(9),
        idleHangupS: z.number().int().min(0).max(86_400).default(300),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type GatewayConfig = z.infer<typeof gatewaySchema>;
export type CameraConfig = z.infer<typeof camera>;

export function loadGatewayConfig(path: string): GatewayConfig & {
  tlsOptions?: { ca?: string; servername?: string; fingerprint?: string };
  cameraList: ReadonlyMap<string, CameraConfig>;
} {
  const config = parseConfig(readConfigFile(path, 'gateway config'), path, gatewaySchema);
  const tlsOptions = config.tls && {
    ca: config.tls.caFile
      ? readConfigFile(resolve(dirname(path), config.tls.caFile), 'TLS CA file')
      : undefined,
    servername: config.tls.servername,
    fingerprint: config.tls.fingerprint,
  };
  const spoolFile = resolve(dirname(path), config.accounting.spoolFile);
  const certificate = resolve(dirname(path), config.media.certificate);
  return {
    ...config,
    /** `cameras:` by name, in a Map: names come from a file and are looked up from the command line. */
    cameraList: new Map(Object.entries(config.cameras ?? {})),
    accounting: { ...config.accounting, spoolFile },
    media: { ...config.media, certificate },
    tlsOptions,
  };
}

/** Values shipped in config/ for the lab: a server outside the lab refuses to start with them. */
const PLACEHOLDER = /change-me|-lab-secret$/;

/**
 * The secrets in `config` that are the shipped placeholders (issue 16): the TURN secret, user
 * passwords and the admin token. Each entry names the field.
 */
export function placeholderSecrets(config: ServerConfig, turnSecret?: string): string[] {
  const found: string[] = [];
  if (turnSecret && PLACEHOLDER.test(turnSecret)) found.push('turn.secret');
  for (const [name, account] of config.users)
    if (PLACEHOLDER.test(account.password)) found.push(`the password of user '${name}'`);
  if (config.admin?.token && PLACEHOLDER.test(config.admin.token)) found.push('admin.token');
  if (config.cluster?.secret && PLACEHOLDER.test(config.cluster.secret)) found.push('cluster.secret');
  return found;
}

/** A DNS name (RFC 1123 labels), resolved at start. */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * `host[:port]`: an IPv4 literal, or a host name left for the caller to resolve (`resolveHost`).
 */
export function parseEndpoint(text: string, what: string, defaultPort?: number): Endpoint {
  const [address, portText, extra] = text.split(':');
  const portNumber = portText === undefined ? defaultPort : Number(portText);
  if (
    !address ||
    extra !== undefined ||
    !(isIpv4(address) || (HOST_NAME.test(address) && !/^[\d.]+$/.test(address))) ||
    portNumber === undefined ||
    !Number.isInteger(portNumber) ||
    portNumber < 1 ||
    portNumber > 65535
  ) {
    throw new UsageError(
      `${what} must be host[:port] (an IPv4 address or a host name), e.g. 198.18.0.10:5060 or sip.example.org; got '${text}'`,
    );
  }
  return { address, port: portNumber };
}

/**
 * A relay as `IPv4[:port]` or a TURN URI (RFC 7065): `turn:198.18.0.10:3478?transport=udp`, or
 * `?transport=tcp` to reach the server over TCP where UDP is blocked, or `turns:198.18.0.10:5349`
 * for TLS over TCP (the relayed leg stays UDP). DTLS (`turns:…?transport=udp`) is refused.
 */
export function parseRelayUrl(
  text: string,
  what: string,
): { server: Endpoint; transport: 'udp' | 'tcp' | 'tls' } {
  const uri = /^(turns?):([^?]+)(?:\?(.*))?$/i.exec(text.trim());
  if (!uri) return { server: parseEndpoint(text, what, 3478), transport: 'udp' };
  const secure = uri[1]!.toLowerCase() === 'turns';
  const transport = (
    new URLSearchParams(uri[3] ?? '').get('transport') ?? (secure ? 'tcp' : 'udp')
  ).toLowerCase();
  if (transport !== 'udp' && transport !== 'tcp')
    throw new UsageError(`${what}: '${text}' asks for transport=${transport}; TURN runs over udp or tcp`);
  if (secure && transport === 'udp')
    throw new UsageError(
      `${what}: '${text}' asks for TURN over DTLS, which is not built; use turns: over tcp`,
    );
  const server = parseEndpoint(uri[2]!, what, secure ? 5349 : 3478);
  return { server, transport: secure ? 'tls' : transport };
}
