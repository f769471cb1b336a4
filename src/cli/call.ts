/** `sc2c call` and `sc2c probe`: place calls (a viewer, a phone, a QA run) and classify the NAT. */
import { networkInterfaces } from 'node:os';
import type { Command } from 'commander';
import type { CallOutcome, Gateway } from '../gateway/gateway.ts';
import type { LiveView } from '../media/live-view.ts';
import { isIpv4 } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { defaultRoute } from '../net/default-route.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { PortMapper, type PortMappingStatus } from '../traversal/port-mapper.ts';
import type { PortMappingProtocol } from '../traversal/port-mapping.ts';
import { findPrimeTtl } from '../traversal/prime-ttl.ts';
import { probeNat } from '../traversal/probe.ts';
import { UsageError } from '../util/usage-error.ts';
import { GatewayAccounting } from './accounting.ts';
import { classicType, finalPath, relayServer, routeBytes, summarize } from './call-summary.ts';
import { loadGatewayConfig, parseEndpoint } from './configs.ts';
import { parseInteger } from './errors.ts';
import { resolveHost, startGateway } from './failures.ts';
import { startLive } from './gateway.ts';
import { type CommonOptions, gatewayInit, parsePortMappingProtocols, withCommon } from './gateway-init.ts';
import {
  ffmpegComponents,
  livePort,
  type MediaComponents,
  progressLine,
  startCallMedia,
  summarizeMedia,
} from './media.ts';
import { isStopping, stopRequested } from './shutdown.ts';

export function registerCall(program: Command): void {
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
      const { init, context } = await gatewayInit(options, role);
      const gateway = await startGateway({ network, clock }, init, context);
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
                ? `${prefix}${s.path} path to ${callee}: ${s.pair!.local.port} -> ${s.pair!.remote.address}:${s.pair!.remote.port}, set up in ${s.setupMs} ms (${s.mode}; our port ${s.local!.portSource} ${s.local!.publicEndpoint.address}:${s.local!.publicEndpoint.port})${s.directReason ? `; ${s.directReason}` : ''}\n`
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
            // Where media ended up: a relayed start that a retry moved to a direct path says so.
            path: finalPath(outcome),
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
        await Promise.all([accounting.drain(), gateway.released()]);
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
    .option(
      '--gateway <ip>',
      'the router to ask for a port mapping (PCP, then NAT-PMP; default: the default route)',
    )
    .option('--no-port-mapping', 'do not ask the router for a port mapping')
    .option(
      '--port-mapping-protocols <list>',
      'protocols to try, in order (default pcp,nat-pmp,upnp)',
      parsePortMappingProtocols,
    )
    .option(
      '--prime-ttl',
      'also read the TTL a priming packet needs to cross our NAT (issue 21; sequential NATs): primeTtl',
    )
    .option('--json', 'print machine-readable JSON')
    .action(
      async (options: {
        primeTtl?: boolean;
        server: string;
        rtoMs: number;
        gateway?: string;
        portMapping: boolean;
        portMappingProtocols?: PortMappingProtocol[];
        json?: boolean;
      }) => {
        if (options.gateway !== undefined && !isIpv4(options.gateway))
          throw new UsageError(`--gateway takes the router's IPv4 address; got '${options.gateway}'`);
        const c = { network: new NodeNetwork(), clock: new SystemClock() };
        const server = await resolveHost(parseEndpoint(options.server, '--server', 3478), '--server');
        const probe = await probeNat(c, { server, rtoMs: options.rtoMs });
        // Behind no NAT (STUN saw one of our own addresses) there is no router to ask.
        const ownAddress = Object.values(networkInterfaces())
          .flat()
          .some((a) => a?.address === probe.publicAddress);
        const portMapping = !options.portMapping
          ? undefined
          : ownAddress
            ? { protocol: null, reason: `no NAT in front of ${probe.publicAddress}: nothing to map` }
            : await probePortMapping(c, options.gateway, options.portMappingProtocols);
        const primeTtl = !options.primeTtl
          ? undefined
          : probe.allocation === 'sequential' && probe.delta !== null
            ? await findPrimeTtl(c, { server, delta: probe.delta, rtoMs: options.rtoMs })
            : {
                ttl: null,
                reason: `our NAT allocates ${probe.allocation}: its counter cannot be read`,
                samples: 0,
              };
        const result = {
          ...probe,
          classic: classicType(probe),
          ...(portMapping ? { portMapping } : {}),
          ...(primeTtl ? { primeTtl } : {}),
        };
        if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
        else {
          const mapped = !portMapping
            ? ''
            : portMapping.protocol
              ? `port mapping   ${portMapping.protocol}: ${portMapping.externalAddress}:${portMapping.externalPort} for ${portMapping.lifetimeS} s (deleted again)\n`
              : `port mapping   none: ${portMapping.reason}\n`;
          const primed = !primeTtl
            ? ''
            : primeTtl.ttl !== null
              ? `priming TTL    ${primeTtl.ttl} (the smallest that crosses our NAT)\n`
              : `priming TTL    unknown: ${primeTtl.reason}\n`;
          process.stdout.write(
            `public address ${probe.publicAddress}\nmapping        ${probe.mapping}\nfiltering      ${probe.filtering}\nallocation     ${probe.allocation}${probe.delta ? ` (+${probe.delta})` : ''}, last port ${probe.lastPort}\nICMP closes   ${probe.ips === null ? 'unknown (per-destination mapping)' : probe.ips ? 'yes: the mapping (IPS)' : 'no'}\nclassic type   ${result.classic}\n${mapped}${primed}`,
          );
        }
      },
    );
}

/**
 * Issue 20: asks the router (given, or the default route's) for a mapping of a fresh port and
 * deletes it again: what a gateway here would get.
 */
async function probePortMapping(
  c: { network: NodeNetwork; clock: SystemClock },
  gateway: string | undefined,
  protocols?: readonly PortMappingProtocol[],
): Promise<PortMappingStatus> {
  const route = defaultRoute();
  const router = gateway ?? ('reason' in route ? undefined : route.gateway);
  if (router === undefined) return { protocol: null, reason: 'reason' in route ? route.reason : 'no router' };
  const clientAddress = 'reason' in route ? undefined : route.address;
  if (clientAddress === undefined) return { protocol: null, reason: (route as { reason: string }).reason };
  return (await PortMapper.detect(c, { gateway: router, clientAddress, protocols })).status;
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
