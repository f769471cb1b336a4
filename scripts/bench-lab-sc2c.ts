/**
 * `npm run bench:lab-sc2c [-- --calls N] [-- --out FILE]`: the SC2C acceptance run with real
 * processes in the kernel lab: a symmetric-seq1+pks caller and a symmetric-seq1+ips callee at 40 ms
 * RTT (config/lab/pks-vs-ips.yaml), N calls with SC2C and N with C2C. Targets: SC2C N of N, C2C at
 * most 10 % (2 of 20). Needs root.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { startLab, stopLab } from '../src/lab/instances.ts';
import { checkLabPrerequisites } from '../src/lab/netns.ts';
import { loadScenario } from '../src/lab/scenario.ts';
import { summarize as stats } from '../src/util/stats.ts';

const BIN = new URL('../src/cli/bin.js', import.meta.url).pathname;
const CONFIG = new URL('../config/', import.meta.url).pathname;
const args = process.argv.slice(2);
const calls = Number(args[args.indexOf('--calls') + 1] ?? 20) || 20;
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function inHost(namespace: string, command: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', namespace, process.execPath, BIN, ...command], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function waitFor(child: ChildProcess, pattern: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d;
      if (pattern.test(text)) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${what} exited (${code}): ${text.trim()}`)));
  });
}

async function run(
  namespace: string,
  mode: string,
): Promise<{ ok: boolean; setupMs: number | null; reason?: string }[]> {
  const child = inHost(namespace, [
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
    String(calls),
    '--gap-ms',
    '500',
    '--json',
  ]);
  let stdout = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
    for (const line of String(d).trim().split('\n')) if (line) log(`    ${mode}: ${line.slice(0, 160)}`);
  });
  await new Promise((r) => child.on('exit', r));
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

async function main(): Promise<void> {
  await checkLabPrerequisites();
  const path = `${CONFIG}lab/pks-vs-ips.yaml`;
  const state = await startLab({ scenarioPath: path, scenario: loadScenario(path), name: 'bench-sc2c' });
  const children: ChildProcess[] = [];
  try {
    const server = inHost(state.hosts.server!, ['server', '--config', `${CONFIG}server.yaml`]);
    children.push(server);
    await waitFor(server, /sc2c server:/, 'sc2c server');
    const bob = inHost(state.hosts.bob!, [
      'gateway',
      '--config',
      `${CONFIG}gateway.yaml`,
      '--user',
      'bob',
      '--password',
      'bob-lab-secret',
    ]);
    children.push(bob);
    await waitFor(bob, /registered as bob/, 'bob gateway');
    const result: Record<string, unknown> = {
      scenario: 'config/lab/pks-vs-ips.yaml',
      calling: 'symmetric-seq1+pks',
      called: 'symmetric-seq1+ips',
      rttMs: 40,
      calls,
      date: new Date().toISOString(),
    };
    for (const mode of ['sc2c', 'c2c']) {
      log(`${mode}: ${calls} calls from alice to bob...`);
      const outcomes = await run(state.hosts.alice!, mode);
      const ok = outcomes.filter((o) => o.ok);
      result[mode] = {
        successes: ok.length,
        trials: outcomes.length,
        setupMs: stats(ok.map((o) => o.setupMs!)),
        failures: [...new Set(outcomes.filter((o) => !o.ok).map((o) => o.reason?.replace(/\d+/g, 'N')))],
      };
    }
    const sc2c = result.sc2c as { successes: number; trials: number };
    const c2c = result.c2c as { successes: number; trials: number };
    result.pass =
      sc2c.successes === calls && sc2c.trials === calls && c2c.successes <= Math.floor(calls / 10);
    const text = JSON.stringify(result, null, 2);
    if (out) writeFileSync(out, `${text}\n`);
    process.stdout.write(`${text}\n`);
    if (!result.pass) process.exitCode = 1;
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await stopLab(state);
  }
}

main().catch((error) => {
  process.stderr.write(`bench:lab-sc2c: ${(error as Error).message}\n`);
  process.exitCode = 2;
});
