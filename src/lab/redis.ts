/**
 * A throwaway `redis-server` (Debian's) for the lab, tests and `bench:signaling --nodes 2`
 * (issue 24): no persistence, bound to one address, inside a lab namespace when given one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { waitForOutput } from './host-process.ts';

export interface RedisInit {
  readonly address: string;
  readonly port: number;
  /** Run inside this network namespace (`ip netns exec`). */
  readonly namespace?: string;
}

export interface RunningRedis {
  readonly url: string;
  /** SIGTERM, SIGKILL after 3 s; resolves when it has exited. Idempotent. */
  stop(): Promise<void>;
}

/** Starts redis-server and resolves once it accepts connections (rejects if it exits first). */
export async function startRedis(init: RedisInit): Promise<RunningRedis> {
  const args = [
    '--bind',
    init.address,
    '--port',
    String(init.port),
    '--save',
    '',
    '--appendonly',
    'no',
    // It listens on a lab or loopback address only; the nodes it serves carry no password.
    '--protected-mode',
    'no',
    // notice: it says when it is ready.
    '--loglevel',
    'notice',
  ];
  const child: ChildProcess = init.namespace
    ? spawn('ip', ['netns', 'exec', init.namespace, 'redis-server', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error) =>
      reject(new Error(`cannot run redis-server (${error.message}); install it: scripts/setup-system.sh`)),
    );
  });
  await spawned;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
    return stopped;
  };
  try {
    await waitForOutput(
      child as Parameters<typeof waitForOutput>[0],
      /Ready to accept connections|ready to accept/i,
      'redis-server',
      15_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `redis://${init.address}:${init.port}`, stop };
}
