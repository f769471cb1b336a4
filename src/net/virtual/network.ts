/**
 * Builds a virtual network: hosts, routers and NAT routers joined by links. `connect(down, up)`
 * links a node to its upstream router: the upstream learns a /32 route to each of the node's
 * addresses and the node sends everything else up.
 */

import type { NatBehaviour } from '../../nat/behaviour.ts';
import { Nat } from '../../nat/nat.ts';
import { createRng, type Rng } from '../../util/rng.ts';
import type { Clock } from '../clock.ts';
import { createFabric, type Fabric } from './fabric.ts';
import { VirtualHost } from './host.ts';
import { Link, type LinkEnd, type LinkInit } from './link.ts';
import { NatRouter, Router } from './router.ts';
import type { TraceSink } from './trace.ts';

export interface VirtualNetworkInit {
  readonly clock: Clock;
  /** Seeds every random draw: loss, jitter, ephemeral ports, NAT allocation. */
  readonly seed: number;
  readonly trace?: TraceSink;
}

export interface AddNatInit {
  readonly publicAddress: string;
  readonly insideAddress: string;
  readonly behaviour: NatBehaviour;
  /** First port of sequential allocation; default drawn from the seed. */
  readonly firstPort?: number;
}

/** An end host on a link: a virtual host, or a TUN-backed host in the kernel lab. */
export interface EndHost extends LinkEnd {
  readonly addresses: readonly string[];
  attach(link: Link): void;
}

type Downstream = EndHost | NatRouter | Router;

export class VirtualNetwork {
  readonly clock: Clock;
  readonly #rng: Rng;
  readonly #fabric: Fabric;
  readonly #links: Link[] = [];
  readonly #nodes = new Map<string, Downstream>();

  constructor(init: VirtualNetworkInit) {
    this.clock = init.clock;
    this.#rng = createRng(init.seed);
    this.#fabric = createFabric(init.clock, this.#rng.fork('fabric'), init.trace);
  }

  addHost(name: string, init: { addresses: readonly string[]; connectTimeoutMs?: number }): VirtualHost {
    return this.#add(new VirtualHost(name, init, this.#fabric));
  }

  addRouter(name: string, init: { addresses: readonly string[] }): Router {
    return this.#add(new Router(name, init.addresses, this.#fabric));
  }

  addNat(name: string, init: AddNatInit): NatRouter {
    const rng = this.#rng.fork(`nat:${name}`);
    const nat = new Nat({
      behaviour: init.behaviour,
      publicAddress: init.publicAddress,
      random: () => rng.next(),
      firstPort: init.firstPort,
    });
    return this.#add(
      new NatRouter(
        name,
        { publicAddress: init.publicAddress, insideAddress: init.insideAddress, nat },
        this.#fabric,
      ),
    );
  }

  /** Registers an end host built outside this class (the lab's TUN hosts). */
  addEndHost<T extends EndHost>(host: T): T {
    return this.#add(host);
  }

  /** Packet ids, clock and trace shared by every node. */
  get fabric(): Fabric {
    return this.#fabric;
  }

  /** Links `downstream` to its upstream router. Returns the link (for counters). */
  connect(downstream: Downstream, upstream: Router, init: LinkInit = {}): Link {
    const link = new Link(
      downstream,
      upstream,
      init,
      this.clock,
      this.#rng.fork(`link:${downstream.name}:${upstream.name}`),
      (record) => this.#fabric.trace(record.node, record.event, record.packet, record.detail),
    );
    this.#links.push(link);
    if (downstream instanceof NatRouter) {
      downstream.setOutside(link);
      upstream.addRoute(`${downstream.publicAddress}/32`, link);
    } else if (downstream instanceof Router) {
      downstream.setDefaultRoute(link);
      for (const address of downstream.addresses) upstream.addRoute(`${address}/32`, link);
    } else {
      downstream.attach(link);
      for (const address of downstream.addresses) upstream.addRoute(`${address}/32`, link);
    }
    return link;
  }

  /** Adds a route on `router` for a whole prefix behind `link` (e.g. a LAN behind a plain router). */
  route(router: Router, cidr: string, link: Link): void {
    router.addRoute(cidr, link);
  }

  links(): readonly Link[] {
    return this.#links;
  }

  node(name: string): Downstream | undefined {
    return this.#nodes.get(name);
  }

  /** A child RNG for helpers (background traffic and the like), stable for a given seed and label. */
  rng(label: string): Rng {
    return this.#rng.fork(label);
  }

  #add<T extends Downstream>(node: T): T {
    if (this.#nodes.has(node.name)) throw new Error(`duplicate node name '${node.name}'`);
    this.#nodes.set(node.name, node);
    return node;
  }
}
