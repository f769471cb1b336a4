/**
 * Lab instances and their control channel. Each running lab has a directory
 * `/run/sc2c-lab/<name>/` with `state.json` (pid, namespaces, hosts) and `control.sock`, a Unix
 * socket speaking one JSON request and one JSON response per line.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { lineSplitter } from '../util/json-lines.ts';

export const LAB_RUN_DIR = process.env.SC2C_LAB_RUN_DIR ?? '/run/sc2c-lab';

export interface LabState {
  readonly name: string;
  readonly pid: number;
  readonly scenario: string;
  readonly namespaces: readonly string[];
  /** Host name -> namespace. */
  readonly hosts: Readonly<Record<string, string>>;
  readonly startedAt: string;
}

export type ControlRequest =
  | { cmd: 'status' }
  | { cmd: 'down' }
  | { cmd: 'flush'; nat: string; proto?: 'udp' | 'tcp' }
  /** A kernel:miniupnpd NAT's redirects; `restart` reboots it first (issue 20). */
  | { cmd: 'portmap'; nat: string; restart?: boolean };

export function labDir(name: string): string {
  return join(LAB_RUN_DIR, name);
}

export function writeState(state: LabState): void {
  mkdirSync(labDir(state.name), { recursive: true });
  writeFileSync(join(labDir(state.name), 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

export function readState(name: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(join(labDir(name), 'state.json'), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** Removes the state and control socket; the log stays, so a failed start can be explained. */
export function removeState(name: string): void {
  rmSync(join(labDir(name), 'state.json'), { force: true });
  rmSync(controlPath(name), { force: true });
}

export function listLabs(): LabState[] {
  if (!existsSync(LAB_RUN_DIR)) return [];
  return readdirSync(LAB_RUN_DIR)
    .map((name) => readState(name))
    .filter((s): s is LabState => s !== undefined);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function controlPath(name: string): string {
  return join(labDir(name), 'control.sock');
}

/** Serves control requests; `handle` returns the JSON response. */
export function serveControl(
  name: string,
  handle: (request: ControlRequest) => Promise<unknown>,
): net.Server {
  mkdirSync(labDir(name), { recursive: true });
  rmSync(controlPath(name), { force: true });
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const feed = lineSplitter(
      async (line) => {
        let response: unknown;
        try {
          response = await handle(JSON.parse(line) as ControlRequest);
        } catch (error) {
          response = { error: (error as Error).message };
        }
        socket.end(`${JSON.stringify(response)}\n`);
      },
      () => socket.destroy(),
      65_536,
    );
    socket.on('data', feed);
  });
  server.listen(controlPath(name));
  return server;
}

/** Sends one request to a running lab and returns its response. */
export function requestControl(name: string, request: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(controlPath(name));
    let buffered = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`lab '${name}' did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach lab '${name}': ${error.message}`));
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        const response = JSON.parse(buffered) as { error?: string };
        if (response && typeof response === 'object' && 'error' in response && response.error) {
          reject(new Error(response.error));
        } else resolve(response);
      } catch {
        reject(new Error(`lab '${name}' closed the control connection without an answer`));
      }
    });
  });
}
