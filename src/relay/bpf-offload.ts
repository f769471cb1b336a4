/**
 * The relay's kernel fast path as an eBPF program at the tc ingress hook (issue 23). It does what
 * the nftables rules of nft-offload.ts do, in one pass and with one checksum update per header
 * rather than one per rewritten field: a permitted peer's datagram to a relayed port becomes one
 * from that port to the client's latched address, sent straight out of the interface towards the
 * client (`bpf_redirect_neigh` with the route's next hop). Neither this process nor the rest of
 * the IP stack sees it. The program is bpf/relay.bpf.c, built with clang when the path starts.
 *
 *   routes   (hash)  relayed address . port -> peer, client, interface out, next hop, checksum
 *                    differences, counter slot; what install() and remove() change
 *   counters (array) slot -> packets, UDP payload bytes; what counters() reads
 *
 * Each relay process loads its own program and maps, pinned under /sys/fs/bpf/sc2c_relay_<pid>,
 * and attaches it with a tc filter of its own on each interface peers arrive on: preference 23596
 * (0x5c2c), handle = its pid. The program has two entry points: `relay_eth` for Ethernet
 * interfaces, `relay_ip` for L3 ones (TUN), where the IP header starts the packet. A datagram no
 * route of this process names goes on to the next filter (another shard's) and the stack, untouched. Filters and pins of processes that died are removed
 * at start. Only option-less, unfragmented IPv4 UDP is matched, as in the nftables path.
 *
 * Needs CAP_NET_ADMIN and CAP_BPF (root), bpffs (mounted at /sys/fs/bpf if it is not), `clang`
 * (the BPF target), `bpftool`, `tc` and `ip`; not net.ipv4.ip_forward.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, statfs } from 'node:fs/promises';
import { endianness, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Endpoint } from '../net/address.ts';
import {
  checkedAddress,
  checkedRoute,
  DEVICE,
  isAlive,
  OffloadUnavailable,
  run,
  SerialQueue,
} from './offload-common.ts';
import type { RelayOffload } from './turn-types.ts';

const SOURCE = fileURLToPath(new URL('./bpf/relay.bpf.c', import.meta.url));
const BPFFS = '/sys/fs/bpf';
const BPF_FS_MAGIC = 0xcafe4a11;
const PIN_PREFIX = 'sc2c_relay_';
/** The tc filter preference every relay process's filter takes ("5c2c"); the handle is its pid. */
const FILTER_PREF = 0x5c2c;
/** The maps' sizes in relay.bpf.c. */
const MAX_ROUTES = 65_536;
const ROUTE_BYTES = 36;
/**
 * Counter look-ups per bpftool run: its JSON answer is about 450 bytes a look-up, which keeps it
 * well inside the 4 MiB a tool's output is read to, however many routes are installed.
 */
const LOOKUPS_PER_RUN = 2000;

/** A one's-complement sum of 16-bit words, read in the BPF target's (the host's) byte order. */
function wordSum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2)
    sum += endianness() === 'LE' ? bytes.readUInt16LE(i) : bytes.readUInt16BE(i);
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** RFC 1624's difference for a checksum when the words `from` become the words `to`, folded. */
function checksumDiff(from: Buffer, to: Buffer): number {
  return fold(wordSum(Buffer.from(from.map((b) => ~b & 0xff))) + wordSum(to));
}

function addressBytes(address: string): Buffer {
  return Buffer.from(checkedAddress(address).split('.').map(Number));
}

function portBytes(port: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(port);
  return bytes;
}

function hostU32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  if (endianness() === 'LE') bytes.writeUInt32LE(value);
  else bytes.writeUInt32BE(value);
  return bytes;
}

function hostU16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  if (endianness() === 'LE') bytes.writeUInt16LE(value);
  else bytes.writeUInt16BE(value);
  return bytes;
}

/** The key of `routes`: struct route_key in relay.bpf.c. */
export function routeKey(relayed: Endpoint): Buffer {
  return Buffer.concat([addressBytes(relayed.address), portBytes(relayed.port), Buffer.alloc(2)]);
}

