/** Our own CLI run inside a lab host (its network namespace), and waiting for it to say it is ready. */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../cli/bin.js', import.meta.url));

export type HostProcess = ChildProcessByStdio<null, Readable, Readable>;

/** `sc2c <args>` inside `namespace`, with stdout and stderr piped. */
export function spawnInHost(namespace: string, args: readonly string[]): HostProcess {
  return spawn('ip', ['netns', 'exec', namespace, process.execPath, BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Resolves when `pattern` appears on the child's stdout or stderr; rejects if it exits first. */
export function waitForOutput(
  child: Pick<HostProcess, 'stdout' | 'stderr' | 'on'>,
  pattern: RegExp,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(
      () => reject(new Error(`${what} did not print ${pattern} within ${timeoutMs} ms: ${text.trim()}`)),
      timeoutMs,
    );
    const seen = (d: Buffer): void => {
      text += d;
      if (!pattern.test(text)) return;
      clearTimeout(timer);
      resolve();
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${text.trim()}`));
    });
  });
}

/** SIGTERM to every child, SIGKILL to any still running 5 s later; resolves when all have exited. */
export async function stopHostProcesses(children: readonly HostProcess[]): Promise<void> {
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(
    children.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
          const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
          child.once('exit', () => {
            clearTimeout(kill);
            resolve(undefined);
          });
        }),
    ),
  );
}
