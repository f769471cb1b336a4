/**
 * What both kernel fast paths (nft-offload.ts, bpf-offload.ts) share: running the tools that set
 * them up (`ip`, `nft`, `tc`, `bpftool`, `clang`), checking every address and port before it
 * reaches one of them, and the route towards a client.
 */
import { spawn } from 'node:child_process';
import type { Endpoint } from '../net/address.ts';

/** Longest a tool's run may take before it counts as failed. */
const COMMAND_TIMEOUT_MS = 10_000;
/**
 * The TTL of a forwarded datagram: the relay sends it afresh, as the userspace path does (Linux's
 * default net.ipv4.ip_default_ttl), whatever TTL it arrived with.
 */
export const FORWARD_TTL = 64;
/** An IPv4 header without options and a UDP header: what the kernel counts beyond the payload. */
export const HEADERS = 28;
/** Interface names as the kernel allows them (IFNAMSIZ 16, with its NUL). */
export const DEVICE = /^[A-Za-z0-9_.:@-]{1,15}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export class OffloadUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OffloadUnavailable';
  }
}

export interface RunResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs a tool with bounded output and time; rejects only when it cannot be started. */
export function run(command: string, args: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(command, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    } catch (error) {
      reject(error);
      return;
    }
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    child.stdout!.on('data', (d) => {
      if (out.length < 4 * 1024 * 1024) out += d;
    });
    child.stderr!.on('data', (d) => {
      if (err.length < 64 * 1024) err += d;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, out, err });
    });
    if (input !== undefined) {
      child.stdin!.on('error', () => {}); // it exited without reading: its exit code says why
      child.stdin!.end(input);
    }
  });
}

/** Addresses go into a tool's arguments only after this: a name from the network never does. */
export function checkedAddress(address: string): string {
  const match = IPV4.exec(address);
  if (!match || match.slice(1).some((o) => Number(o) > 255) || address === '0.0.0.0')
    throw new RangeError(`not an IPv4 host address: ${address}`);
  return address;
}

function checked(endpoint: Endpoint): Endpoint {
  checkedAddress(endpoint.address);
  if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65_535)
    throw new RangeError(`bad port ${endpoint.port}`);
  return endpoint;
}

/** Where the kernel sends a datagram for `to` from `from`: the interface and the next hop. */
export interface Hop {
  readonly device: string;
  readonly nextHop: string;
}

/**
 * The route the kernel would take now (`ip -j route get TO from FROM`): a gateway's address, or
 * `to` itself when it is on the link (or this host's own, out of `lo`). Anything but a unicast or
 * local route (unreachable, blackhole, broadcast) is refused.
 */
async function routeTo(to: string, from: string): Promise<Hop> {
  const result = await run('ip', ['-j', 'route', 'get', checkedAddress(to), 'from', checkedAddress(from)]);
  if (result.code !== 0) throw new Error(`no route to ${to}: ${result.err.trim()}`);
  let routes: { type?: string; gateway?: string; dev?: string }[];
  try {
    routes = JSON.parse(result.out);
  } catch {
    throw new Error(`ip route get ${to}: unreadable output`);
  }
  const route = Array.isArray(routes) ? routes[0] : undefined;
  if (!route || (route.type !== undefined && route.type !== 'unicast' && route.type !== 'local'))
    throw new Error(`no unicast route to ${to} (${route?.type ?? 'none'})`);
  if (typeof route.dev !== 'string' || !DEVICE.test(route.dev))
    throw new Error(`route to ${to}: unusable interface ${String(route.dev)}`);
  const nextHop = checkedAddress(typeof route.gateway === 'string' ? route.gateway : to);
  return { device: route.dev, nextHop };
}

/** An install's route, checked, with the interface its peer comes in on and the hop to its client. */
export interface CheckedRoute {
  readonly relayed: Endpoint;
  readonly client: Endpoint;
  readonly peer: Endpoint;
  readonly inbound: Hop;
  readonly outbound: Hop;
}

/** Checks an install's id and endpoints, then looks up both routes; throws saying what is wrong. */
export async function checkedRoute(
  id: number,
  route: { relayed: Endpoint; client: Endpoint; peer: Endpoint },
): Promise<CheckedRoute> {
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`bad id ${id}`);
  const relayed = checked(route.relayed);
  const client = checked(route.client);
  const peer = checked(route.peer);
  // The peer's datagrams come in where datagrams to it go out (routes are symmetric here).
  const inbound = await routeTo(peer.address, relayed.address);
  const outbound = await routeTo(client.address, relayed.address);
  return { relayed, client, peer, inbound, outbound };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs tasks one at a time, in order, whether the one before succeeded or not. */
export class SerialQueue {
  #queue: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
