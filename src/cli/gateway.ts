/** `sc2c gateway`, `sc2c call` and `sc2c probe`: the gateway on real sockets. */
import type { Command } from 'commander';
import { type CallOutcome, Gateway, type GatewayInit } from '../gateway/gateway.ts';
import { LiveView } from '../media/live-view.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { TRAVERSAL_MODES, type TraversalMode } from '../protocol/sdp.ts';
import { type NatProbe, probeNat } from '../traversal/probe.ts';
import { UsageError } from '../util/usage-error.ts';
import { GatewayAccounting, serveGatewayMetrics } from './accounting.ts';
import { loadGatewayConfig, parseEndpoint, parseRelayUrl } from './configs.ts';
import { parseInteger } from './errors.ts';
import { loadOrCreateIdentity } from './identity.ts';
import {
  ffmpegComponents,
  livePort,
  type MediaComponents,
  mediaRole,
  progressLine,
  serveMedia,
  startCallMedia,
  summarizeMedia,
} from './media.ts';
import { isStopping, stopRequested } from './shutdown.ts';

export interface CommonOptions {
  config: string;
  server?: string;
  stun?: string;
  user: string;
  password?: string;
  mode?: string;
  json?: boolean;
  relay?: string | boolean;
  allow?: string;
  /** Commander's form of `--insecure-media`. */
  insecureMedia?: boolean;
}

export function gatewayInit(options: CommonOptions, role?: { send: boolean; receive: boolean }): GatewayInit {
  const config = loadGatewayConfig(options.config);
  const password = options.password ?? process.env.SC2C_PASSWORD;
  if (!password) throw new UsageError('give --password or set SC2C_PASSWORD');
  const mode = (options.mode ?? config.mode) as TraversalMode;
  if (!(TRAVERSAL_MODES as readonly string[]).includes(mode))
    throw new UsageError(`unknown --mode '${mode}'. Allowed: ${TRAVERSAL_MODES.join(', ')}`);
  return {
    sip: {
      server: parseEndpoint(options.server ?? config.server, '--server', 5060),
      domain: config.domain,
      user: options.user,
      password,
      tls: config.tlsOptions,
    },
    stunServer: parseEndpoint(options.stun ?? config.stun, '--stun', 3478),
    mode,
    punch: config.punch,
    rtcpMux: config.rtcpMux,
    media: role && mediaRole(config.media, role.send, role.receive),
    relay: relayConfig(config.relay, options, password, config.tlsOptions),
    allowedCallers: allowedCallers(options.allow, config.access?.callers),
    maxCalls: config.maxCalls,
    dtls: mediaEncryption(options, config.media),
  };
}

/**
 * DTLS-SRTP unless `--insecure-media` or `media.encryption: none` says otherwise, and then loudly:
 * a warning at start, and `encryption: none` in every call's JSON and record.
 */
function mediaEncryption(
  options: CommonOptions,
  media: ReturnType<typeof loadGatewayConfig>['media'],
): GatewayInit['dtls'] {
  if (options.insecureMedia || media.encryption === 'none') {
    process.stderr.write(
      `warning: ${options.insecureMedia ? '--insecure-media' : 'media.encryption: none'}: video and audio cross the network as plain RTP; anyone on the path can record or inject them\n`,
    );
    return undefined;
  }
  // A user name becomes part of a file name: nothing but the safe characters.
  const path = media.certificate.replaceAll('{user}', options.user.replace(/[^A-Za-z0-9._~-]/g, '_'));
  return { identity: loadOrCreateIdentity(path, `sc2c ${options.user}`).identity };
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

/** The relay from the config, `--relay <ip:port>` to override it, `--no-relay` to go without. */
function relayConfig(
  relay: ReturnType<typeof loadGatewayConfig>['relay'],
  options: CommonOptions,
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
    username: relay?.username ?? options.user,
    password: relay?.password ?? password,
    // An account of its own on the relay (relay.username) is meant to be used as it is.
    credentials: relay?.credentials ?? (relay?.username ? 'static' : 'issued'),
    budgetMs: relay?.budgetMs,
    deadAfterMs: relay?.deadAfterMs,
    retryDirectMs: relay?.retryDirectMs,
    retryDirectAttempts: relay?.retryDirectAttempts,
  };
}

