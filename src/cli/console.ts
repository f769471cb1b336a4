/**
 * `sc2c console`: the operator's browser console (issue 22). This process is the viewer's agent:
 * it registers like `sc2c call`, lists the cameras the server says it may call, places a call per
 * tile and serves the video to the page remuxed (fMP4), never transcoded.
 */
import { lstatSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { isIpv4 } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { CAMERAS_EVENT, REPORT_EVENT } from '../signaling/presence.ts';
import { UsageError } from '../util/usage-error.ts';
import { consoleApp } from '../web/console-app.ts';
import { ConsoleCalls } from '../web/console-calls.ts';
import { GatewayAccounting } from './accounting.ts';
import { loadGatewayConfig } from './configs.ts';
import { listenProblem, parseInteger } from './errors.ts';
import { startGateway } from './failures.ts';
import { type CommonOptions, gatewayInit, withCommon } from './gateway-init.ts';
import { ffmpegComponents } from './media.ts';
import { stopRequested } from './shutdown.ts';

interface ConsoleOptions extends CommonOptions {
  port?: number;
  listen?: string;
  token?: string;
  unix?: string;
  allowHost?: string[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function registerConsole(program: Command): void {
  withCommon(
    program
      .command('console')
      .description(
        'the operator console in a browser: cameras, live video (H.264 remuxed, not transcoded), call panel, relay savings',
      ),
  )
    .option(
      '--port <n>',
      'HTTP port (default console.port in the config: 8090; 0 picks a free one)',
      parseInteger('--port', 0, 65535),
    )
    .option(
      '--listen <ip>',
      'address to listen on (default console.listen: 127.0.0.1); off loopback a token is required',
    )
    .option(
      '--token <secret>',
      'require this token (16+ characters; or SC2C_CONSOLE_TOKEN, or console.token)',
    )
    .option(
      '--unix <path>',
      'also listen on this Unix socket (the lab demo reaches a console in a namespace through it)',
    )
    .option(
      '--allow-host <list>',
      'also answer to these Host values (host:port, comma-separated): the address of a forwarder in front of the console',
      (value: string) =>
        value
          .split(',')
          .map((h) => h.trim().toLowerCase())
          .filter(Boolean),
    )
    .addHelpText(
      'after',
      '\nOpen the printed URL. With a token, sign in at /login,\nor send Authorization: Bearer TOKEN to /api/*.\n',
    )
    .action(async (options: ConsoleOptions) => {
      void stopRequested();
      const config = loadGatewayConfig(options.config);
      const listen = options.listen ?? config.console.listen;
      const port = options.port ?? config.console.port;
      const token = options.token ?? process.env.SC2C_CONSOLE_TOKEN ?? config.console.token;
      if (listen !== 'localhost' && !isIpv4(listen))
        throw new UsageError(`--listen takes an IPv4 address or localhost; got '${listen}'`);
      if (token !== undefined && token.length < 16)
        throw new UsageError('the console token must be at least 16 characters');
      if (!LOOPBACK.has(listen) && token === undefined)
        throw new UsageError(
          `the console would listen on ${listen} without a token: give --token (or SC2C_CONSOLE_TOKEN, console.token in ${options.config}), or listen on 127.0.0.1`,
        );
      const clock = new SystemClock();
      const network = new NodeNetwork();
      const { init, context } = await gatewayInit(options, { send: false, receive: true });
      const gateway = await startGateway({ network, clock }, init, context);
      const log = (line: string): void => {
        process.stderr.write(`${line}\n`);
      };
      const accounting = new GatewayAccounting(gateway, clock, config.accounting, log);
      const calls = new ConsoleCalls({ clock, network, ffmpeg: ffmpegComponents }, gateway, accounting, {
        media: config.media,
        maxCalls: config.console.maxCalls,
        idleHangupS: config.console.idleHangupS,
      });
      const fetchJson = async (event: string): Promise<unknown> =>
        JSON.parse(await gateway.signaling.fetchState(event)) as unknown;
      let hosts = new Set<string>();
      const app = consoleApp(
        calls,
        { cameras: () => fetchJson(CAMERAS_EVENT), report: () => fetchJson(REPORT_EVENT) },
        { token, hosts: () => hosts, title: `sc2c console (${init.sip.user})` },
      );
      const servers: Server[] = [];
      try {
        const tcp = await listenOn(createServer(app), port, listen);
        servers.push(tcp);
        const bound = (tcp.address() as AddressInfo).port;
        hosts = new Set(
          [listen, ...(LOOPBACK.has(listen) ? ['127.0.0.1', 'localhost'] : [])].map((h) => `${h}:${bound}`),
        );
        hosts = new Set([...hosts, ...(options.allowHost ?? [])]);
        if (options.unix) {
          // A stale socket from an earlier run goes; any other file at that path is an error below.
          if (lstatSync(options.unix, { throwIfNoEntry: false })?.isSocket()) rmSync(options.unix);
          servers.push(await listenOn(createServer(app), options.unix));
        }
        const url = `http://${listen === 'localhost' ? 'localhost' : listen}:${bound}/`;
        process.stdout.write(
          options.json
            ? `${JSON.stringify({ event: 'console', url, user: init.sip.user, token: token !== undefined })}\n`
            : `sc2c console for ${init.sip.user}: ${url}${token ? ' (sign in with the token)' : ''}\n`,
        );
        await stopRequested();
      } finally {
        for (const server of servers) server.close();
        await calls.close();
        gateway.close();
        await Promise.all([accounting.drain(), gateway.released()]);
      }
    });
}

async function listenOn(server: Server, port: number | string, host?: string): Promise<Server> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          `the console cannot listen on ${host ? `${host}:` : ''}${port} (${listenProblem(error)})`,
        ),
      ),
    );
    if (typeof port === 'string') server.listen(port, resolve);
    else server.listen(port, host, resolve);
  });
  return server;
}
