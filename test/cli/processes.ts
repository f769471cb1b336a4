/**
 * Real `sc2c` processes for the CLI tests on loopback: spawned with unhandled rejections fatal,
 * their output collected, every one killed when the test file ends; and a loopback server and
 * gateway config pair.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;

export interface Sc2cProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null }>;
  out(): string;
  err(): string;
}

export function processes() {
  const children: ChildProcess[] = [];
  return {
    start(args: readonly string[]): Sc2cProcess {
      const child = spawn(process.execPath, ['--unhandled-rejections=strict', BIN, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let out = '';
      let err = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.stderr!.on('data', (d) => {
        err += d;
      });
      const exited = new Promise<{ code: number | null }>((resolve) =>
        child.once('exit', (code) => resolve({ code })),
      );
      return { child, exited, out: () => out, err: () => err };
    },
    killAll(): void {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * A test file's scratch directory and its `sc2c` processes: after the file, every process still
 * running is killed and the directory removed.
 */
export function scratch(prefix: string): { dir: string; sc2c: (args: readonly string[]) => Sc2cProcess } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const procs = processes();
  afterAll(() => {
    procs.killAll();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, sc2c: procs.start };
}

/**
 * `sc2c init` of a loopback site in `dir/site` on free ports; resolves once it has written it.
 * `extra` are more init flags (`--cameras 4`).
 */
export async function initSite(
  sc2c: (args: readonly string[]) => Sc2cProcess,
  dir: string,
  ports: { sip: number; stun: number; admin: number },
  extra: readonly string[] = [],
): Promise<{ site: string; init: Sc2cProcess }> {
  const site = join(dir, 'site');
  const init = sc2c([
    'init',
    '--dir',
    site,
    '--public-ip',
    '127.0.0.1',
    '--sip-port',
    String(ports.sip),
    '--stun-port',
    String(ports.stun),
    '--admin-port',
    String(ports.admin),
    ...extra,
  ]);
  const { code } = await init.exited;
  if (code !== 0) throw new Error(`sc2c init exited ${code}: ${init.err()}`);
  return { site, init };
}

/** `sc2c call CALLEE … --record MP4 --duration 5 --json`: a viewer recording 5 s. */
export function recordCall(
  sc2c: (args: readonly string[]) => Sc2cProcess,
  callee: string,
  identity: readonly string[],
  mp4: string,
  durationS = 5,
): Sc2cProcess {
  return sc2c(['call', callee, ...identity, '--record', mp4, '--duration', String(durationS), '--json']);
}

/** `sc2c server --config CONFIG`, resolved once it listens. */
export async function startServer(
  sc2c: (args: readonly string[]) => Sc2cProcess,
  config: string,
): Promise<Sc2cProcess> {
  const server = sc2c(['server', '--config', config]);
  await until('the server', () => /sc2c server: SIP on/.test(server.err()));
  return server;
}

export async function until(what: string, done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A loopback server config (`users` as YAML lines under `sip.users`, `extra` appended) and a
 * gateway config for it, written into `dir`; the gateways' DTLS certificates and spool stay there.
 */
export function loopbackConfigs(
  dir: string,
  ports: { sip: number; stun: number },
  users: string,
  extra = { server: '', gateway: '' },
): { server: string; gateway: string } {
  const server = join(dir, 'server.yaml');
  writeFileSync(
    server,
    `sip:
  listen: { address: 127.0.0.1, port: ${ports.sip} }
  realm: sc2c.test
  users:
${users}
stun:
  primary: { address: 127.0.0.1, port: ${ports.stun} }
  alternate: { address: 127.0.0.2, port: ${ports.stun + 1} }
${extra.server}`,
  );
  const gateway = join(dir, 'gateway.yaml');
  writeFileSync(
    gateway,
    `server: 127.0.0.1:${ports.sip}
stun: 127.0.0.1:${ports.stun}
domain: sc2c.test
media: { certificate: 'dtls-{user}.pem' }
accounting: { publish: false, spoolFile: '${join(dir, 'spool-{user}.jsonl')}' }
${extra.gateway}`,
  );
  return { server, gateway };
}