function summarize(outcome: CallOutcome) {
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
    path: outcome.path && {
      local: outcome.path.socket.local,
      remote: outcome.path.remote,
      rtcp: outcome.path.rtcp && { local: outcome.path.rtcp.socket.local, remote: outcome.path.rtcp.remote },
    },
    checksSent: outcome.checksSent,
    encryption: outcome.encryption ?? (outcome.ok ? 'none' : null),
    dtlsMs: outcome.dtlsMs === undefined ? null : Math.round(outcome.dtlsMs),
    attempts: outcome.attempts ?? 1,
    route: outcome.route ?? (outcome.ok ? 'direct' : null),
    directReason: outcome.directReason,
  };
}

/** The TURN server a call's relay leg used, and how it was reached: `{address, port, transport}`. */
function relayServer(relay: GatewayInit['relay']) {
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
  return {
    'endpoint-independent': 'full cone',
    'address-dependent': 'restricted cone',
    'address-and-port-dependent': 'port restricted cone',
  }[probe.filtering];
}

function withCommon(command: Command): Command {
  return command
    .option(
      '--config <file>',
      'gateway config (server, stun, domain, mode, punch timings)',
      'config/gateway.yaml',
    )
    .option('--server <ip[:port]>', 'SIP server (default from the config)')
    .option('--stun <ip[:port]>', 'STUN server (default from the config)')
    .requiredOption('--user <name>', 'SIP user to register as')
    .option('--password <secret>', 'SIP password (or SC2C_PASSWORD)')
    .option('--mode <mode>', `traversal mode: ${TRAVERSAL_MODES.join(', ')}`)
    .option(
      '--relay <server>',
      'TURN relay for calls no direct path serves: ip[:port], or an RFC 7065 URI turn:ip[:port][?transport=udp|tcp] (tcp where UDP is blocked) or turns:ip[:port] (TLS, trusting tls.caFile) (default from the config)',
    )
    .option('--no-relay', 'direct paths only: no TURN allocation')
    .option(
      '--insecure-media',
      'plain RTP instead of DTLS-SRTP (QA comparisons only; the peer must turn encryption off too)',
    )
    .option('--json', 'print machine-readable JSON');
}

