import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type HostProcess, spawnInHost, waitForOutput } from '../../src/lab/host-process.ts';
import { startLab, stopLab } from '../../src/lab/instances.ts';
import { parseScenario } from '../../src/lab/scenario.ts';
import { BIN, labUnavailable, scenarioFile } from './support.ts';

const run = promisify(execFile);
const CONFIG = new URL('../../config/', import.meta.url).pathname;
const lab = await labUnavailable();
const coturn = await run('which', ['turnutils_natdiscovery']).then(
  () => undefined,
  () => 'turnutils_natdiscovery (coturn) is not installed: run scripts/setup-system.sh',
);
if (coturn) console.warn(`SKIPPING coturn interop: ${coturn}`);

const SCENARIO = `
server: { addresses: [198.18.0.10, 198.18.0.11] }
nats:
  - { name: nat-p, profile: port-restricted-cone, publicAddress: 198.18.3.1, lan: 10.0.3.0/24, link: { latencyMs: 2 }, hosts: [{ name: pc, address: 10.0.3.2 }] }
  - { name: nat-s, profile: symmetric-seq1, publicAddress: 198.18.4.1, lan: 10.0.4.0/24, link: { latencyMs: 2 }, hosts: [{ name: sym, address: 10.0.4.2 }] }
`;

/** "NAT with Address and Port Dependent Mapping!" -> address-and-port-dependent. */
function coturnSays(output: string, what: 'Mapping' | 'Filtering'): string | undefined {
  const match = new RegExp(`NAT with (.+?) ${what}`).exec(output);
  return match?.[1]?.toLowerCase().replace(/ /g, '-');
}

describe.skipIf(lab ?? coturn)('coturn interop: turnutils_natdiscovery against our STUN server', () => {
  it('classifies a port-restricted cone and a symmetric lab NAT as sc2c probe does', async () => {
    const path = scenarioFile(SCENARIO);
    const state = await startLab({
      scenarioPath: path,
      scenario: parseScenario(SCENARIO, path),
      name: `nd${process.pid % 10_000}`,
    });
    let server: HostProcess | undefined;
    try {
      server = spawnInHost(state.hosts.server!, ['server', '--config', `${CONFIG}server.yaml`]);
      await waitForOutput(server, /sc2c server:/, 'sc2c server');
      for (const [host, expected] of [
        ['pc', 'endpoint-independent'],
        ['sym', 'address-and-port-dependent'],
      ] as const) {
        const { stdout: theirs } = await run(
          'ip',
          ['netns', 'exec', state.hosts[host]!, 'turnutils_natdiscovery', '-m', '-f', '198.18.0.10'],
          { timeout: 60_000 },
        );
        const { stdout: ours } = await run(
          'ip',
          [
            'netns',
            'exec',
            state.hosts[host]!,
            process.execPath,
            BIN,
            'probe',
            '--server',
            '198.18.0.10',
            '--rto-ms',
            '100',
            '--json',
          ],
          { timeout: 60_000 },
        );
        const probe = JSON.parse(ours) as { mapping: string; filtering: string };
        expect({
          host,
          mapping: coturnSays(theirs, 'Mapping'),
          filtering: coturnSays(theirs, 'Filtering'),
        }).toEqual({
          host,
          mapping: probe.mapping,
          filtering: probe.filtering,
        });
        expect(probe.mapping).toBe(expected);
      }
    } finally {
      server?.kill('SIGTERM');
      await stopLab(state);
    }
  }, 120_000);
});
