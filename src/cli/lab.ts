/** `sc2c lab ...`: the kernel lab of namespaces, TUN devices and emulated NATs and WAN links. */
import { type ChildProcess, spawn } from 'node:child_process';
import { basename, extname } from 'node:path';
import type { Command } from 'commander';
import { listLabs, requestControl } from '../lab/control.ts';
import { runLabDaemon } from '../lab/daemon.ts';
import { checkLabName, resolveLab, startLab, stopLab } from '../lab/instances.ts';
import type { Lab, LabStatus } from '../lab/lab.ts';
import { labStatusToPrometheus } from '../lab/metrics.ts';
import { labNatcheck } from '../lab/natcheck.ts';
import { runClientAgent, runHelperAgent } from '../lab/natcheck-agent.ts';
import { checkLabPrerequisites, LabPrerequisiteError } from '../lab/netns.ts';
import { loadScenario, type Scenario } from '../lab/scenario.ts';
import { DEFAULT_PROFILES_PATH, loadProfiles } from '../nat/profiles.ts';
import { type Endpoint, isIpv4 } from '../net/address.ts';
import { parseInteger, UsageError } from './errors.ts';
import { formatNatcheckTable } from './sim.ts';

function endpointArg(text: string): Endpoint {
  const [address, port] = text.split(':');
  if (!address || !isIpv4(address) || !(Number(port) > 0 && Number(port) < 65536)) {
    throw new UsageError(`expected IPv4:port, got '${text}'`);
  }
  return { address, port: Number(port) };
}

function defaultName(scenarioPath: string): string {
  return basename(scenarioPath, extname(scenarioPath))
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 16);
}

async function prerequisites(): Promise<void> {
  try {
    await checkLabPrerequisites();
  } catch (error) {
    if (error instanceof LabPrerequisiteError) throw new UsageError(`lab unavailable: ${error.message}`);
    throw error;
  }
}

function describeHosts(scenario: Scenario): string[] {
  const lines = [`  server    ${scenario.server.addresses.join(', ')}`];
  for (const h of scenario.hosts) lines.push(`  ${h.name.padEnd(9)} ${h.address}`);
  for (const n of scenario.nats) {
    const what = n.profile ?? `kernel ${n.kernel}`;
    for (const h of n.hosts)
      lines.push(`  ${h.name.padEnd(9)} ${h.address} behind ${n.name} (${what}, public ${n.publicAddress})`);
  }
  return lines;
}

export function formatStatus(status: LabStatus): string {
  const lines = [`lab ${status.name} (pid ${status.pid}, up ${status.uptimeS} s)`, '', 'hosts:'];
  for (const h of status.hosts) {
    const c = h.counters;
    lines.push(
      `  ${h.name.padEnd(12)} ${h.addresses.join(',').padEnd(26)} tx ${c.txPackets} pkt / ${c.txBytes} B   rx ${c.rxPackets} pkt / ${c.rxBytes} B${c.undecodable ? `   not routed ${c.undecodable}` : ''}`,
    );
  }
  lines.push('', 'links (up = toward the internet):');
  for (const l of status.links) {
    lines.push(
      `  ${l.name.padEnd(26)} up ${l.up.packets} pkt / ${l.up.bytes} B (lost ${l.up.lostPackets}; media ${l.up.rtpBytes} B direct, ${l.up.channelDataBytes} B relayed)   down ${l.down.packets} pkt / ${l.down.bytes} B (lost ${l.down.lostPackets}; media ${l.down.rtpBytes} B direct, ${l.down.channelDataBytes} B relayed)`,
    );
  }
  lines.push('', 'nats:');
  for (const n of status.nats)
    lines.push(
      `  ${n.name.padEnd(12)} ${n.profile}${n.mappings === null ? '' : `   ${n.mappings} live mappings`}`,
    );
  return `${lines.join('\n')}\n`;
}

