/** Errors the CLI reports as a one-line message and exit code 2, without a stack trace. */

import { LabError } from '../lab/instances.ts';
import { LabPrerequisiteError } from '../lab/netns.ts';
import { FfmpegMissingError } from '../media/ffmpeg.ts';
import { ConfigError } from '../util/config-file.ts';
import { UsageError } from '../util/usage-error.ts';

export { UsageError };

export function isUserError(error: unknown): error is Error {
  return (
    error instanceof UsageError ||
    error instanceof ConfigError ||
    error instanceof LabError ||
    error instanceof LabPrerequisiteError ||
    error instanceof FfmpegMissingError
  );
}

export function parseInteger(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new UsageError(`${name} must be an integer from ${min} to ${max}, got '${value}'`);
    }
    return n;
  };
}

export function parseFloatIn(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new UsageError(`${name} must be a number from ${min} to ${max}, got '${value}'`);
    }
    return n;
  };
}

/** What a failed bind or listen means for the person running the command. */
export function listenProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return 'port in use: another process listens there (another sc2c server?)';
    case 'EADDRNOTAVAIL':
      return 'address not on this host';
    case 'EACCES':
      return 'permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE';
    default:
      return (error as Error | undefined)?.message ?? String(error);
  }
}
