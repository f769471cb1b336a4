/** Starting, finding and stopping lab processes. */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/usage-error.ts';
import { isAlive, type LabState, labDir, listLabs, readState, requestControl } from './control.ts';
import { deleteNamespace, listNamespaces } from './netns.ts';
import type { Scenario } from './scenario.ts';

/** The lab could not start or stop; the message says why (the CLI prints it without a stack). */
export class LabError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabError';
  }
}

const BIN = fileURLToPath(new URL('../cli/bin.js', import.meta.url));
const NAME = /^[a-z0-9][a-z0-9-]{0,15}$/;

export function checkLabName(name: string): string {
  if (!NAME.test(name))
    throw new UsageError(`lab name '${name}' must be 1-16 lower-case letters, digits or '-'`);
  return name;
}

/** The lab to act on: the one named, or the only one running. */
export function resolveLab(name?: string): LabState {
  if (name) {
    const state = readState(checkLabName(name));
    if (!state)
      throw new UsageError(
        `no lab named '${name}' is running (running: ${
          listLabs()
            .map((l) => l.name)
            .join(', ') || 'none'
        })`,
      );
    return state;
  }
  const labs = listLabs();
  if (labs.length === 0)
    throw new UsageError('no lab is running; start one with: sc2c lab up config/lab/pks-vs-ips.yaml');
  if (labs.length > 1)
    throw new UsageError(
      `several labs are running (${labs.map((l) => l.name).join(', ')}): name one with --lab`,
    );
  return labs[0]!;
}

export interface StartLabInit {
  readonly scenarioPath: string;
  readonly scenario: Scenario;
  readonly name: string;
  readonly pcapDir?: string;
  readonly seed?: number;
  /** Extra environment for the lab process (test hooks). */
  readonly env?: Record<string, string>;
}

/** Spawns the lab process and waits until it is ready. */
export async function startLab(init: StartLabInit): Promise<LabState> {
  const existing = readState(init.name);
  if (existing && isAlive(existing.pid)) {
    throw new UsageError(
      `lab '${init.name}' is already running (pid ${existing.pid}); stop it with: sc2c lab down ${init.name}`,
    );
  }
  if (existing) await cleanupLab(existing);
  await sweepNamespaces(init.name);
  mkdirSync(labDir(init.name), { recursive: true });
  const logPath = join(labDir(init.name), 'lab.log');
  const log = openSync(logPath, 'a');
  const devices =
    1 + init.scenario.hosts.length + init.scenario.nats.reduce((n, nat) => n + nat.hosts.length + 2, 0);
  const args = [BIN, 'lab', 'daemon', resolve(init.scenarioPath), '--name', init.name];
  if (init.pcapDir) args.push('--pcap', resolve(init.pcapDir));
  if (init.seed !== undefined) args.push('--seed', String(init.seed));
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', log, log],
    // One threadpool thread per TUN read, plus room for fs and DNS work.
    env: { ...process.env, ...init.env, UV_THREADPOOL_SIZE: String(Math.min(1024, devices + 8)) },
  });
  closeSync(log);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? 1;
  });
  child.unref();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      throw new LabError(
        `the lab process exited (${exited}) before it was ready; its log (${logPath}) ends:\n${tail(logPath)}`,
      );
    }
    const state = readState(init.name);
    if (state) {
      try {
        await requestControl(init.name, { cmd: 'status' }, 2000);
        return state;
      } catch {
        // not listening yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGTERM');
  throw new LabError(
    `the lab did not become ready within 60 s; its log (${logPath}) ends:\n${tail(logPath)}`,
  );
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Asks the lab to stop; if it cannot, removes what it left behind. */
export async function stopLab(state: LabState): Promise<void> {
  if (isAlive(state.pid)) {
    try {
      await requestControl(state.name, { cmd: 'down' }, 5000);
    } catch {
      process.kill(state.pid, 'SIGTERM');
    }
    const deadline = Date.now() + 15_000;
    while (isAlive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (isAlive(state.pid)) process.kill(state.pid, 'SIGKILL');
  }
  await cleanupLab(state);
}

/** Removes the namespaces and state of a lab whose process is gone (killed, crashed). */
export async function cleanupLab(state: LabState): Promise<void> {
  await Promise.all(state.namespaces.map((ns) => deleteNamespace(ns)));
  await sweepNamespaces(state.name);
  rmSync(labDir(state.name), { recursive: true, force: true });
}

/** Deletes any namespace of lab `name` left behind (e.g. after a SIGKILL during start-up). */
export async function sweepNamespaces(name: string): Promise<string[]> {
  const prefix = `sc2c-${name}_`;
  const left = (await listNamespaces()).filter((ns) => ns.startsWith(prefix));
  await Promise.all(left.map((ns) => deleteNamespace(ns)));
  return left;
}