/** A value of `routes`: struct route in relay.bpf.c, field by field. */
export function routeValue(
  route: { relayed: Endpoint; client: Endpoint; peer: Endpoint },
  ifindex: number,
  nextHop: string,
  slot: number,
): Buffer {
  const { relayed, client, peer } = route;
  const oldAddresses = Buffer.concat([addressBytes(peer.address), addressBytes(relayed.address)]);
  const newAddresses = Buffer.concat([addressBytes(relayed.address), addressBytes(client.address)]);
  const oldPorts = Buffer.concat([portBytes(peer.port), portBytes(relayed.port)]);
  const newPorts = Buffer.concat([portBytes(relayed.port), portBytes(client.port)]);
  const value = Buffer.concat([
    addressBytes(peer.address),
    portBytes(peer.port),
    portBytes(relayed.port),
    addressBytes(relayed.address),
    addressBytes(client.address),
    portBytes(client.port),
    hostU16(checksumDiff(oldAddresses, newAddresses)),
    hostU16(checksumDiff(oldPorts, newPorts)),
    Buffer.alloc(2),
    hostU32(ifindex),
    addressBytes(nextHop),
    hostU32(slot),
  ]);
  if (value.length !== ROUTE_BYTES) throw new Error(`route value is ${value.length} bytes`);
  return value;
}

