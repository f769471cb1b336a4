/** `sc2c gateway`, `sc2c call` and `sc2c probe`: the gateway on real sockets. */
import type { Command } from 'commander';
import { type CallOutcome, Gateway, type GatewayInit } from '../gateway/gateway.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { TRAVERSAL_MODES, type TraversalMode } from '../protocol/sdp.ts';
import { type NatProbe, probeNat } from '../traversal/probe.ts';
import { UsageError } from '../util/usage-error.ts';
import { loadGatewayConfig, parseEndpoint } from './configs.ts';
import { parseInteger } from './errors.ts';

interface CommonOptions {
  config: string;
  server?: string;
  stun?: string;
  user: string;
  password?: string;
  mode?: string;
  json?: boolean;
}

function gatewayInit(options: CommonOptions): GatewayInit {
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
    },
    stunServer: parseEndpoint(options.stun ?? config.stun, '--stun', 3478),
    mode,
    punch: config.punch,
    rtcpMux: config.rtcpMux,
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
    attempts: outcome.attempts ?? 1,
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
    .option('--json', 'print machine-readable JSON');
}

export function registerGateway(program: Command): void {
  withCommon(
    program
      .command('gateway')
      .description('register with the server and answer calls until Ctrl-C; prints each call outcome'),
  ).action(async (options: CommonOptions) => {
    const gateway = await Gateway.start(
      { network: new NodeNetwork(), clock: new SystemClock() },
      gatewayInit(options),
    );
    const print = (line: string, data: unknown): void => {
      process.stdout.write(options.json ? `${JSON.stringify(data)}\n` : `${line}\n`);
    };
    print(
      `registered as ${options.user}; NAT ${classicType(gateway.probe)} (${gateway.probe.mapping} mapping, ${gateway.probe.allocation}${gateway.probe.delta ? ` +${gateway.probe.delta}` : ''}), public ${gateway.probe.publicAddress}`,
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
          ? `call ${s.callId} from ${s.peer}: direct path ${s.path!.remote.address}:${s.path!.remote.port} in ${s.setupMs} ms (${s.mode})`
          : `call ${s.callId} from ${s.peer} failed: ${s.reason}`,
        { event: 'call', ...s },
      );
    });
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    gateway.close();
  });

  withCommon(
    program
      .command('call')
      .description('call a registered user and open a direct path with the chosen traversal mode'),
  )
    .argument('<callee>', 'user to call')
    .option(
      '--duration <s>',
      'keep each call up this many seconds before hanging up',
      parseInteger('--duration', 0, 86_400),
      0,
    )
    .option(
      '--repeat <n>',
      'place this many calls one after another (QA runs), then print a summary',
      parseInteger('--repeat', 1, 10_000),
      1,
    )
    .option('--gap-ms <n>', 'pause between repeated calls', parseInteger('--gap-ms', 0, 600_000), 1000)
    .action(
      async (
        callee: string,
        options: CommonOptions & { duration: number; repeat: number; gapMs: number },
      ) => {
        const clock = new SystemClock();
        const gateway = await Gateway.start({ network: new NodeNetwork(), clock }, gatewayInit(options));
        const results: ReturnType<typeof summarize>[] = [];
        try {
          for (let i = 0; i < options.repeat; i++) {
            const outcome = await gateway.call(callee);
            const s = summarize(outcome);
            results.push(s);
            if (options.json) process.stdout.write(`${JSON.stringify(s)}\n`);
            else {
              const prefix = options.repeat > 1 ? `[${i + 1}/${options.repeat}] ` : '';
              process.stdout.write(
                s.ok
                  ? `${prefix}direct path to ${callee}: ${s.path!.local.port} -> ${s.path!.remote.address}:${s.path!.remote.port}, set up in ${s.setupMs} ms (${s.mode}; our port ${s.local!.portSource} ${s.local!.publicEndpoint.address}:${s.local!.publicEndpoint.port})\n`
                  : `${prefix}call to ${callee} failed: ${s.reason}\n`,
              );
            }
            if (outcome.ok && options.duration > 0)
              await new Promise((r) => setTimeout(r, options.duration * 1000));
            gateway.hangup(outcome.callId);
            await new Promise((r) => setTimeout(r, i + 1 < options.repeat ? options.gapMs : 200));
          }
          const ok = results.filter((r) => r.ok).length;
          if (options.repeat > 1 && !options.json)
            process.stdout.write(`${ok} of ${options.repeat} calls opened a direct path\n`);
          process.exitCode = ok === results.length ? 0 : 1;
        } finally {
          gateway.close();
        }
      },
    );

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
