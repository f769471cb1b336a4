/**
 * Orderly exit on SIGINT and SIGTERM for the long-running commands: the first signal resolves
 * `stopRequested` so the command can end its calls (BYE), finish its recordings and close; from
 * that moment the process has `graceMs` to be gone, after which it exits anyway (a timer or socket
 * someone forgot must not keep a stopped service alive, issue 18). A second signal exits at once.
 */
let requested: Promise<NodeJS.Signals> | undefined;
let stopping = false;

/** How long a stopping process may take before it is ended regardless. */
export const SHUTDOWN_GRACE_MS = 5000;

export function stopRequested(graceMs = SHUTDOWN_GRACE_MS): Promise<NodeJS.Signals> {
  requested ??= new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.exit(130);
      }
      stopping = true;
      const deadline = setTimeout(() => {
        process.stderr.write(`sc2c: still running ${graceMs / 1000} s after ${signal}: exiting now\n`);
        process.exit(process.exitCode || 1);
      }, graceMs);
      // The deadline only ends a process that would not end by itself.
      deadline.unref();
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return requested;
}

/** True once SIGINT or SIGTERM arrived (after `stopRequested` was called). */
export function isStopping(): boolean {
  return stopping;
}
