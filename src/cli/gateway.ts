/**
 * `sc2c gateway`: register and answer calls until stopped, as one user (`--user`, or the config's
 * `user`) or, with `cameras:` in the config and no `--user`, as every camera listed there.
 */
import type { Command } from 'commander';
import type { Gateway } from '../gateway/gateway.ts';
import { LiveView } from '../media/live-view.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { GatewayAccounting, serveGatewayMetrics } from './accounting.ts';
import { classicType, summarize } from './call-summary.ts';
import { serveCameras } from './cameras.ts';
import { loadGatewayConfig } from './configs.ts';
import { parseInteger } from './errors.ts';
import { RuntimeFailure, startGatewayRetrying } from './failures.ts';
import { type CommonOptions, gatewayInit, withCommon } from './gateway-init.ts';
import { createLog, LOG_LEVELS, parseLogLevel } from './log.ts';
import { ffmpegComponents, livePort, serveMedia } from './media.ts';
import { stopRequested } from './shutdown.ts';

export interface GatewayOptions extends CommonOptions {
  source?: string;
  phone?: boolean;
  record?: string;
  send: boolean;
  live?: string | boolean;
  metrics?: number;
  logJson?: boolean;
  logLevel?: string;
}

/** Prints one line, or with `--json` one JSON object per line. */
export type Print = (line: string, data: Record<string, unknown>) => void;

/**
 * The gateway's log on stdout: a timestamped line per event, or with `--json` / `--log-json` one
 * JSON object per line (`level`, `time`, `msg` and the event's fields).
 */
export function printer(options: { json?: boolean; logJson?: boolean; logLevel?: string }): Print {
  const log = createLog({
    json: options.json || options.logJson,
    level: options.logLevel === undefined ? undefined : parseLogLevel(options.logLevel),
    fd: 1,
  });
  return (line, data) => {
    const level = /error|failed|refused/.test(String(data.event)) ? 'warn' : 'info';
    log[level](line, data);
  };
}

/** Reports what a gateway does: registration, each call, route moves, relay trouble, reconnects. */
export function followGateway(gateway: Gateway, print: Print): void {
  const user = gateway.init.sip.user;
  const probe = gateway.probe;
  print(
    probe.udpBlocked
      ? `registered as ${user}; no STUN answer (UDP looks blocked): calls go through the TURN relay over ${gateway.init.relay?.transport?.toUpperCase()}`
      : `registered as ${user}; NAT ${classicType(probe)} (${probe.mapping} mapping, ${probe.allocation}${probe.delta ? ` +${probe.delta}` : ''}), public ${probe.publicAddress}`,
    { event: 'registered', user, probe },
  );
  gateway.on('call', (outcome) => {
    const s = summarize(outcome);
    print(
      s.ok
        ? `${user}: call ${s.callId} from ${s.peer}: ${s.path} path ${s.pair!.remote.address}:${s.pair!.remote.port} in ${s.setupMs} ms (${s.mode})${s.directReason ? `; ${s.directReason}` : ''}`
        : `${user}: call ${s.callId} from ${s.peer} failed: ${s.reason}`,
      { event: 'call', user, ...s },
    );
  });
  gateway.on('route', (callId, route, why) =>
    print(`${user}: call ${callId}: media moved to the ${route} path (${why})`, {
      event: 'route',
      user,
      callId,
      route,
      why,
    }),
  );
  gateway.on('relay-error', (reason) =>
    print(`${user}: relay: ${reason}`, { event: 'relay-error', user, reason }),
  );
  gateway.on('disconnected', (reason, retryInMs) =>
    print(`${user}: lost the server (${reason}); reconnecting in ${Math.round(retryInMs / 1000)} s`, {
      event: 'disconnected',
      user,
      reason,
      retryInMs,
    }),
  );
  gateway.on('reconnected', (server) =>
    print(`${user}: registered again with ${server.address}:${server.port}`, {
      event: 'reconnected',
      user,
      server: `${server.address}:${server.port}`,
    }),
  );
  gateway.on('port-mapping', (status) =>
    print(
      status.protocol
        ? `${user}: our router maps ports (${status.protocol}, ${status.externalAddress}, ${status.lifetimeS} s leases granted): calls advertise a mapped port`
        : `${user}: no port mapping: ${status.reason}`,
      { event: 'port-mapping', user, portMapping: status },
    ),
  );
  gateway.on('lease', (kind, detail) =>
    print(`${user}: lease ${kind}: ${detail}`, { event: 'lease', user, kind, detail }),
  );
}

export function registerGateway(program: Command): void {
  withCommon(
    program
      .command('gateway')
      .description(
        "register and answer calls until Ctrl-C, as --user or as every camera in the config's cameras:",
      ),
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
      'serve Prometheus /metrics (and /cameras) on 127.0.0.1:PORT',
      parseInteger('--metrics', 1, 65_535),
    )
    .option('--log-json', 'log one JSON object per line (as --json)')
    .option('--log-level <level>', `lowest level logged: ${LOG_LEVELS.join(', ')}`, 'info')
    .action(async (options: GatewayOptions) => {
      const config = loadGatewayConfig(options.config);
      const print = printer(options);
      const stop = new AbortController();
      void stopRequested().then(() => stop.abort());
      const c = { network: new NodeNetwork(), clock: new SystemClock() };
      if (!options.user && config.cameras) {
        await serveCameras(c, options, config, print, stop.signal);
        return;
      }
      const port = livePort(options.live);
      const receive = Boolean(options.phone || options.record || port !== undefined);
      const { init, context } = await gatewayInit(options, { send: options.send, receive });
      let accounting: GatewayAccounting | undefined;
      const metrics =
        options.metrics === undefined
          ? undefined
          : await serveGatewayMetrics(options.metrics, () => (accounting ? [accounting] : []));
      const live = await startLive(port, `sc2c gateway ${init.sip.user}`, options.json).catch(
        (error: Error) => {
          metrics?.close();
          throw new RuntimeFailure(`cannot serve the live view: ${error.message}`);
        },
      );
      let gateway: Gateway;
      try {
        gateway = await startGatewayRetrying(c, init, context, print, stop.signal);
      } catch (error) {
        metrics?.close();
        await live?.close();
        // Stopped while waiting for the server: nothing ran, nothing to report.
        if (stop.signal.aborted && error instanceof RuntimeFailure) return;
        throw error;
      }
      accounting = new GatewayAccounting(gateway, c.clock, config.accounting, (m) =>
        print(m, { event: 'accounting-error', reason: m }),
      );
      accounting.followAnsweredCalls();
      followGateway(gateway, print);
      const media = serveMedia(
        { ...c, ffmpeg: ffmpegComponents },
        gateway,
        config.media,
        {
          source: options.source ?? config.cameraList.get(init.sip.user)?.source,
          recordPattern: options.record,
          live,
          onPeerReport: (callId) => accounting?.peerReported(callId),
        },
        (event, line) => print(line, event),
      );
      await stopRequested();
      await media.close();
      await live?.close();
      gateway.close();
      // Our router's leases go before we do (issue 20); each delete is bounded (3 tries, 1.75 s).
      await Promise.all([accounting.drain(), gateway.released()]);
      metrics?.close();
    });
}

/** The live view when `--live` asked for one; its URL goes to stderr (or a JSON event). */
export async function startLive(
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
