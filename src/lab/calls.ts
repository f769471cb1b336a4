/**
 * Real calls between lab hosts: a lab with a caller NAT and a callee NAT, `sc2c server` in the
 * server host, `sc2c gateway` for the callee, and `sc2c call --repeat` for each mode. Used by the
 * demo and by `npm run bench:lab-sc2c`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { UsageError } from '../util/usage-error.ts';
import { type HostProcess, spawnInHost, stopHostProcesses, waitForOutput } from './host-process.ts';
import { startLab, stopLab } from './instances.ts';
import { KERNEL_NATS, type KernelNat, type Scenario } from './scenario.ts';

/** The lab's configs (`config/`): server, gateway, users. */
export const LAB_CONFIG = fileURLToPath(new URL('../../config/', import.meta.url));
const CONFIG = LAB_CONFIG;

export interface LabCallsInit {
  readonly natA: string;
  readonly natB: string;
  /** Round trip between the two NATs; each NAT is RTT/4 one-way from the core. */
  readonly rttMs: number;
  /** Packet loss on the callee NAT's WAN link, each direction, in percent. Default 0. */
  readonly lossPercent?: number;
  /** Flip one payload bit of every Nth RTP packet leaving the callee's NAT (a tampering attacker). */
  readonly corruptEvery?: number;
  readonly modes: readonly string[];
  readonly callsPerMode: number;
  readonly name: string;
  readonly onLine?: (line: string) => void;
  /** Runs once the lab and the server are up, before the callee starts (e.g. a coturn in the server host). */
  readonly beforeCalls?: (hosts: Readonly<Record<string, string>>) => Promise<void>;
  /** Runs after the calls, while the lab, the server and the callee are still up (host -> namespace). */
  readonly inspect?: (hosts: Readonly<Record<string, string>>) => Promise<void>;
  /** Extra `sc2c call` arguments per mode; default `--no-media --no-relay` (traversal only). */
  readonly callArgs?: (mode: string) => readonly string[];
  /** Extra `sc2c gateway` arguments for the callee (e.g. `--phone --record FILE`). */
  readonly calleeArgs?: readonly string[];
  /** More `sc2c server` flags (`--relay-shards 2`). */
  readonly serverArgs?: readonly string[];
  /** Every JSON event the callee gateway prints (call outcomes, media-started, media-ended). */
  readonly onCalleeEvent?: (event: Record<string, unknown>) => void;
  /** Write one pcap per lab link into this directory (for tracing a failed punch). */
  readonly pcapDir?: string;
  /**
   * New UDP sessions per second another host behind the caller's NAT opens during the calls
   * (issue 19: a busy NAT moves its port counter between prediction and punch). Default 0.
   */
  readonly backgroundPerSecond?: number;
}

/** One `sc2c call --json` result line. */
export interface CallSummary {
  readonly ok: boolean;
  readonly mode: string;
  readonly reason?: string;
  readonly setupMs: number | null;
  readonly local?: { publicEndpoint: { address: string; port: number }; portSource: string; nat: string };
  readonly remote?: { publicEndpoint: { address: string; port: number }; portSource: string; nat: string };
  /** Issue 21: `direct`, `direct-tcp` or `relay`; null when the call failed. */
  readonly path?: 'direct' | 'direct-tcp' | 'relay' | null;
  readonly directReason?: string;
  readonly pair?: { local: { port: number }; remote: { address: string; port: number } };
}

/**
 * A NAT named on the command line: a profile spec of the NAT model (`symmetric-seq1+pks`), or
 * `kernel:<name>` for the kernel's own NAT in a namespace (lab/scenario.ts KERNEL_NATS).
 */
export function natSpec(name: string): { profile: string } | { kernel: KernelNat } {
  if (!name.startsWith('kernel:')) return { profile: name };
  const kernel = name.slice('kernel:'.length);
  if (!(KERNEL_NATS as readonly string[]).includes(kernel))
    throw new UsageError(
      `unknown kernel NAT '${name}'. Allowed: ${KERNEL_NATS.map((k) => `kernel:${k}`).join(', ')}`,
    );
  return { kernel: kernel as KernelNat };
}