function hex(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

async function isBpffs(path: string): Promise<boolean> {
  return statfs(path).then(
    (s) => s.type === BPF_FS_MAGIC,
    () => false,
  );
}

/**
 * An interface's index and which of the program's entry points reads its datagrams: `relay_eth`
 * where tc sees an Ethernet header, `relay_ip` where it sees none (TUN, ARPHRD_NONE).
 */
async function linkOf(device: string): Promise<{ ifindex: number; program: 'relay_eth' | 'relay_ip' }> {
  if (!DEVICE.test(device)) throw new Error(`bad interface name ${device}`);
  const result = await run('ip', ['-j', 'link', 'show', 'dev', device]);
  const links =
    result.code === 0 ? (JSON.parse(result.out) as { ifindex?: unknown; link_type?: unknown }[]) : [];
  const ifindex = links[0]?.ifindex;
  if (typeof ifindex !== 'number' || !Number.isInteger(ifindex) || ifindex < 1)
    throw new Error(`no interface ${device}: ${result.err.trim()}`);
  const type = links[0]?.link_type;
  if (type !== 'ether' && type !== 'none')
    throw new Error(`interface ${device} is of link type ${String(type)}, which the eBPF path does not read`);
  return { ifindex, program: type === 'ether' ? 'relay_eth' : 'relay_ip' };
}

/** The interfaces of this network namespace. */
async function devices(): Promise<string[]> {
  const result = await run('ip', ['-j', 'link', 'show']);
  let links: { ifname?: unknown }[] = [];
  try {
    links = result.code === 0 ? JSON.parse(result.out) : [];
  } catch {
    throw new OffloadUnavailable('ip -j link show: unreadable output');
  }
  if (!Array.isArray(links)) return [];
  return links.map((l) => l.ifname).filter((n): n is string => typeof n === 'string' && DEVICE.test(n));
}

/** Removes the tc filters of relay processes that died, on every interface of this namespace. */
async function removeStaleFilters(): Promise<void> {
  for (const device of await devices()) {
    const shown = await run('tc', [
      '-j',
      'filter',
      'show',
      'dev',
      device,
      'ingress',
      'pref',
      String(FILTER_PREF),
    ]);
    if (shown.code !== 0 || !shown.out.trim()) continue;
    let filters: { kind?: string; options?: { handle?: string } }[];
    try {
      filters = JSON.parse(shown.out);
    } catch {
      continue;
    }
    for (const filter of filters) {
      const handle = filter.kind === 'bpf' ? Number.parseInt(filter.options?.handle ?? '', 16) : Number.NaN;
      if (!Number.isInteger(handle) || handle === process.pid || isAlive(handle)) continue;
      await run('tc', [
        'filter',
        'del',
        'dev',
        device,
        'ingress',
        'pref',
        String(FILTER_PREF),
        'handle',
        `0x${handle.toString(16)}`,
        'bpf',
      ]);
    }
  }
}

export class BpfRelayOffload implements RelayOffload {
  readonly pins = join(BPFFS, `${PIN_PREFIX}${process.pid}`);
  /** Installed ids: the relayed endpoint and counter slot of each. */
  readonly #installed = new Map<number, { relayed: Endpoint; slot: number }>();
  /** Counter slots no installed id holds. */
  readonly #freeSlots: number[] = [];
  #nextSlot = 0;
  /** The interfaces whose ingress this process's filter is attached to. */
  readonly #hooked = new Set<string>();
  /** One tool at a time, so an install and its removal keep their order. */
  readonly #queue = new SerialQueue();
  #closed = false;

  private constructor() {}

  /**
   * Builds and loads the program, after removing what relay processes that died left behind;
   * rejects with `OffloadUnavailable` saying why when this path cannot run here.
   */
  static async start(): Promise<BpfRelayOffload> {
    for (const [command, flag, pkg] of [
      ['ip', '-V', 'iproute2'],
      ['tc', '-V', 'iproute2'],
      ['bpftool', 'version', 'bpftool'],
      ['clang', '--version', 'clang'],
    ] as const) {
      const started = await run(command, [flag]).catch(() => undefined);
      if (!started)
        throw new OffloadUnavailable(`the '${command}' command is missing (apt-get install ${pkg})`);
    }
    if (!(await isBpffs(BPFFS))) {
      const mounted = await run('mount', ['-t', 'bpf', 'bpf', BPFFS]).catch(() => undefined);
      if (mounted?.code !== 0 || !(await isBpffs(BPFFS)))
        throw new OffloadUnavailable(
          `no BPF file system at ${BPFFS} and it cannot be mounted (${mounted?.err.trim() || 'no mount command'})`,
        );
    }
    for (const name of await readdir(BPFFS).catch(() => [] as string[])) {
      const pid = name.startsWith(PIN_PREFIX) ? Number(name.slice(PIN_PREFIX.length)) : Number.NaN;
      if (Number.isInteger(pid) && pid !== process.pid && !isAlive(pid))
        await rm(join(BPFFS, name), { recursive: true, force: true });
    }
    await removeStaleFilters();
    const offload = new BpfRelayOffload();
    await rm(offload.pins, { recursive: true, force: true });
    await mkdir(offload.pins, { mode: 0o700 });
    const build = await mkdtemp(join(tmpdir(), `sc2c-bpf-${randomBytes(4).toString('hex')}-`));
    try {
      const object = join(build, 'relay.bpf.o');
      const built = await run('clang', ['-O2', '-g', '-target', 'bpf', '-c', SOURCE, '-o', object]);
      if (built.code !== 0)
        throw new OffloadUnavailable(`clang cannot build ${SOURCE}: ${lastLines(built.err)}`);
      const loaded = await run('bpftool', [
        'prog',
        'loadall',
        object,
        offload.pins,
        'type',
        'classifier',
        'pinmaps',
        offload.pins,
      ]);
      if (loaded.code !== 0)
        throw new OffloadUnavailable(`bpftool could not load the BPF program: ${lastLines(loaded.err)}`);
    } catch (error) {
      await rm(offload.pins, { recursive: true, force: true });
      throw error;
    } finally {
      await rm(build, { recursive: true, force: true });
    }
    return offload;
  }

  install(id: number, route: { relayed: Endpoint; client: Endpoint; peer: Endpoint }): Promise<void> {
    return this.#queue.run(async () => {
      if (this.#closed) throw new Error('the kernel path is closed');
      const { relayed, client, peer, inbound, outbound } = await checkedRoute(id, route);
      const { ifindex } = await linkOf(outbound.device);
      const earlier = this.#installed.get(id);
      if (earlier && (earlier.relayed.address !== relayed.address || earlier.relayed.port !== relayed.port))
        throw new Error(`id ${id} is installed for another relayed port`);
      if (!earlier && this.#installed.size >= MAX_ROUTES) throw new Error('the kernel path is full');
      if (!this.#hooked.has(inbound.device))
        await this.#attach(inbound.device, (await linkOf(inbound.device)).program);
      // A new peer source replaces the old one's route; the counter (its slot) carries on.
      const slot = earlier?.slot ?? this.#takeSlot();
      const commands = [
        ...(earlier
          ? []
          : [
              `map update pinned ${this.#map('counters')} key hex ${hex(hostU32(slot))} value hex ${hex(Buffer.alloc(16))}`,
            ]),
        `map update pinned ${this.#map('routes')} key hex ${hex(routeKey(relayed))} value hex ${hex(routeValue({ relayed, client, peer }, ifindex, outbound.nextHop, slot))}`,
      ];
      const result = await run('bpftool', ['batch', 'file', '-'], `${commands.join('\n')}\n`);
      if (result.code !== 0) {
        if (!earlier) this.#freeSlots.push(slot);
        throw new Error(`bpftool: ${lastLines(result.err)}`);
      }
      this.#installed.set(id, { relayed, slot });
    });
  }

  remove(id: number): Promise<void> {
    return this.#queue.run(async () => {
      const installed = this.#installed.get(id);
      if (!installed) return;
      this.#installed.delete(id);
      const result = await run('bpftool', [
        'map',
        'delete',
        'pinned',
        this.#map('routes'),
        'key',
        'hex',
        ...hex(routeKey(installed.relayed)).split(' '),
      ]);
      // A route the kernel may still hold keeps its counter slot: no new route shares it.
      if (result.code !== 0) throw new Error(`bpftool: ${lastLines(result.err)}`);
      this.#freeSlots.push(installed.slot);
    });
  }

  counters(): Promise<ReadonlyMap<number, { packets: number; bytes: number }>> {
    return this.#queue.run(async () => {
      const counts = new Map<number, { packets: number; bytes: number }>();
      if (this.#installed.size === 0) return counts;
      const all = [...this.#installed.entries()];
      for (let from = 0; from < all.length; from += LOOKUPS_PER_RUN) {
        const part = all.slice(from, from + LOOKUPS_PER_RUN);
        const commands = part.map(
          ([, { slot }]) => `map lookup pinned ${this.#map('counters')} key hex ${hex(hostU32(slot))}`,
        );
        const result = await run('bpftool', ['-j', 'batch', 'file', '-'], `${commands.join('\n')}\n`);
        if (result.code !== 0) throw new Error(`bpftool: ${lastLines(result.err)}`);
        const parsed = JSON.parse(result.out) as {
          output?: { formatted?: { value?: { packets?: unknown; bytes?: unknown } } };
        }[];
        if (!Array.isArray(parsed) || parsed.length !== part.length)
          throw new Error('bpftool: unreadable counters');
        part.forEach(([id], i) => {
          const value = parsed[i]?.output?.formatted?.value;
          const packets = Number(value?.packets);
          const bytes = Number(value?.bytes);
          if (Number.isSafeInteger(packets) && Number.isSafeInteger(bytes))
            counts.set(id, { packets, bytes });
        });
      }
      return counts;
    });
  }

  /** Detaches the filters and unpins the program and maps, which the kernel then frees. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#queue.run(async () => {
      for (const device of this.#hooked) await run('tc', this.#filterArgs('del', device));
      await rm(this.pins, { recursive: true, force: true });
      this.#installed.clear();
      this.#hooked.clear();
    });
  }

  async #attach(device: string, program: 'relay_eth' | 'relay_ip'): Promise<void> {
    const qdisc = await run('tc', ['qdisc', 'add', 'dev', device, 'clsact']);
    // Already there (another relay process, or ours before): "File exists" or "Exclusivity flag on".
    if (qdisc.code !== 0 && !/exists|exclusivity/i.test(qdisc.err))
      throw new Error(`tc qdisc: ${lastLines(qdisc.err)}`);
    const filter = await run('tc', [
      ...this.#filterArgs('add', device),
      'da',
      'object-pinned',
      join(this.pins, program),
    ]);
    if (filter.code !== 0) throw new Error(`tc filter: ${lastLines(filter.err)}`);
    this.#hooked.add(device);
  }

  #filterArgs(verb: 'add' | 'del', device: string): string[] {
    const handle = `0x${process.pid.toString(16)}`;
    return ['filter', verb, 'dev', device, 'ingress', 'pref', String(FILTER_PREF), 'handle', handle, 'bpf'];
  }

  #map(name: 'routes' | 'counters'): string {
    return join(this.pins, name);
  }

  #takeSlot(): number {
    const slot = this.#freeSlots.pop() ?? this.#nextSlot++;
    if (slot >= MAX_ROUTES) throw new Error('the kernel path is full');
    return slot;
  }
}

/** The end of a tool's error output, which says why (libbpf prints the verifier's log first). */
function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' / ').slice(0, 600);
}
