/**
 * The kernel lab: one network namespace per host, each with a TUN device whose fd this process
 * holds. Between them this process runs the same routers, NAT routers and links as the virtual
 * network, on the real clock: userspace NATs use the NAT model, links apply delay, jitter and loss,
 * routers answer ICMP. A kernel-NAT box is a namespace with two TUN devices and nftables masquerade.
 *
 *   [ns alice] eth0 ~TUN~ ┐                          ┌ ~TUN~ eth0 [ns server]
 *                         ├ NAT (model) ── internet ─┤
 *   [ns bob]   eth0 ~TUN~ ┘   (this process)         └ ...
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ProfileCatalog } from '../nat/profiles.ts';
import { parseCidr } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import type { Link, LinkCounters } from '../net/virtual/link.ts';
import { VirtualNetwork } from '../net/virtual/network.ts';
import type { NatRouter, Router } from '../net/virtual/router.ts';
import { encodeIpv4 } from '../protocol/ipv4.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { LAB_STUN, Miniupnpd, type Redirect } from './miniupnpd.ts';
import { addRoute, attachInterface, createNamespace, deleteNamespace, nsExec } from './netns.ts';
import { PcapWriter } from './pcap.ts';
import { natInsideAddress, natsInBuildOrder, type Scenario, toLinkInit } from './scenario.ts';
import { TunDevice } from './tun.ts';
import { type HostCounters, TunHost } from './tun-host.ts';

/** The internet router's own address (source of its ICMP errors), inside the public range. */
const INTERNET_ADDRESS = '198.18.255.254';

export interface LabInit {
  /** Instance name; namespaces are `sc2c-<name>_<host>` (`_` never appears in a name). */
  readonly name: string;
  readonly scenario: Scenario;
  readonly catalog: ProfileCatalog;
  /** Write one pcap per link into this directory. */
  readonly pcapDir?: string;
  readonly seed?: number;
  readonly onError?: (error: Error) => void;
  /** A kernel:miniupnpd NAT's daemon log lines. */
  readonly onMiniupnpdLog?: (nat: string, line: string) => void;
}

export interface LabStatus {
  readonly name: string;
  readonly pid: number;
  readonly uptimeS: number;
  readonly hosts: readonly {
    name: string;
    namespace: string;
    addresses: readonly string[];
    counters: HostCounters;
  }[];
  readonly links: readonly {
    name: string;
    up: LinkCounters;
    down: LinkCounters;
  }[];
  readonly nats: readonly {
    name: string;
    kind: 'model' | 'kernel';
    profile: string;
    mappings: number | null;
  }[];
}

export function namespaceFor(labName: string, host: string): string {
  return `sc2c-${labName}_${host}`;
}

export class Lab {
  readonly #net: VirtualNetwork;
  readonly #clock = new SystemClock();
  readonly #hosts: TunHost[] = [];
  readonly #namespaces: string[] = [];
  readonly #natRouters = new Map<string, { router?: NatRouter; kernel?: string; profile: string }>();
  readonly #pcaps: PcapWriter[] = [];
  readonly #miniupnpd = new Map<string, Miniupnpd>();
  readonly #startedHosts = new Set<TunHost>();
  #labStun?: StunResponder;
  readonly #started = Date.now();
  #closed = false;
  readonly #devicePrefix = `s2${randomBytes(3).toString('hex')}`;
  #deviceCount = 0;

  private constructor(readonly init: LabInit) {
    if (init.pcapDir) mkdirSync(init.pcapDir, { recursive: true });
    this.#net = new VirtualNetwork({ clock: this.#clock, seed: init.seed ?? Date.now() & 0xffffffff });
  }

  /** Creates every namespace and device; on any failure removes what it made and rethrows. */
  static async start(init: LabInit): Promise<Lab> {
    const lab = new Lab(init);
    try {
      await lab.#build();
    } catch (error) {
      await lab.close();
      throw error;
    }
    return lab;
  }

  get namespaces(): readonly string[] {
    return this.#namespaces;
  }

  hostNamespaces(): Record<string, string> {
    return Object.fromEntries(
      this.#hosts.filter((h) => !h.name.includes(':')).map((h) => [h.name, h.namespace]),
    );
  }

