/**
 * The relay's kernel fast path (issue 23), as rtpengine forwards in the kernel once a call is set
 * up: per latched raw-relay allocation, nftables rules in a table of this process's own
 * (`netdev sc2c_relay_<pid>`) rewrite a permitted peer's datagram to the relayed port, where it
 * enters the host, into one to the client's latched address from the relayed port, and send it
 * straight out of the interface towards the client. Neither this process nor the rest of the IP
 * stack sees it.
 *
 *   ingress hook of each interface peers arrive on:
 *     ip protocol udp, no IP options, unfragmented: ip daddr . udp dport vmap @routes  -> chain p<N>
 *   chain p<N>: ip saddr PEER udp sport P counter c<N> (what the call records and /metrics read)
 *               ip saddr set RELAY udp sport set PORT ip daddr set CLIENT udp dport set CPORT
 *               ip ttl set 64 fwd ip to NEXT-HOP device OUT
 *
 * The rules are stateless: no conntrack entry, no NAT hook, no route look-up per datagram. An
 * earlier version did DNAT/SNAT in the nat hooks; conntrack then tracked every datagram the host
 * handled, which cost ~1.5 µs a packet on the relay's own TURN traffic too (docs/benchmarks.md).
 * The next hop and the interface out are those of the route to the client when the rules go in;
 * the kernel resolves the next hop's link address per datagram (its neighbour table). A fragment is
 * never matched: fragments go up the stack, are reassembled and relayed in userspace; nor is a
 * datagram with IP options, so that the counters' bytes (whole IP packets) less 28 a packet are the
 * UDP payload bytes the userspace path counts.
 *
 * A flow is known by where it was sent, the relayed address and port: only the process bound to
 * that port has it in its map, so several relay processes (shards), each with a table of its own,
 * never act on each other's flows. Needs CAP_NET_ADMIN, `nft` (Debian's nftables) and `ip`
 * (iproute2); not net.ipv4.ip_forward.
 */
import type { Endpoint } from '../net/address.ts';
import {
  checkedRoute,
  FORWARD_TTL,
  HEADERS,
  isAlive,
  OffloadUnavailable,
  run,
  SerialQueue,
} from './offload-common.ts';
import type { RelayOffload } from './turn-types.ts';

const TABLE_PREFIX = 'sc2c_relay_';

export class NftRelayOffload implements RelayOffload {
  readonly table = `${TABLE_PREFIX}${process.pid}`;
  /** Installed ids and the relayed endpoint of each. */
  readonly #installed = new Map<number, Endpoint>();
  /** The interfaces whose ingress this table hooks, and each one's base chain. */
  readonly #hooks = new Map<string, string>();
  /** nft runs one at a time, so an install and its removal keep their order. */
  readonly #queue = new SerialQueue();
  #closed = false;

  private constructor() {}

  /**
   * Creates this process's table, after deleting tables left by processes that died; rejects with
   * `OffloadUnavailable` saying why when the kernel path cannot run here.
   */
  static async start(): Promise<NftRelayOffload> {
    const ip = await run('ip', ['-V']).catch(() => undefined);
    if (ip?.code !== 0)
      throw new OffloadUnavailable("the 'ip' command is missing (apt-get install iproute2)");
    const offload = new NftRelayOffload();
    const listed = await run('nft', ['list', 'tables']).catch(() => undefined);
    if (!listed) throw new OffloadUnavailable("the 'nft' command is missing (apt-get install nftables)");
    if (listed.code !== 0)
      throw new OffloadUnavailable(
        `nft cannot read the ruleset (${listed.err.trim() || 'no CAP_NET_ADMIN?'})`,
      );
    // Tables of processes that died (the `ip` family was an earlier version's).
    for (const match of listed.out.matchAll(new RegExp(`table (ip|netdev) (${TABLE_PREFIX}(\\d+))`, 'g'))) {
      const pid = Number(match[3]);
      if (pid === process.pid || isAlive(pid)) continue;
      await run('nft', ['delete', 'table', match[1]!, match[2]!]);
    }
    const t = offload.table;
    const created = await run(
      'nft',
      ['-f', '-'],
      `table netdev ${t}
delete table netdev ${t}
table netdev ${t} {
  map routes { type ipv4_addr . inet_service : verdict; }
}
`,
    );
    if (created.code !== 0)
      throw new OffloadUnavailable(`nft could not create table netdev ${t}: ${created.err.trim()}`);
    return offload;
  }

