import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ProfileCatalog } from '../nat/profiles.ts';
import {
  compareObservation,
  declaredObservation,
  type NatcheckReport,
  type NatcheckResult,
  type NatObservation,
} from '../traversal/natcheck/observation.ts';
import { spawnInHost, waitForOutput } from './host-process.ts';
import { startLab, stopLab } from './instances.ts';
import type { Scenario } from './scenario.ts';

const PRIMARY = { address: '198.18.0.10', port: 3478 };
const ALTERNATE = { address: '198.18.0.11', port: 3479 };
const CONTROL = { address: '198.18.0.10', port: 4000 };

/**
 * What the Linux kernel's NAT should show. `masquerade` keeps the source port when it is free and
 * reuses a mapping for new destinations (conntrack only changes the port on a clash), and conntrack
 * admits only replies from the exact remote: a port-restricted cone that preserves ports. With
 * `random-fully` every connection gets a random port. Masquerade does not hairpin, and the NAT
 * box's own stack answers unsolicited UDP with ICMP port-unreachable.
 */
export const KERNEL_DECLARED: Record<'masquerade' | 'masquerade-random-fully', NatObservation> = {
  masquerade: {
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
    allocation: 'preserve-if-free',
    delta: null,
    preservation: true,
    hairpin: false,
    pks: false,
    ips: false,
    unsolicitedReply: 'icmp-port-unreachable',
  },
  'masquerade-random-fully': {
    mapping: 'address-and-port-dependent',
    filtering: 'address-and-port-dependent',
    allocation: 'random',
    delta: null,
    preservation: false,
    hairpin: false,
    pks: false,
    ips: false,
    unsolicitedReply: 'icmp-port-unreachable',
  },
};

export interface LabNatcheckInit {
  readonly specs: readonly string[];
  readonly catalog: ProfileCatalog;
  readonly kernel: boolean;
  readonly onProgress?: (line: string) => void;
}

interface Target {
  readonly label: string;
  readonly host: string;
  readonly declared: NatObservation;
}

function runAgent(namespace: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnInHost(namespace, ['lab', 'natcheck-agent', ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`natcheck agent failed (${code}): ${stderr.trim()}`)),
    );
  });
}

export async function labNatcheck(init: LabNatcheckInit): Promise<NatcheckResult[]> {
  const scenario: Scenario = {
    server: { addresses: [PRIMARY.address, ALTERNATE.address] },
    nats: [],
    hosts: [],
    run: [],
  };
  const targets: Target[] = [];
  init.specs.forEach((spec, i) => {
    const behaviour = init.catalog.resolve(spec);
    scenario.nats.push({
      name: `n${i + 1}`,
      profile: spec,
      publicAddress: `198.18.${10 + i}.1`,
      lan: `10.${i + 1}.0.0/24`,
      link: { latencyMs: 2 },
      hosts: [{ name: `c${i + 1}`, address: `10.${i + 1}.0.2` }],
    });
    targets.push({ label: spec, host: `c${i + 1}`, declared: declaredObservation(behaviour) });
  });
  if (init.kernel) {
    (['masquerade', 'masquerade-random-fully'] as const).forEach((kernel, i) => {
      scenario.nats.push({
        name: `k${i + 1}`,
        kernel,
        publicAddress: `198.18.${200 + i}.1`,
        lan: `10.${200 + i}.0.0/24`,
        link: { latencyMs: 2 },
        hosts: [{ name: `kc${i + 1}`, address: `10.${200 + i}.0.2` }],
      });
      targets.push({ label: `kernel:${kernel}`, host: `kc${i + 1}`, declared: KERNEL_DECLARED[kernel] });
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-natcheck-'));
  const scenarioPath = join(dir, 'natcheck.yaml');
  writeFileSync(scenarioPath, stringify(scenario));
  const name = `nc${process.pid % 100_000}`;
  init.onProgress?.(`bringing up lab '${name}' with ${targets.length} NAT boxes...`);
  const state = await startLab({ scenarioPath, scenario, name });
  const helper = spawnInHost(state.hosts.server!, [
    'lab',
    'natcheck-agent',
    'helper',
    '--primary',
    `${PRIMARY.address}:${PRIMARY.port}`,
    '--alternate',
    `${ALTERNATE.address}:${ALTERNATE.port}`,
    '--control-port',
    String(CONTROL.port),
  ]);
  try {
    await waitForOutput(helper, /natcheck helper:/, 'natcheck helper');
    const results: NatcheckResult[] = [];
    for (const [i, target] of targets.entries()) {
      init.onProgress?.(
        `[${i + 1}/${targets.length}] natcheck ${target.label} (real sockets in ${target.host})`,
      );
      const out = await runAgent(state.hosts[target.host]!, [
        'client',
        '--control',
        `${CONTROL.address}:${CONTROL.port}`,
        '--primary',
        `${PRIMARY.address}:${PRIMARY.port}`,
        '--alternate',
        `${ALTERNATE.address}:${ALTERNATE.port}`,
      ]);
      results.push(compareObservation(target.label, target.declared, JSON.parse(out) as NatcheckReport));
    }
    return results;
  } finally {
    helper.kill('SIGTERM');
    await stopLab(state);
    rmSync(dir, { recursive: true, force: true });
  }
}