  status(): LabStatus {
    const now = this.#clock.now();
    return {
      name: this.init.name,
      pid: process.pid,
      uptimeS: Math.round((Date.now() - this.#started) / 1000),
      hosts: this.#hosts.map((h) => ({
        name: h.name,
        namespace: h.namespace,
        addresses: h.addresses,
        counters: { ...h.counters },
      })),
      links: this.#net.links().map((l) => ({ name: l.name, ...l.counters() })),
      nats: [...this.#natRouters].map(([name, n]) => ({
        name,
        kind: n.router ? ('model' as const) : ('kernel' as const),
        profile: n.profile,
        mappings: n.router ? n.router.nat.mappings(now).length : null,
      })),
    };
  }

  /** Expires every mapping of a userspace NAT at once. Returns how many there were. */
  flush(natName: string, proto?: 'udp' | 'tcp'): number {
    const entry = this.#natRouters.get(natName);
    if (!entry)
      throw new Error(`no NAT named '${natName}' (NATs: ${[...this.#natRouters.keys()].join(', ')})`);
    if (!entry.router)
      throw new Error(
        `'${natName}' is a kernel NAT; flush its conntrack with: sc2c lab exec ${natName} -- conntrack -F`,
      );
    const count = entry.router.nat
      .mappings(this.#clock.now())
      .filter((m) => !proto || m.proto === proto).length;
    entry.router.nat.flush(proto);
    return count;
  }

  /**
   * A kernel:miniupnpd NAT's redirects, as miniupnpd lists them and as DNAT rules in the kernel;
   * with `restart`, the router reboots first (lab/miniupnpd.ts).
   */
  async portmap(
    natName: string,
    restart = false,
  ): Promise<{ nat: string; starts: number; redirects: Redirect[]; kernelRules: number }> {
    const daemon = this.#miniupnpd.get(natName);
    if (!daemon)
      throw new Error(
        `'${natName}' runs no miniupnpd (those that do: ${[...this.#miniupnpd.keys()].join(', ') || 'none'})`,
      );
    if (restart) await daemon.restart();
    return {
      nat: natName,
      starts: daemon.starts,
      redirects: daemon.redirects(),
      kernelRules: await daemon.kernelRedirects(),
    };
  }

  /** Idempotent: closes every device and deletes every namespace this lab created. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#miniupnpd.values()].map((d) => d.close()));
    this.#labStun?.close();
    for (const host of this.#hosts) host.close();
    await Promise.all(this.#namespaces.map((ns) => deleteNamespace(ns)));
    await Promise.all(this.#pcaps.map((p) => p.close()));
  }

  async #build(): Promise<void> {
    const { scenario, catalog } = this.init;
    const internet = this.#net.addRouter('internet', { addresses: [INTERNET_ADDRESS] });
    const server = await this.#addHost('server', scenario.server.addresses);
    this.#connect(server, internet, scenario.server.link);
    for (const h of scenario.hosts) this.#connect(await this.#addHost(h.name, [h.address]), internet, h.link);

    const lanSide = new Map<string, Router>();
    for (const nat of natsInBuildOrder(scenario)) {
      const upstream = nat.upstream ? lanSide.get(nat.upstream)! : internet;
      const inside = natInsideAddress(nat);
      if (nat.profile) {
        const router = this.#net.addNat(nat.name, {
          publicAddress: nat.publicAddress,
          insideAddress: inside,
          behaviour: catalog.resolve(nat.profile),
        });
        this.#connect(router, upstream, nat.link);
        this.#natRouters.set(nat.name, { router, profile: nat.profile });
        lanSide.set(nat.name, router);
      } else {
        // Kernel NAT: a namespace with a WAN and a LAN TUN device, forwarding and nftables masquerade.
        const ns = namespaceFor(this.init.name, nat.name);
        const wan = await this.#addHost(`${nat.name}:wan`, [nat.publicAddress], {
          namespace: ns,
          ifname: 'wan',
        });
        // The LAN address carries the LAN's prefix: miniupnpd serves only clients on it.
        const lan = await this.#addHost(`${nat.name}:lan`, [inside], {
          namespace: ns,
          ifname: 'lan',
          prefixLength: parseCidr(nat.lan).prefixLength,
        });
        await addRoute(ns, 'default', 'wan');
        await nsExec(ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
        this.#connect(wan, upstream, nat.link);
        if (nat.kernel === 'miniupnpd') {
          await this.#startLabStun(internet);
          const daemon = await Miniupnpd.start({
            namespace: ns,
            lan: nat.lan,
            onLog: (line) => this.init.onMiniupnpdLog?.(nat.name, line),
          });
          this.#miniupnpd.set(nat.name, daemon);
        } else {
          // Only the LAN's packets: the box's own (none here) keep their ports, as on a router.
          const random = nat.kernel === 'masquerade-random-fully' ? ' fully-random' : '';
          await nsExec(
            ns,
            'nft',
            `add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr ${nat.lan} oifname "wan" masquerade${random}`,
          );
        }
        const lanRouter = this.#net.addRouter(`${nat.name}-lan`, { addresses: [] });
        const lanLink = this.#connect(lan, lanRouter, undefined);
        lanRouter.setDefaultRoute(lanLink);
        this.#natRouters.set(nat.name, { kernel: ns, profile: `kernel:${nat.kernel}` });
        lanSide.set(nat.name, lanRouter);
      }
      for (const h of nat.hosts) {
        // The NAT is the host's router by address (PCP and NAT-PMP clients read it from the route).
        const host = await this.#addHost(h.name, [h.address], undefined, inside);
        this.#connect(host, lanSide.get(nat.name)!, h.link);
      }
    }
    for (const host of this.#hosts) this.#startHost(host);
  }

  /**
   * The STUN server miniupnpd checks its external address with (lab/miniupnpd.ts): our responder
   * on a host of the lab's internet, started once, before the first miniupnpd. Its sockets live in
   * this process, so it needs the TUN hosts' readers running: they start here too (idempotent).
   */
  async #startLabStun(internet: Router): Promise<void> {
    if (this.#labStun) return;
    const host = this.#net.addHost('lab-stun', {
      addresses: [LAB_STUN.primary.address, LAB_STUN.alternate.address],
    });
    this.#net.connect(host, internet, {});
    this.#labStun = await StunResponder.start(host, {
      primary: LAB_STUN.primary,
      alternate: LAB_STUN.alternate,
    });
    for (const h of this.#hosts) this.#startHost(h);
  }

  #startHost(host: TunHost): void {
    if (this.#startedHosts.has(host)) return;
    this.#startedHosts.add(host);
    host.start((error) => this.init.onError?.(error));
  }

  #connect(
    down: Parameters<VirtualNetwork['connect']>[0],
    up: Router,
    spec: Parameters<typeof toLinkInit>[0],
  ): Link {
    const link = this.#net.connect(down, up, toLinkInit(spec));
    if (this.init.pcapDir) {
      const file = `${link.downstream.name}--${link.upstream.name}`.replace(/[^a-z0-9-]+/gi, '_');
      const pcap = new PcapWriter(join(this.init.pcapDir, `${file}.pcap`), (error) =>
        this.init.onError?.(new Error(`pcap ${file}: ${error.message}`)),
      );
      this.#pcaps.push(pcap);
      link.tap = (packet) => {
        if (packet.kind !== 'tcp' || packet.wire)
          pcap.write(encodeIpv4(packet), performance.timeOrigin + performance.now());
      };
    }
    return link;
  }

  /** A namespace (unless `into` names an existing one) with one TUN device carrying `addresses`. */
  async #addHost(
    name: string,
    addresses: readonly string[],
    into?: { namespace: string; ifname: string; prefixLength?: number },
    router?: string,
  ): Promise<TunHost> {
    const namespace = into?.namespace ?? namespaceFor(this.init.name, name);
    if (!this.#namespaces.includes(namespace)) {
      this.#namespaces.push(namespace);
      await createNamespace(namespace);
    }
    const device = `${this.#devicePrefix}${this.#deviceCount++}`;
    const tun = TunDevice.open(device);
    const host = new TunHost(name, namespace, addresses, tun, this.#net.fabric);
    this.#hosts.push(host);
    const ifname = into?.ifname ?? 'eth0';
    await attachInterface(namespace, device, { name: ifname, addresses, prefixLength: into?.prefixLength });
    if (!into) await addRoute(namespace, 'default', ifname, addresses[0], router);
    this.#net.addEndHost(host);
    return host;
  }
}