export function twoNatScenario(
  natA: string,
  natB: string,
  rttMs: number,
  lossPercent = 0,
  corruptEvery?: number,
  /** Another host behind the caller's NAT (`bg`, 10.0.1.9) for background traffic. */
  backgroundHost = false,
): Scenario {
  const link = { latencyMs: rttMs / 4 };
  const lossy = {
    ...link,
    ...(lossPercent > 0 ? { loss: lossPercent / 100 } : {}),
    ...(corruptEvery ? { up: { corruptEvery } } : {}),
  };
  return {
    description: `${natA} caller facing ${natB} callee, ${rttMs} ms RTT${lossPercent ? `, ${lossPercent} % loss at the callee` : ''}`,
    server: { addresses: ['198.18.0.10', '198.18.0.11'] },
    nats: [
      {
        name: 'nat-a',
        ...natSpec(natA),
        publicAddress: '198.18.1.1',
        lan: '10.0.1.0/24',
        link,
        hosts: [
          { name: 'alice', address: '10.0.1.2' },
          ...(backgroundHost ? [{ name: 'bg', address: '10.0.1.9' }] : []),
        ],
      },
      {
        name: 'nat-b',
        ...natSpec(natB),
        publicAddress: '198.18.2.1',
        lan: '10.0.2.0/24',
        link: lossy,
        hosts: [{ name: 'bob', address: '10.0.2.2' }],
      },
    ],
    hosts: [],
    run: [],
  };
}

export async function runLabCalls(init: LabCallsInit): Promise<Record<string, CallSummary[]>> {
  const background = init.backgroundPerSecond ?? 0;
  const scenario = twoNatScenario(
    init.natA,
    init.natB,
    init.rttMs,
    init.lossPercent,
    init.corruptEvery,
    background > 0,
  );
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-calls-'));
  const scenarioPath = join(dir, 'calls.yaml');
  writeFileSync(scenarioPath, stringify(scenario));
  const state = await startLab({ scenarioPath, scenario, name: init.name, pcapDir: init.pcapDir });
  const children: HostProcess[] = [];
  try {
    const server = spawnInHost(state.hosts.server!, [
      'server',
      '--config',
      `${CONFIG}server.yaml`,
      ...(init.serverArgs ?? []),
    ]);
    children.push(server);
    await waitForOutput(server, /sc2c server:/, 'sc2c server');
    await init.beforeCalls?.(state.hosts);
    if (background > 0) {
      // An echo on the server host answers each session, as a real peer would (no ICMP back). On
      // port 7 (RFC 862): the NAT probe's ICMP tests need port 9 closed.
      children.push(spawnInHost(state.hosts.server!, ['udp', 'echo', '--port', '7', '--duration-s', '3600']));
      const sessions = spawnInHost(state.hosts.bg!, [
        'udp',
        'sessions',
        '--to',
        '198.18.0.10:7',
        '--rate',
        String(background),
        '--duration-s',
        '3600',
      ]);
      children.push(sessions);
      await waitForOutput(sessions, /udp sessions:/, 'the background host');
    }
    const bob = spawnInHost(state.hosts.bob!, [
      'gateway',
      '--config',
      `${CONFIG}gateway.yaml`,
      '--user',
      'bob',
      '--password',
      'bob-lab-secret',
      // The camera checks its callers too, beside the server's users.yaml.
      '--allow',
      'alice,viewer',
      '--json',
      ...(init.calleeArgs ?? []),
    ]);
    children.push(bob);
    let partial = '';
    bob.stdout.on('data', (d) => {
      const lines = (partial + String(d)).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          init.onCalleeEvent?.(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // Not a JSON line.
        }
      }
    });
    await waitForOutput(bob, /"event":"registered"/, 'the callee gateway');
    const results: Record<string, CallSummary[]> = {};
    for (const mode of init.modes) {
      const caller = spawnInHost(state.hosts.alice!, [
        'call',
        'bob',
        '--config',
        `${CONFIG}gateway.yaml`,
        '--user',
        'alice',
        '--password',
        'alice-lab-secret',
        '--mode',
        mode,
        '--repeat',
        String(init.callsPerMode),
        '--gap-ms',
        '500',
        '--json',
        ...(init.callArgs?.(mode) ?? ['--no-media', '--no-relay']),
      ]);
      children.push(caller);
      let stdout = '';
      let stderr = '';
      caller.stdout!.on('data', (d) => {
        stdout += d;
        for (const line of String(d).trim().split('\n')) if (line) init.onLine?.(line);
      });
      caller.stderr!.on('data', (d) => {
        stderr += d;
      });
      await new Promise((r) => caller.on('exit', r));
      const lines = stdout.trim().split('\n').filter(Boolean);
      if (lines.length === 0) throw new Error(`sc2c call (${mode}) printed nothing: ${stderr.trim()}`);
      results[mode] = lines.map((l) => JSON.parse(l) as CallSummary);
    }
    await init.inspect?.(state.hosts);
    return results;
  } finally {
    // SIGTERM lets the callee finish its media (and its ffmpeg) before the lab goes away.
    await stopHostProcesses(children);
    await stopLab(state);
    rmSync(dir, { recursive: true, force: true });
  }
}