/** Runs `command` inside a lab host; resolves with its exit code. */
export function execInHost(
  namespace: string,
  command: readonly string[],
  stdio: 'inherit' | 'pipe' = 'inherit',
): ChildProcess {
  return spawn('ip', ['netns', 'exec', namespace, ...command], { stdio });
}

function waitExit(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.on('error', () => resolve(127));
  });
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description(
      'the kernel lab: real processes in network namespaces behind emulated NATs, with WAN delay, loss and counters (root)',
    );

  lab
    .command('up')
    .description('bring a lab up in the background from a scenario file (see config/lab/)')
    .argument('<scenario>', 'scenario YAML file, e.g. config/lab/pks-vs-ips.yaml')
    .option('--name <name>', 'instance name (default: the file name); lets several labs run at once')
    .option('--pcap <dir>', 'write one pcap file per link into <dir> (tcpdump/tshark read them)')
    .option('--seed <n>', 'seed for link loss and jitter draws', parseInteger('--seed', 0, 2 ** 32 - 1))
    .option('--json', 'print the lab state as JSON')
    .action(
      async (
        scenarioPath: string,
        options: { name?: string; pcap?: string; seed?: number; json?: boolean },
      ) => {
        const scenario = loadScenario(scenarioPath);
        await prerequisites();
        const name = checkLabName(options.name ?? defaultName(scenarioPath));
        process.stderr.write(`bringing up lab '${name}' from ${scenarioPath}...\n`);
        const state = await startLab({
          scenarioPath,
          scenario,
          name,
          pcapDir: options.pcap,
          seed: options.seed,
        });
        if (options.json) {
          process.stdout.write(`${JSON.stringify(state, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          [
            `lab '${name}' is up (pid ${state.pid}).`,
            ...describeHosts(scenario),
            '',
            `run a command in a host:  sc2c lab exec ${Object.keys(state.hosts)[1] ?? 'server'} -- ip addr`,
            `counters:                 sc2c lab status${listLabs().length > 1 ? ` --lab ${name}` : ''} [--json | --prometheus]`,
            `stop it:                  sc2c lab down ${name}`,
            '',
          ].join('\n'),
        );
      },
    );

  lab
    .command('down')
    .description('stop a lab and remove its namespaces and devices')
    .argument('[name]', 'lab to stop (default: the only one running)')
    .option('--all', 'stop every running lab')
    .action(async (name: string | undefined, options: { all?: boolean }) => {
      const targets = options.all ? listLabs() : [resolveLab(name)];
      for (const state of targets) {
        await stopLab(state);
        process.stdout.write(`lab '${state.name}' is down; ${state.namespaces.length} namespaces removed\n`);
      }
      if (options.all && targets.length === 0) process.stdout.write('no lab is running\n');
    });

  lab
    .command('status')
    .description('show hosts, link and host byte/packet counters, and NAT mappings')
    .option('--lab <name>', 'which lab (default: the only one running)')
    .option('--json', 'print the counters as JSON')
    .option('--prometheus', 'print the counters in Prometheus text format')
    .action(async (options: { lab?: string; json?: boolean; prometheus?: boolean }) => {
      const state = resolveLab(options.lab);
      const status = (await requestControl(state.name, { cmd: 'status' })) as LabStatus;
      if (options.json) process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      else if (options.prometheus) process.stdout.write(labStatusToPrometheus(status));
      else process.stdout.write(formatStatus(status));
    });

  lab
    .command('exec')
    .description('run a command inside a lab host (its network namespace)')
    .argument('<host>', 'host name from the scenario, e.g. alice or server')
    .argument('<command...>', 'the command; put -- before it')
    .option('--lab <name>', 'which lab (default: the only one running)')
    .action(async (host: string, command: string[], options: { lab?: string }) => {
      const state = resolveLab(options.lab);
      const namespace = state.hosts[host];
      if (!namespace)
        throw new UsageError(
          `lab '${state.name}' has no host '${host}' (hosts: ${Object.keys(state.hosts).join(', ')})`,
        );
      const child = execInHost(namespace, command);
      // `ip netns exec` execs the command itself, so a signal to it reaches the command.
      const forward = (signal: NodeJS.Signals): void => {
        child.kill(signal);
      };
      process.on('SIGTERM', forward);
      process.on('SIGINT', forward);
      process.exitCode = await waitExit(child);
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
    });

  lab
    .command('flush')
    .description('expire every mapping of a userspace NAT at once (to test failover)')
    .argument('<nat>', 'NAT name from the scenario')
    .option('--lab <name>', 'which lab (default: the only one running)')
    .option('--udp', 'only UDP mappings (a media timeout); established TCP, like SIP, survives')
    .option('--json', 'print the result as JSON')
    .action(async (nat: string, options: { lab?: string; udp?: boolean; json?: boolean }) => {
      const state = resolveLab(options.lab);
      const result = (await requestControl(state.name, {
        cmd: 'flush',
        nat,
        ...(options.udp ? { proto: 'udp' as const } : {}),
      })) as { flushed: number };
      if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else process.stdout.write(`flushed ${result.flushed} mappings on ${nat}\n`);
    });

  lab
    .command('portmap')
    .description(
      "list a kernel:miniupnpd NAT's port mappings (miniupnpd's redirects, and its DNAT rules in the kernel)",
    )
    .argument('<nat>', 'NAT name from the scenario')
    .option('--lab <name>', 'which lab (default: the only one running)')
    .option(
      '--restart',
      'reboot the router first: miniupnpd stops, its mappings go, it starts with a new epoch',
    )
    .option(
      '--json',
      'print {nat, starts, redirects: [{protocol, externalPort, internal, expiresAt, description}], kernelRules}',
    )
    .action(async (nat: string, options: { lab?: string; restart?: boolean; json?: boolean }) => {
      const state = resolveLab(options.lab);
      const result = (await requestControl(
        state.name,
        { cmd: 'portmap', nat, ...(options.restart ? { restart: true } : {}) },
        30_000,
      )) as Awaited<ReturnType<Lab['portmap']>>;
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const now = Date.now() / 1000;
      const lines = result.redirects.map(
        (r) =>
          `${r.protocol} ${r.externalPort} -> ${r.internal.address}:${r.internal.port}  ${r.expiresAt ? `${Math.max(0, Math.round(r.expiresAt - now))} s left` : 'permanent'}  ${r.description}`,
      );
      process.stdout.write(
        `${nat}: ${result.redirects.length} redirects (${result.kernelRules} DNAT rules in the kernel; miniupnpd started ${result.starts} times)\n${lines.map((l) => `  ${l}\n`).join('')}`,
      );
    });

  lab
    .command('run')
    .description(
      "bring a lab up, run the scenario's steps (or wait for Ctrl-C if it has none), print the counters, and tear it down",
    )
    .argument('<scenario>', 'scenario YAML file')
    .option('--name <name>', 'instance name (default: the file name)')
    .option('--pcap <dir>', 'write one pcap file per link into <dir>')
    .option('--json', 'print the final counters as JSON')
    .action(async (scenarioPath: string, options: { name?: string; pcap?: string; json?: boolean }) => {
      const scenario = loadScenario(scenarioPath);
      await prerequisites();
      const name = checkLabName(options.name ?? defaultName(scenarioPath));
      const state = await startLab({ scenarioPath, scenario, name, pcapDir: options.pcap });
      const background: ChildProcess[] = [];
      let interrupted = false;
      const onSignal = (): void => {
        interrupted = true;
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        if (scenario.run.length === 0) {
          process.stderr.write(`lab '${name}' is up; Ctrl-C to stop it\n`);
          while (!interrupted) await new Promise((r) => setTimeout(r, 200));
        }
        for (const [i, step] of scenario.run.entries()) {
          if (interrupted) break;
          process.stderr.write(
            `[step ${i + 1}/${scenario.run.length}] ${step.host}: ${step.command.join(' ')}\n`,
          );
          const child = execInHost(state.hosts[step.host]!, step.command);
          if (step.background) background.push(child);
          else {
            const code = await waitExit(child);
            if (code !== 0) {
              process.exitCode = 1;
              process.stderr.write(`step ${i + 1} exited with ${code}; stopping\n`);
              break;
            }
          }
        }
        const status = (await requestControl(name, { cmd: 'status' })) as LabStatus;
        process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
      } finally {
        for (const child of background) child.kill('SIGTERM');
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await stopLab(state);
      }
    });

  lab
    .command('natcheck')
    .description(
      "discover every NAT profile's behaviour with real sockets from inside lab hosts; same JSON schema as sim natcheck",
    )
    .option(
      '-p, --profile <spec...>',
      'profile(s) to check (default: every shipped profile and its +pks/+ips variants)',
    )
    .option('--profiles <file>', 'NAT profile file', DEFAULT_PROFILES_PATH)
    .option('--no-kernel', 'leave out the kernel (nftables masquerade) NAT rows')
    .option('--json', 'print a JSON array of {profile, declared, observed, match, mismatches, unobservable}')
    .option('-q, --quiet', 'no progress lines on stderr')
    .action(
      async (options: {
        profile?: string[];
        profiles: string;
        kernel: boolean;
        json?: boolean;
        quiet?: boolean;
      }) => {
        const catalog = loadProfiles(options.profiles);
        const specs = options.profile ?? catalog.shippedSpecs();
        for (const spec of specs) catalog.resolve(spec);
        await prerequisites();
        const results = await labNatcheck({
          specs,
          catalog,
          kernel: options.kernel,
          onProgress: options.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
        });
        if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
        else process.stdout.write(formatNatcheckTable(results));
        if (results.some((r) => !r.match)) process.exitCode = 1;
      },
    );

  const agent = lab
    .command('natcheck-agent', { hidden: true })
    .description('the two halves of lab natcheck, run inside lab hosts');
  agent
    .command('helper')
    .requiredOption('--primary <ip:port>')
    .requiredOption('--alternate <ip:port>')
    .requiredOption('--control-port <n>', '', parseInteger('--control-port', 1, 65535))
    .option('--duration-s <n>', 'stop after this many seconds', parseInteger('--duration-s', 1, 86_400), 3600)
    .action(async (o: { primary: string; alternate: string; controlPort: number; durationS: number }) => {
      await runHelperAgent(
        { primary: endpointArg(o.primary), alternate: endpointArg(o.alternate), controlPort: o.controlPort },
        o.durationS * 1000,
      );
    });
  agent
    .command('client')
    .requiredOption('--control <ip:port>')
    .requiredOption('--primary <ip:port>')
    .requiredOption('--alternate <ip:port>')
    .option('--rto-ms <n>', 'STUN retransmission timeout', parseInteger('--rto-ms', 10, 10_000), 100)
    .action(async (o: { control: string; primary: string; alternate: string; rtoMs: number }) => {
      const report = await runClientAgent(
        endpointArg(o.control),
        endpointArg(o.primary),
        endpointArg(o.alternate),
        o.rtoMs,
      );
      process.stdout.write(`${JSON.stringify(report)}\n`);
    });

  lab
    .command('daemon', { hidden: true })
    .description('the lab process itself (started by lab up / lab run)')
    .argument('<scenario>')
    .requiredOption('--name <name>')
    .option('--pcap <dir>')
    .option('--seed <n>', '', parseInteger('--seed', 0, 2 ** 32 - 1))
    .action(async (scenarioPath: string, options: { name: string; pcap?: string; seed?: number }) => {
      await runLabDaemon({
        scenarioPath,
        name: checkLabName(options.name),
        pcapDir: options.pcap,
        seed: options.seed,
      });
    });
}
