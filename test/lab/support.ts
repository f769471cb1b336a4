/** Shared helpers for tests that need the kernel lab (root, namespaces, /dev/net/tun). */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { checkLabPrerequisites } from '../../src/lab/netns.ts';

const run = promisify(execFile);
export const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;

/** Why the lab cannot run here, or undefined when it can. Printed so a skip is never silent. */
export async function labUnavailable(): Promise<string | undefined> {
  try {
    await checkLabPrerequisites();
    return undefined;
  } catch (error) {
    const why = (error as Error).message;
    console.warn(`SKIPPING kernel-lab tests: ${why}`);
    return why;
  }
}

export async function sc2c(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      timeout: 180_000,
      maxBuffer: 16 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export async function namespacesOf(lab: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`sc2c-${lab}_`));
}

export function scenarioFile(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-test-'));
  const path = join(dir, 'scenario.yaml');
  writeFileSync(path, yaml);
  return path;
}

/** One NATed client and the server; `link` is the NAT's uplink. */
export function oneNat(profile: string, link = '{ latencyMs: 1 }'): string {
  return `
server: { addresses: [198.18.0.10, 198.18.0.11] }
nats:
  - name: nat
    profile: ${profile}
    publicAddress: 198.18.1.1
    lan: 10.0.1.0/24
    link: ${link}
    hosts: [{ name: client, address: 10.0.1.2 }]
`;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `probe` is true or `timeoutMs` passes; returns the last value. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await sleep(100);
  }
  return probe();
}

/** `sc2c probe --json` (against the lab server) inside a lab host's namespace. */
export async function probeIn(namespace: string, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run('ip', [
    'netns',
    'exec',
    namespace,
    process.execPath,
    BIN,
    'probe',
    '--server',
    '198.18.0.10',
    '--json',
    ...args,
  ]);
  return JSON.parse(stdout) as Record<string, unknown>;
}
