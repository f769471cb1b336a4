/**
 * The relay's kernel fast path (issue 23), as rtpengine forwards in the kernel once a call is set
 * up: per latched raw-relay allocation, nftables rules in a table of this process's own
 * (`ip sc2c_relay_<pid>`) rewrite a permitted peer's datagram to the relayed port into one to the
 * client's latched address from the relayed port (DNAT in prerouting and output, SNAT in
 * postrouting), and conntrack carries the rest of the flow without this process seeing it.
 *
 *   udp dport vmap @ports                     -> chain p<N>: ip daddr RELAY ip saddr PEER udp sport P dnat to CLIENT
 *   ct original daddr . proto-dst vmap @snats  -> chain s<N>: snat to RELAY:PORT
 *   ct original daddr . proto-dst vmap @counts -> chain k<N>: counter c<N>  (what the call records and /metrics read)
 *
 * A flow is known after its DNAT by where it was first sent, the relayed address and port: only
 * the process bound to that port has it in its maps, so several relay processes (shards), each with
 * a table of its own, never act on each other's flows (a ct mark per allocation id did: every
 * shard's first allocation had the same one).
 *
 * A flow the kernel already tracks without NAT (the first datagrams, forwarded in userspace) would
 * keep bypassing the rules, so an install deletes the relayed port's conntrack entries; a removal
 * deletes them too, so nothing is forwarded after the call. Needs CAP_NET_ADMIN, `nft` and
 * `conntrack` (Debian's nftables and conntrack), and net.ipv4.ip_forward=1 to reach other hosts.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Endpoint } from '../net/address.ts';
import type { RelayOffload } from './turn-types.ts';

const TABLE_PREFIX = 'sc2c_relay_';
/** Longest an nft or conntrack run may take before it counts as failed. */
const COMMAND_TIMEOUT_MS = 10_000;

export class OffloadUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OffloadUnavailable';
  }
}

function run(
  command: string,
  args: readonly string[],
  input?: string,
): Promise<{ code: number; out: string; err: string }> {
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

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Addresses and ports go into nft's text only after this: a name from the network never does. */
function checked(endpoint: Endpoint): string {
  const match = IPV4.exec(endpoint.address);
  if (!match || match.slice(1).some((o) => Number(o) > 255))
    throw new RangeError(`not an IPv4 address: ${endpoint.address}`);
  if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65_535)
    throw new RangeError(`bad port ${endpoint.port}`);
  return `${endpoint.address}:${endpoint.port}`;
}

export class NftRelayOffload implements RelayOffload {
  readonly table = `${TABLE_PREFIX}${process.pid}`;
  /** Installed ids and the relayed endpoint and latch of each. */
  readonly #installed = new Map<number, { relayed: Endpoint; client: Endpoint }>();
  /** nft runs one at a time, so an install and its removal keep their order. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor() {}

  /**
   * Creates this process's table, after deleting tables left by processes that died; rejects with
   * `OffloadUnavailable` saying why when the kernel path cannot run here.
   */
  static async start(): Promise<NftRelayOffload> {
    let forwarding = '0';
    try {
      forwarding = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    } catch {
      // Unreadable: treated as off.
    }
    if (forwarding !== '1')
      throw new OffloadUnavailable(
        'net.ipv4.ip_forward is 0, so the kernel would not forward to other hosts',
      );
    const conntrack = await run('conntrack', ['--version']).catch(() => undefined);
    if (conntrack?.code !== 0)
      throw new OffloadUnavailable("the 'conntrack' command is missing (apt-get install conntrack)");
    const offload = new NftRelayOffload();
    const listed = await run('nft', ['list', 'tables', 'ip']).catch(() => undefined);
    if (!listed) throw new OffloadUnavailable("the 'nft' command is missing (apt-get install nftables)");
    if (listed.code !== 0)
      throw new OffloadUnavailable(
        `nft cannot read the ruleset (${listed.err.trim() || 'no CAP_NET_ADMIN?'})`,
      );
    for (const match of listed.out.matchAll(new RegExp(`table ip (${TABLE_PREFIX}(\\d+))`, 'g'))) {
      const pid = Number(match[2]);
      if (pid === process.pid || isAlive(pid)) continue;
      await run('nft', ['delete', 'table', 'ip', match[1]!]);
    }
    const t = offload.table;
    const created = await run(
      'nft',
      ['-f', '-'],
      `table ip ${t}
delete table ip ${t}
table ip ${t} {
  map ports { type inet_service : verdict; }
  map snats { type ipv4_addr . inet_service : verdict; }
  map counts { type ipv4_addr . inet_service : verdict; }
  chain pre { type nat hook prerouting priority dstnat; policy accept; udp dport vmap @ports; }
  chain out { type nat hook output priority -100; policy accept; udp dport vmap @ports; }
  chain post { type nat hook postrouting priority srcnat; policy accept; meta l4proto udp ct original ip daddr . ct original proto-dst vmap @snats; }
  chain count { type filter hook postrouting priority 100; policy accept; meta l4proto udp ct original ip daddr . ct original proto-dst vmap @counts; }
  set latches { type ipv4_addr . inet_service . inet_service; }
  set relayed { type inet_service; }
  chain rawpre { type filter hook prerouting priority raw; policy accept; ip saddr . udp sport . udp dport @latches notrack; }
  chain rawout { type filter hook output priority raw; policy accept; udp sport @relayed notrack; }
}
`,
    );
    if (created.code !== 0)
      throw new OffloadUnavailable(`nft could not create table ${t}: ${created.err.trim()}`);
    return offload;
  }

