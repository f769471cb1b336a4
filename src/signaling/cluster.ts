/**
 * Several server nodes, one service (issue 24). Each node announces itself in the shared store
 * (its id and SIP address, renewed every few seconds); a call whose callee is registered on another
 * node goes to that node over a **link**: one SIP connection between the two nodes, carrying every
 * forwarded request and response of their shared calls, whichever side opened it.
 *
 * A link authenticates like a gateway, with digest: its REGISTER names the node (`Sc2c-Node`) and
 * the password is the cluster's shared secret. A node's id is its digest user name, so a link can
 * only claim an id that a holder of the secret chose.
 */

import type { Endpoint } from '../net/address.ts';
import type { Clock, Timer } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import { SignalingClient } from './client.ts';
import { DigestAuthenticator, type PasswordBook } from './digest-auth.ts';
import type { SipConnection } from './sip-connection.ts';
import { NODE_ID, type SignalingStore } from './store.ts';

/** The header a link's REGISTER names its node with. */
export const NODE_HEADER = 'Sc2c-Node';
/**
 * The round trip between a node and its own party of a call, added by that node to what it
 * forwards on a link: the coordinator at the caller's node adds it to the link's own round trip.
 */
export const HOP_RTT_HEADER = 'Sc2c-Hop-Rtt';

export interface ClusterInit {
  /** This node's id (`NODE_ID`: lower-case letters, digits and `-`, up to 32). */
  readonly node: string;
  /** Shared by every node: links authenticate with it. At least 16 characters. */
  readonly secret: string;
  /** Where other nodes reach this node's SIP listener. */
  readonly advertise: Endpoint;
  readonly realm: string;
  /** How often this node renews its announcement. Default 5000 ms. */
  readonly heartbeatMs?: number;
  /** How long an announcement lives: a node silent this long is taken for dead. Default 15 000 ms. */
  readonly nodeTtlMs?: number;
  /** Connecting to another node may take this long. Default 3000 ms. */
  readonly connectTimeoutMs?: number;
}

export interface ClusterComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly store: SignalingStore;
}

/**
 * What the server does with a link it opens: `wire` routes its messages from the moment it is
 * connected (the other node may use it as soon as it has authenticated it, before our REGISTER's
 * 200 is back); `adopt` then re-binds its calls.
 */
export interface LinkHooks {
  readonly wire: (node: string, connection: SipConnection, client: SignalingClient) => void;
  readonly adopt: (node: string, connection: SipConnection) => void;
  /** Each heartbeat's outcome: whether the store took this node's announcement. */
  readonly announced?: (ok: boolean) => void;
}

export class Cluster {
  readonly authenticator: DigestAuthenticator;
  /** The open link to each node, whichever side opened it. */
  readonly #links = new Map<string, SipConnection>();
  readonly #opening = new Map<string, Promise<SipConnection>>();
  #heartbeat?: Timer;
  #closed = false;

  constructor(
    private readonly c: ClusterComponents,
    readonly init: ClusterInit,
    private readonly hooks: LinkHooks,
  ) {
    if (!NODE_ID.test(init.node))
      throw new Error(`node id '${init.node}' must be 1-32 lower-case letters, digits or '-'`);
    if (init.secret.length < 16) throw new Error('the cluster secret must be at least 16 characters');
    const book: PasswordBook = {
      get: (user) => (NODE_ID.test(user) && user !== init.node ? { password: init.secret } : undefined),
    };
    this.authenticator = new DigestAuthenticator(init.realm, book, () => c.clock.now());
  }

  get node(): string {
    return this.init.node;
  }

  /** Announces this node now and every `heartbeatMs`. */
  async start(): Promise<void> {
    await this.#announce();
    const every = this.init.heartbeatMs ?? 5000;
    const tick = (): void => {
      if (this.#closed) return;
      this.#announce()
        .then(
          () => this.hooks.announced?.(true),
          () => this.hooks.announced?.(false),
        )
        .finally(() => {
          if (!this.#closed) this.#heartbeat = this.c.clock.setTimeout(tick, every);
        });
    };
    this.#heartbeat = this.c.clock.setTimeout(tick, every);
  }

  #announce(): Promise<void> {
    const { node, advertise } = this.init;
    return this.c.store.putNode(
      { id: node, address: advertise.address, port: advertise.port },
      this.init.nodeTtlMs ?? 15_000,
    );
  }

  /**
   * A link accepted from `node` (its REGISTER authenticated). New calls to `node` take the newest
   * link; an older one stays open for the calls on it (two nodes that opened one each at once).
   */
  accepted(node: string, connection: SipConnection): void {
    this.#links.set(node, connection);
    connection.on('close', () => {
      if (this.#links.get(node) === connection) this.#links.delete(node);
    });
  }

  linkTo(node: string): SipConnection | undefined {
    const link = this.#links.get(node);
    return link && !link.closed ? link : undefined;
  }

  /** The link to `node`, opened (and registered) when there is none. Rejects if it is not alive. */
  link(node: string): Promise<SipConnection> {
    const open = this.linkTo(node);
    if (open) return Promise.resolve(open);
    let opening = this.#opening.get(node);
    if (!opening) {
      opening = this.#open(node).finally(() => this.#opening.delete(node));
      this.#opening.set(node, opening);
    }
    return opening;
  }

  async #open(node: string): Promise<SipConnection> {
    if (this.#closed) throw new Error('cluster closed');
    if (node === this.init.node || !NODE_ID.test(node)) throw new Error(`no link to '${node}'`);
    const where = await this.c.store.getNode(node);
    if (!where) throw new Error(`node ${node} is not alive`);
    const client = await SignalingClient.connect(this.c, {
      server: { address: where.address, port: where.port },
      domain: this.init.realm,
      user: this.init.node,
      password: this.init.secret,
      connectTimeoutMs: this.init.connectTimeoutMs ?? 3000,
      registerHeaders: [[NODE_HEADER, this.init.node]],
    });
    this.hooks.wire(node, client.connection, client);
    try {
      await client.register();
    } catch (error) {
      client.close();
      throw error;
    }
    if (this.#closed) {
      client.close();
      throw new Error('cluster closed');
    }
    const connection = client.connection;
    this.#links.set(node, connection);
    client.on('close', () => {
      if (this.#links.get(node) === connection) this.#links.delete(node);
    });
    this.hooks.adopt(node, connection);
    return connection;
  }

  /** Idempotent: stops announcing and closes every link. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#heartbeat?.clear();
    for (const link of this.#links.values()) link.close('server closing');
    this.#links.clear();
  }
}