export function registerGateway(program: Command): void {
  withCommon(
    program
      .command('gateway')
      .description('register with the server and answer calls until Ctrl-C; prints each call outcome'),
  )
    .option(
      '--source <spec>',
      'media to send: testsrc, file:PATH, rtsp://…, v4l2:/dev/videoN (default from the config)',
    )
    .option('--phone', "video-phone: also receive the caller's media (records with --record)")
    .option('--record <pattern>', 'record what callers send to this MP4 path; {call} becomes the call id')
    .option('--no-send', 'send no media (a viewer that answers calls)')
    .option(
      '--allow <users>',
      "who may call this gateway, comma-separated (default: the config's access.callers)",
    )
    .option('--live [port]', 'show what callers send as MJPEG at http://127.0.0.1:PORT/ (default 8090)')
    .option(
      '--metrics <port>',
      'serve Prometheus /metrics on 127.0.0.1:PORT',
      parseInteger('--metrics', 1, 65_535),
    )
    .action(
      async (
        options: CommonOptions & {
          source?: string;
          phone?: boolean;
          record?: string;
          send: boolean;
          live?: string | boolean;
          metrics?: number;
        },
      ) => {
        const port = livePort(options.live);
        const receive = Boolean(options.phone || options.record || port !== undefined);
        const network = new NodeNetwork();
        const clock = new SystemClock();
        const gateway = await Gateway.start(
          { network, clock },
          gatewayInit(options, { send: options.send, receive }),
        );
        const print = (line: string, data: unknown): void => {
          process.stdout.write(options.json ? `${JSON.stringify(data)}\n` : `${line}\n`);
        };
        const accounting = new GatewayAccounting(
          gateway,
          clock,
          loadGatewayConfig(options.config).accounting,
          (m) => print(m, { event: 'accounting-error', reason: m }),
        );
        accounting.followAnsweredCalls();
        const metrics =
          options.metrics === undefined ? undefined : await serveGatewayMetrics(options.metrics, accounting);
        print(
          gateway.probe.udpBlocked
            ? `registered as ${options.user}; no STUN answer (UDP looks blocked): calls go through the TURN relay over ${gateway.init.relay?.transport?.toUpperCase()}`
            : `registered as ${options.user}; NAT ${classicType(gateway.probe)} (${gateway.probe.mapping} mapping, ${gateway.probe.allocation}${gateway.probe.delta ? ` +${gateway.probe.delta}` : ''}), public ${gateway.probe.publicAddress}`,
          {
            event: 'registered',
            user: options.user,
            probe: gateway.probe,
          },
        );
        gateway.on('call', (outcome) => {
          const s = summarize(outcome);
          print(
            s.ok
              ? `call ${s.callId} from ${s.peer}: ${s.route} path ${s.path!.remote.address}:${s.path!.remote.port} in ${s.setupMs} ms (${s.mode})${s.directReason ? `; ${s.directReason}` : ''}`
              : `call ${s.callId} from ${s.peer} failed: ${s.reason}`,
            { event: 'call', ...s },
          );
        });
        gateway.on('route', (callId, route, why) =>
          print(`call ${callId}: media moved to the ${route} path (${why})`, {
            event: 'route',
            callId,
            route,
            why,
          }),
        );
        gateway.on('relay-error', (reason) => print(`relay: ${reason}`, { event: 'relay-error', reason }));
        const live = await startLive(port, `sc2c gateway ${options.user}`, options.json);
        const media = serveMedia(
          { clock, network, ffmpeg: ffmpegComponents },
          gateway,
          loadGatewayConfig(options.config).media,
          { source: options.source, recordPattern: options.record, live },
          (event, line) => print(line, event),
        );
        await stopRequested();
        await media.close();
        await live?.close();
        gateway.close();
        await accounting.drain();
        metrics?.close();
      },
    );

  withCommon(
    program
      .command('call')
      .description('call a registered user and open a direct path with the chosen traversal mode'),
  )
    .argument('<callee>', 'user to call')
    .option(
      '--duration <s>',
      'keep each call up this many seconds before hanging up (default 10 with media, 0 with --no-media)',
      parseInteger('--duration', 0, 86_400),
    )
    .option('--record <file>', 'record the media the callee sends to this MP4 file')
    .option('--phone', 'video-phone: send our own source too (--source), both ways')
    .option('--source <spec>', 'media to send with --phone (default from the config)')
    .option('--no-media', 'open the direct path only (traversal QA runs): no ffmpeg at either end')
    .option('--live [port]', 'show the video live as MJPEG at http://127.0.0.1:PORT/ (default 8090)')
    .option(
      '--repeat <n>',
      'place this many calls one after another (QA runs), then print a summary',
      parseInteger('--repeat', 1, 10_000),
      1,
    )
    .option('--gap-ms <n>', 'pause between repeated calls', parseInteger('--gap-ms', 0, 600_000), 1000)
    .action(async (callee: string, options: CallOptions) => {
      // From here a signal ends the call in progress cleanly (BYE, a finished MP4) and places no more.
      void stopRequested();
      const clock = new SystemClock();
      const network = new NodeNetwork();
      const role = options.media
        ? { send: Boolean(options.phone), receive: true }
        : { send: false, receive: false };
      const port = livePort(options.live);
      if (port !== undefined && !options.media) throw new UsageError('--live needs media; drop --no-media');
      const gateway = await Gateway.start({ network, clock }, gatewayInit(options, role));
      const accounting = new GatewayAccounting(
        gateway,
        clock,
        loadGatewayConfig(options.config).accounting,
        (m) => process.stderr.write(`${m}\n`),
      );
      const live = await startLive(port, `sc2c call ${callee}`, options.json).catch((error: Error) => {
        gateway.close();
        throw new UsageError(error.message);
      });
      const media: MediaComponents = { clock, network, ffmpeg: ffmpegComponents };
      const mediaConfig = loadGatewayConfig(options.config).media;
      const results: Record<string, unknown>[] = [];
      try {
        for (let i = 0; i < options.repeat; i++) {
          const outcome = await gateway.call(callee);
          const s = summarize(outcome);
          const prefix = options.repeat > 1 ? `[${i + 1}/${options.repeat}] ` : '';
          const routes: { atMs: number; route: string; why: string }[] = [];
          const offRoute = gateway.on('route', (callId, route, why) => {
            if (callId !== outcome.callId) return;
            routes.push({ atMs: Math.round(clock.now() - outcome.startedAtMs), route, why });
            if (!options.json) process.stdout.write(`${prefix}media moved to the ${route} path (${why})\n`);
          });
          if (!options.json) {
            process.stdout.write(
              s.ok
                ? `${prefix}${s.route} path to ${callee}: ${s.path!.local.port} -> ${s.path!.remote.address}:${s.path!.remote.port}, set up in ${s.setupMs} ms (${s.mode}; our port ${s.local!.portSource} ${s.local!.publicEndpoint.address}:${s.local!.publicEndpoint.port})${s.directReason ? `; ${s.directReason}` : ''}\n`
                : `${prefix}call to ${callee} failed: ${s.reason}\n`,
            );
          }
          const durationS = options.duration ?? (options.media ? 10 : 0);
          const held = outcome.ok
            ? await holdCall(media, gateway, outcome, mediaConfig, options, durationS, live)
            : { ok: false, reason: s.reason };
          const bytes = routeBytes(outcome);
          offRoute();
          gateway.hangup(outcome.callId, held.ok ? undefined : held.reason);
          await accounting.record(outcome, outcome.ok && !held.ok ? held.reason : undefined);
          const result = {
            ...s,
            ok: s.ok && held.ok,
            reason: held.ok ? s.reason : held.reason,
            media: held.media,
            bytes,
            routes,
            relayServer: relayServer(gateway.init.relay),
          };
          results.push(result);
          if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
          else if (outcome.ok && !held.ok) process.stdout.write(`${prefix}call ended: ${held.reason}\n`);
          if (isStopping()) break;
          await new Promise((r) => setTimeout(r, i + 1 < options.repeat ? options.gapMs : 200));
        }
        const ok = results.filter((r) => r.ok).length;
        const relayed = results.filter((r) => r.ok && r.route === 'relay').length;
        if (options.repeat > 1 && !options.json)
          process.stdout.write(
            `${ok - relayed} of ${options.repeat} calls opened a direct path${relayed ? `, ${relayed} went through the relay` : ''}\n`,
          );
        process.exitCode = ok === results.length ? 0 : 1;
      } finally {
        await live?.close();
        gateway.close();
        await accounting.drain();
      }
    });

  program
    .command('probe')
    .description("classify this machine's NAT from repeated STUN tests (paper steps 5-8, RFC 5780)")
    .requiredOption(
      '--server <ip[:port]>',
      'STUN server with RFC 5780 support (OTHER-ADDRESS), e.g. our sc2c server',
    )
    .option('--rto-ms <n>', 'STUN retransmission timeout', parseInteger('--rto-ms', 10, 10_000), 200)
    .option('--json', 'print machine-readable JSON')
    .action(async (options: { server: string; rtoMs: number; json?: boolean }) => {
      const probe = await probeNat(
        { network: new NodeNetwork(), clock: new SystemClock() },
        { server: parseEndpoint(options.server, '--server', 3478), rtoMs: options.rtoMs },
      );
      const result = { ...probe, classic: classicType(probe) };
      if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else {
        process.stdout.write(
          `public address ${probe.publicAddress}\nmapping        ${probe.mapping}\nfiltering      ${probe.filtering}\nallocation     ${probe.allocation}${probe.delta ? ` (+${probe.delta})` : ''}, last port ${probe.lastPort}\nICMP closes   ${probe.ips === null ? 'unknown (per-destination mapping)' : probe.ips ? 'yes: the mapping (IPS)' : 'no'}\nclassic type   ${result.classic}\n`,
        );
      }
    });
}