  install(id: number, route: { relayed: Endpoint; client: Endpoint; peer: Endpoint }): Promise<void> {
    return this.#serial(async () => {
      if (this.#closed) throw new Error('the kernel path is closed');
      const relayed = checked(route.relayed);
      const client = checked(route.client);
      checked(route.peer);
      const t = this.table;
      const flow = `${route.relayed.address} . ${route.relayed.port}`;
      const earlier = this.#installed.get(id);
      const script = [
        // A new peer source replaces the old one's rules; the counter carries on.
        ...(earlier ? this.#removal(id, earlier, true) : [`add counter ip ${t} c${id}`]),
        `add chain ip ${t} p${id}`,
        `add rule ip ${t} p${id} ip daddr ${route.relayed.address} ip saddr ${route.peer.address} udp sport ${route.peer.port} dnat ip to ${client}`,
        `add chain ip ${t} s${id}`,
        `add rule ip ${t} s${id} meta l4proto udp snat ip to ${relayed}`,
        `add chain ip ${t} k${id}`,
        `add rule ip ${t} k${id} counter name c${id}`,
        `add element ip ${t} ports { ${route.relayed.port} : jump p${id} }`,
        `add element ip ${t} snats { ${flow} : jump s${id} }`,
        `add element ip ${t} counts { ${flow} : jump k${id} }`,
        // Untracked: the latch's keepalives to the relayed port, and whatever this process sends
        // from it. An entry of theirs would hold the reply address every forwarded flow needs
        // (latch <- relayed port), and conntrack would drop those flows as clashes.
        `add element ip ${t} latches { ${route.client.address} . ${route.client.port} . ${route.relayed.port} }`,
        `add element ip ${t} relayed { ${route.relayed.port} }`,
      ];
      const result = await run('nft', ['-f', '-'], `${script.join('\n')}\n`);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
      this.#installed.set(id, { relayed: route.relayed, client: route.client });
      await this.#forgetFlows(route.relayed);
    });
  }

  remove(id: number): Promise<void> {
    return this.#serial(async () => {
      const route = this.#installed.get(id);
      if (!route) return;
      this.#installed.delete(id);
      const result = await run('nft', ['-f', '-'], `${this.#removal(id, route, false).join('\n')}\n`);
      await this.#forgetFlows(route.relayed);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
    });
  }

  counters(): Promise<ReadonlyMap<number, { packets: number; bytes: number }>> {
    return this.#serial(async () => {
      const counts = new Map<number, { packets: number; bytes: number }>();
      if (this.#installed.size === 0) return counts;
      const result = await run('nft', ['-j', 'list', 'counters', 'table', 'ip', this.table]);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
      const parsed = JSON.parse(result.out) as {
        nftables?: { counter?: { name?: string; packets?: number; bytes?: number } }[];
      };
      for (const item of parsed.nftables ?? []) {
        const name = item.counter?.name;
        const id = name?.startsWith('c') ? Number(name.slice(1)) : Number.NaN;
        if (!Number.isInteger(id) || !this.#installed.has(id)) continue;
        counts.set(id, { packets: item.counter?.packets ?? 0, bytes: item.counter?.bytes ?? 0 });
      }
      return counts;
    });
  }

  /** Removes the table (every rule) and the flows it made. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#serial(async () => {
      await run('nft', ['delete', 'table', 'ip', this.table]);
      for (const route of this.#installed.values()) await this.#forgetFlows(route.relayed);
      this.#installed.clear();
    });
  }

  #removal(id: number, route: { relayed: Endpoint; client: Endpoint }, keepCounter: boolean): string[] {
    const t = this.table;
    const { relayed, client } = route;
    const flow = `${relayed.address} . ${relayed.port}`;
    return [
      `delete element ip ${t} ports { ${relayed.port} }`,
      `delete element ip ${t} snats { ${flow} }`,
      `delete element ip ${t} counts { ${flow} }`,
      `delete element ip ${t} latches { ${client.address} . ${client.port} . ${relayed.port} }`,
      `delete element ip ${t} relayed { ${relayed.port} }`,
      `delete chain ip ${t} p${id}`,
      `delete chain ip ${t} s${id}`,
      `delete chain ip ${t} k${id}`,
      ...(keepCounter ? [] : [`delete counter ip ${t} c${id}`]),
    ];
  }

  /**
   * Deletes the conntrack entries of flows to the relayed port and from it (those this process
   * began before the rules): exit 1 just means there were none.
   */
  async #forgetFlows(relayed: Endpoint): Promise<void> {
    const port = String(relayed.port);
    for (const [side, portSide] of [
      ['--dst', '--dport'],
      ['--src', '--sport'],
    ] as const)
      await run('conntrack', ['-D', '-p', 'udp', side, relayed.address, portSide, port]).catch(
        () => undefined,
      );
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
