/** Network namespace plumbing through iproute2 and sysctl. Every command's failure names the command. */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class LabPrerequisiteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabPrerequisiteError';
  }
}

async function ip(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args, { timeout: 10_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Throws a LabPrerequisiteError saying what is missing and how to fix it. */
export async function checkLabPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new LabPrerequisiteError(
      'the lab needs root (network namespaces and TUN devices): run it as root, e.g. with sudo',
    );
  }
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    throw new LabPrerequisiteError(
      '/dev/net/tun is missing or not accessible: load the tun module (modprobe tun) or give the container the device',
    );
  }
  try {
    await run('ip', ['-V'], { timeout: 5000 });
  } catch {
    throw new LabPrerequisiteError("the 'ip' command (iproute2) is missing: run scripts/setup-system.sh");
  }
  const probe = `sc2c-probe-${process.pid}`;
  try {
    await ip('netns', 'add', probe);
  } catch (error) {
    throw new LabPrerequisiteError(`cannot create network namespaces here (${(error as Error).message})`);
  }
  await ip('netns', 'del', probe).catch(() => {});
}

export async function listNamespaces(): Promise<string[]> {
  const out = await ip('netns', 'list');
  return out
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter((name) => name.length > 0);
}

export async function createNamespace(name: string): Promise<void> {
  await ip('netns', 'add', name);
  // IPv6 off before any interface arrives: router solicitations would be noise on every link.
  await nsExec(
    name,
    'sysctl',
    '-qw',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  );
  await ip('-n', name, 'link', 'set', 'lo', 'up');
}

/**
 * Stops every process still inside the namespace, deletes its interfaces (which wakes a reader
 * blocked on a TUN device: libuv joins its pool threads at exit, so a stuck read would hang it),
 * then deletes the namespace.
 */
export async function deleteNamespace(name: string): Promise<void> {
  const pids = async (): Promise<number[]> =>
    (await ip('netns', 'pids', name).catch(() => ''))
      .split('\n')
      .map(Number)
      .filter((pid) => pid > 0 && pid !== process.pid);
  for (const [signal, waitMs] of [
    ['SIGTERM', 1000],
    ['SIGKILL', 0],
  ] as const) {
    const left = await pids();
    if (left.length === 0) break;
    for (const pid of left) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && (await pids()).length > 0) await new Promise((r) => setTimeout(r, 50));
  }
  const links = await ip('-n', name, '-o', 'link', 'show').catch(() => '');
  for (const match of links.matchAll(/^\d+: ([^:@]+)[:@]/gm)) {
    if (match[1] !== 'lo') await ip('-n', name, 'link', 'del', match[1]!).catch(() => {});
  }
  await ip('netns', 'del', name).catch(() => {});
}

/** Moves interface `device` into `namespace`, renames it, gives it addresses and brings it up. */
export async function attachInterface(
  namespace: string,
  device: string,
  /** `prefixLength`: of the addresses (default 32; the kernel then adds the on-link route itself). */
  init: { name: string; addresses: readonly string[]; mtu?: number; prefixLength?: number },
): Promise<void> {
  await ip('link', 'set', device, 'netns', namespace);
  await ip('-n', namespace, 'link', 'set', device, 'name', init.name);
  for (const address of init.addresses)
    await ip('-n', namespace, 'addr', 'add', `${address}/${init.prefixLength ?? 32}`, 'dev', init.name);
  await ip('-n', namespace, 'link', 'set', init.name, 'mtu', String(init.mtu ?? 1500), 'up');
}

export async function addRoute(
  namespace: string,
  prefix: string,
  device: string,
  source?: string,
  /** A router to name (`via ... onlink`: a TUN device has no neighbours to resolve it). */
  via?: string,
): Promise<void> {
  const args = ['-n', namespace, 'route', 'add', prefix];
  if (via) args.push('via', via, 'onlink');
  args.push('dev', device);
  if (source) args.push('src', source);
  await ip(...args);
}

/** Runs a command inside a namespace and returns its stdout. */
export async function nsExec(namespace: string, ...command: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', ['netns', 'exec', namespace, ...command], { timeout: 30_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${command.join(' ')} in ${namespace} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}