interface CallOptions extends CommonOptions {
  duration?: number;
  repeat: number;
  gapMs: number;
  record?: string;
  phone?: boolean;
  source?: string;
  media: boolean;
  live?: string | boolean;
}

/** The live view when `--live` asked for one; its URL goes to stderr (or a JSON event). */
async function startLive(
  port: number | undefined,
  title: string,
  json?: boolean,
): Promise<LiveView | undefined> {
  if (port === undefined) return undefined;
  const live = await LiveView.start({ port, title });
  process.stderr.write(
    json ? `${JSON.stringify({ event: 'live', url: live.url })}\n` : `live view: ${live.url}\n`,
  );
  return live;
}

/**
 * Keeps an established call up for `durationS` with its media running, printing a progress line
 * each second; ends early when the peer hangs up or the media fails. Never throws.
 */
async function holdCall(
  c: MediaComponents,
  gateway: Gateway,
  outcome: CallOutcome,
  config: ReturnType<typeof loadGatewayConfig>['media'],
  options: CallOptions,
  durationS: number,
  live?: LiveView,
): Promise<{ ok: boolean; reason?: string; media?: ReturnType<typeof summarizeMedia> }> {
  let session: Awaited<ReturnType<typeof startCallMedia>>;
  try {
    session = options.media
      ? await startCallMedia(c, outcome, config, { source: options.source, recordPath: options.record, live })
      : undefined;
  } catch (error) {
    return { ok: false, reason: `media failed to start: ${(error as Error).message}` };
  }
  let ended: string | undefined;
  const stop = new AbortController();
  const offEnded = gateway.on('ended', (callId, reason) => {
    if (callId !== outcome.callId) return;
    ended = reason;
    stop.abort();
  });
  session?.on('failed', (reason) => {
    ended = reason;
    stop.abort();
  });
  // SIGINT or SIGTERM: hang up with a BYE and finish the recording (a valid MP4), then exit.
  void stopRequested().then(() => stop.abort());
  const started = Date.now();
  // The live line is for a person at a terminal; --json and pipes get the summary only.
  const tty = session && !options.json && process.stderr.isTTY === true;
  const progress = tty
    ? setInterval(
        () => process.stderr.write(`${progressLine(session!.stats(), (Date.now() - started) / 1000)}\n`),
        1000,
      )
    : undefined;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, durationS * 1000);
    stop.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  clearInterval(progress);
  offEnded();
  // BYE first, so the peer stops sending while our recorder finishes its file.
  gateway.hangup(outcome.callId, ended);
  await session?.close();
  const media = session && {
    ...summarizeMedia(session.stats()),
    encryption: outcome.encryption ?? 'none',
    srtpAuthFailures: outcome.secure?.counters.authFailures ?? 0,
  };
  if (media && !options.json)
    process.stdout.write(`media: ${progressLine(session!.stats(), (Date.now() - started) / 1000, true)}\n`);
  return ended ? { ok: false, reason: ended, media } : { ok: true, media };
}
