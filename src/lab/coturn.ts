/**
 * coturn's `turnserver` as a child process on one address and port, for interop tests and the relay
 * benchmark. It is ready once it answers a STUN Binding (it buffers its log when not on a terminal,
 * so its output cannot be waited for).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { stunBinding } from '../traversal/stun-client.ts';

export interface CoturnInit {
  readonly address: string;
  readonly port: number;
  /** Relayed ports are taken from [port + 10, port + 60] unless given. */
  readonly minPort?: number;
  readonly maxPort?: number;
  /** Where the pid file and the user database go. */
  readonly dir: string;
  /** Authentication flags, e.g. `--lt-cred-mech --user=alice:secret`. */
  readonly auth: readonly string[];
  /** More flags (e.g. `--relay-threads=1`). */
  readonly extra?: readonly string[];
  /** A command that runs it (e.g. `ip netns exec NS taskset -c 0`); default none. */
  readonly wrapper?: readonly string[];
  /** TURN over TLS on `port` with these PEM files; without it coturn runs without TLS. */
  readonly tls?: { readonly port: number; readonly certFile: string; readonly keyFile: string };
}

/** Starts turnserver and resolves once it answers STUN (within 15 s), or rejects with why not. */
export async function startCoturn(init: CoturnInit): Promise<ChildProcess> {
  const [command, ...wrapperArgs] = [...(init.wrapper ?? []), 'turnserver'];
  const child = spawn(
    command!,
    [
      ...wrapperArgs,
      '-n',
      `--listening-ip=${init.address}`,
      `--listening-port=${init.port}`,
      `--relay-ip=${init.address}`,
      `--min-port=${init.minPort ?? init.port + 10}`,
      `--max-port=${init.maxPort ?? init.port + 60}`,
      '--realm=sc2c.lab',
      '--allow-loopback-peers',
      ...(init.tls
        ? [
            `--tls-listening-port=${init.tls.port}`,
            `--cert=${init.tls.certFile}`,
            `--pkey=${init.tls.keyFile}`,
          ]
        : ['--no-tls']),
      '--no-dtls',
      '--no-cli',
      `--pidfile=${join(init.dir, `turnserver-${init.port}.pid`)}`,
      `--userdb=${join(init.dir, `turndb-${init.port}`)}`,
      '--no-stdout-log',
      ...init.auth,
      ...(init.extra ?? []),
    ],
    { stdio: 'ignore' },
  );
  const clock = new SystemClock();
  // Any local address: the caller may be in another namespace than coturn (the relay benchmark).
  const socket = await new NodeNetwork().bindUdp({});
  try {
    for (let i = 0; i < 50; i++) {
      if (child.exitCode !== null) throw new Error(`turnserver exited with ${child.exitCode}`);
      const answer = await stunBinding(
        socket,
        { clock },
        { server: { address: init.address, port: init.port }, rtoMs: 100, attempts: 2 },
      );
      if (answer) return child;
    }
    throw new Error('turnserver did not answer STUN within 15 s');
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  } finally {
    socket.close();
  }
}
