/**
 * The lab process: holds every TUN fd, routes between namespaces, answers the control socket, and
 * tears everything down on `down`, SIGINT, SIGTERM, SIGHUP or an uncaught exception.
 */
import type { Server } from 'node:net';
import { loadProfiles } from '../nat/profiles.ts';
import { type ControlRequest, removeState, serveControl, writeState } from './control.ts';
import { Lab } from './lab.ts';
import { loadScenario } from './scenario.ts';

export interface DaemonInit {
  readonly scenarioPath: string;
  readonly name: string;
  readonly pcapDir?: string;
  readonly seed?: number;
}

export async function runLabDaemon(init: DaemonInit): Promise<void> {
  let lab: Lab | undefined;
  let server: Server | undefined;
  let stopping = false;
  const log = (message: string): void => {
    process.stdout.write(`${new Date().toISOString()} ${message}\n`);
  };
  const shutdown = async (code: number, why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    server?.close();
    try {
      await lab?.close();
    } finally {
      removeState(init.name);
      log('stopped; namespaces removed');
      process.exit(code);
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(signal, () => void shutdown(0, signal));
  process.on('uncaughtException', (error) => {
    log(`uncaught exception: ${error.stack ?? error.message}`);
    void shutdown(1, 'uncaught exception');
  });
  process.on('unhandledRejection', (error) => {
    log(`unhandled rejection: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    void shutdown(1, 'unhandled rejection');
  });

  const scenario = loadScenario(init.scenarioPath);
  try {
    lab = await Lab.start({
      name: init.name,
      scenario,
      catalog: loadProfiles(),
      pcapDir: init.pcapDir,
      seed: init.seed,
      onError: (error) => log(`packet path error: ${error.message}`),
      onMiniupnpdLog: (nat, line) => log(`${nat} ${line}`),
    });
  } catch (error) {
    log(`failed to start: ${(error as Error).message}`);
    removeState(init.name);
    process.exit(2);
  }
  server = serveControl(init.name, async (request: ControlRequest) => {
    switch (request.cmd) {
      case 'status':
        return lab!.status();
      case 'flush':
        return { nat: request.nat, flushed: lab!.flush(request.nat, request.proto) };
      case 'portmap':
        return lab!.portmap(request.nat, request.restart === true);
      case 'down':
        setImmediate(() => void shutdown(0, 'down requested'));
        return { ok: true };
      default:
        throw new Error(`unknown control command '${(request as { cmd: string }).cmd}'`);
    }
  });
  writeState({
    name: init.name,
    pid: process.pid,
    scenario: init.scenarioPath,
    namespaces: lab.namespaces,
    hosts: lab.hostNamespaces(),
    startedAt: new Date().toISOString(),
  });
  log(`ready: ${lab.namespaces.length} namespaces`);
  if (process.env.SC2C_LAB_CRASH_AFTER_MS) {
    // Test hook: throw from a timer so the crash-cleanup path runs for real.
    setTimeout(() => {
      throw new Error('crash requested by SC2C_LAB_CRASH_AFTER_MS');
    }, Number(process.env.SC2C_LAB_CRASH_AFTER_MS));
  }
}