  install(id: number, route: { relayed: Endpoint; client: Endpoint; peer: Endpoint }): Promise<void> {
    return this.#serial(async () => {
      if (this.#closed) throw new Error('the kernel path is closed');
      const { relayed, client, peer, inbound, outbound } = await checkedRoute(id, route);
      const t = this.table;
      const earlier = this.#installed.get(id);
      const hook = this.#hooks.get(inbound.device);
      const chain = hook ?? `in${this.#hooks.size}`;
      const script = [
        // A new peer source replaces the old one's rules; the counter carries on.
        ...(earlier ? this.#removal(id, earlier, true) : [`add counter netdev ${t} c${id}`]),
        ...(hook
          ? []
          : [
              `add chain netdev ${t} ${chain} { type filter hook ingress device "${inbound.device}" priority 0; policy accept; }`,
              `add rule netdev ${t} ${chain} meta protocol ip ip hdrlength 5 ip protocol udp ip frag-off & 0x3fff == 0 ip daddr . udp dport vmap @routes`,
            ]),
        `add chain netdev ${t} p${id}`,
        `add rule netdev ${t} p${id} ip saddr ${peer.address} udp sport ${peer.port} counter name c${id}` +
          ` ip saddr set ${relayed.address} udp sport set ${relayed.port}` +
          ` ip daddr set ${client.address} udp dport set ${client.port} ip ttl set ${FORWARD_TTL}` +
          ` fwd ip to ${outbound.nextHop} device "${outbound.device}"`,
        `add element netdev ${t} routes { ${relayed.address} . ${relayed.port} : jump p${id} }`,
      ];
      const result = await run('nft', ['-f', '-'], `${script.join('\n')}\n`);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
      if (!hook) this.#hooks.set(inbound.device, chain);
      this.#installed.set(id, relayed);
    });
  }

  remove(id: number): Promise<void> {
    return this.#serial(async () => {
      const relayed = this.#installed.get(id);
      if (!relayed) return;
      this.#installed.delete(id);
      const result = await run('nft', ['-f', '-'], `${this.#removal(id, relayed, false).join('\n')}\n`);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
    });
  }

  counters(): Promise<ReadonlyMap<number, { packets: number; bytes: number }>> {
    return this.#serial(async () => {
      const counts = new Map<number, { packets: number; bytes: number }>();
      if (this.#installed.size === 0) return counts;
      const result = await run('nft', ['-j', 'list', 'counters', 'table', 'netdev', this.table]);
      if (result.code !== 0) throw new Error(`nft: ${result.err.trim()}`);
      const parsed = JSON.parse(result.out) as {
        nftables?: { counter?: { name?: string; packets?: number; bytes?: number } }[];
      };
      for (const item of parsed.nftables ?? []) {
        const name = item.counter?.name;
        const id = name?.startsWith('c') ? Number(name.slice(1)) : Number.NaN;
        if (!Number.isInteger(id) || !this.#installed.has(id)) continue;
        const packets = item.counter?.packets ?? 0;
        // The kernel counts whole IP packets; userspace counts UDP payloads.
        counts.set(id, { packets, bytes: Math.max(0, (item.counter?.bytes ?? 0) - HEADERS * packets) });
      }
      return counts;
    });
  }

  /** Removes the table (every rule and hook). Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#serial(async () => {
      await run('nft', ['delete', 'table', 'netdev', this.table]);
      this.#installed.clear();
      this.#hooks.clear();
    });
  }

  #removal(id: number, relayed: Endpoint, keepCounter: boolean): string[] {
    const t = this.table;
    return [
      `delete element netdev ${t} routes { ${relayed.address} . ${relayed.port} }`,
      `delete chain netdev ${t} p${id}`,
      ...(keepCounter ? [] : [`delete counter netdev ${t} c${id}`]),
    ];
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    return this.#queue.run(task);
  }
}
