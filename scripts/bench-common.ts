/** What the benchmark scripts share: progress on stderr, a refusal's exit, the commit, a free port. */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Progress and notes go to stderr; stdout carries the result. */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A refusal (bad input, a missing prerequisite): the reason on stderr, exit 2. */
export function failer(name: string): (message: string) => never {
  return (message) => {
    say(`${name}: ${message}`);
    process.exit(2);
  };
}

/** The checked-out commit, for the JSON. */
export function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** A free TCP port on loopback (the tests' own helper). */
export { freePort } from '../test/free-port.ts';
