/**
 * The server's side of the cluster (issue 24): which of its connections are links to other nodes,
 * a link's REGISTER (digest against the cluster secret), and the hop round trip that rides on what
 * a link carries. The store and the announcements are the `Cluster`'s; what a link means for the
 * calls on it (track, re-bind, lose) is the server's, told through `NodeLinksHost`.
 */
import type { SipMessage, SipRequest, SipResponse } from '../protocol/sip/message.ts';
import { header } from '../protocol/sip/message.ts';
import { Cluster, type ClusterComponents, type ClusterInit, HOP_RTT_HEADER, NODE_HEADER } from './cluster.ts';
import type { Party } from './dialogs.ts';
import { readHopRtt, withHeader } from './forwarding.ts';
import { quoteWire, type SipConnection } from './sip-connection.ts';

export interface NodeLinksHost {
  readonly onRequest: (connection: SipConnection, request: SipRequest) => void;
  readonly onResponse: (connection: SipConnection, response: SipResponse) => void;
  /** A link to `node` is up (either side opened it). */
  readonly up: (node: string, connection: SipConnection) => void;
  /** A link to `node` closed. */
  readonly down: (node: string, connection: SipConnection) => void;
  /** A link's REGISTER failed its password from `source` (counted and throttled like a gateway's). */
  readonly authFailed: (source: string, reason: string) => void;
  /** Whether the store took the last announcement of this node. */
  readonly announced: (ok: boolean) => void;
}

/** What a link's REGISTER came to: accepted (a new link, or one already known), or refused. */
export type LinkRegistration =
  | { readonly accepted: string; readonly isNew: boolean }
  | { readonly status: number; readonly extra: [string, string][] };

export class NodeLinks {
  readonly #nodes = new Map<SipConnection, string>();
  #cluster?: Cluster;

  constructor(private readonly host: NodeLinksHost) {}

  /** In a cluster (after `join`)? */
  get joined(): boolean {
    return this.#cluster !== undefined;
  }

  /** Announces this node and opens links to `nodes` (those its restored dialogs reach). */
  async join(c: ClusterComponents, init: ClusterInit, nodes: Iterable<string>): Promise<void> {
    this.#cluster = new Cluster(c, init, {
      wire: (node, connection, client) => {
        this.#nodes.set(connection, node);
        client.on('request', (request) => this.host.onRequest(connection, request));
        connection.on('response', (response) => this.host.onResponse(connection, response));
        connection.on('close', () => this.closed(connection));
      },
      adopt: (node, connection) => this.host.up(node, connection),
      announced: (ok) => this.host.announced(ok),
    });
    await this.#cluster.start();
    for (const node of nodes) this.link(node).catch(() => {});
  }

  /** Links open now (accepted or opened here). */
  get count(): number {
    return this.#nodes.size;
  }

  /** The node `connection` links to, if it is a link. */
  nodeOf(connection: SipConnection): string | undefined {
    return this.#nodes.get(connection);
  }

  /** The link to `node`, opened when there is none; rejects when the node is gone. */
  link(node: string): Promise<SipConnection> {
    if (!this.#cluster) return Promise.reject(new Error('not in a cluster'));
    return this.#cluster.link(node);
  }

  /**
   * A REGISTER naming a node (`Sc2c-Node`) on an accepted connection identified as `client` (for
   * the digest nonce) from `source`. A connection already carrying a user's registration, a server
   * outside a cluster, a wrong password or another id than the one authenticated: refused.
   */
  register(
    connection: SipConnection,
    request: SipRequest,
    client: string,
    source: string,
    hasUser: boolean,
  ): LinkRegistration {
    const cluster = this.#cluster;
    if (!cluster || hasUser) {
      this.host.authFailed(source, 'not a cluster node');
      return { status: 403, extra: [['Warning', '399 sc2c "not a cluster node"']] };
    }
    const claimed = header(request, NODE_HEADER)!.trim();
    const auth = cluster.authenticator.check(request, client);
    if (!auth.ok) {
      if (auth.status === 403) this.host.authFailed(source, `node link refused: ${quoteWire(auth.reason)}`);
      return { status: auth.status, extra: auth.challenge ? [['WWW-Authenticate', auth.challenge]] : [] };
    }
    if (auth.user !== claimed)
      return {
        status: 403,
        extra: [['Warning', `399 sc2c "${NODE_HEADER} does not name the authenticated node"`]],
      };
    const known = this.#nodes.get(connection);
    if (known !== undefined) return { accepted: known, isNew: false };
    this.#nodes.set(connection, claimed);
    cluster.accepted(claimed, connection);
    this.host.up(claimed, connection);
    return { accepted: claimed, isNew: true };
  }

  /** A connection closed; if it was a link, its node is told down. */
  closed(connection: SipConnection): void {
    const node = this.#nodes.get(connection);
    if (node === undefined) return;
    this.#nodes.delete(connection);
    this.host.down(node, connection);
  }

  /**
   * `message` as it leaves on `target`: onto a link from one of our gateways (`source`), with the
   * round trip to that gateway (`rttMs`), for the caller's node to time the go; otherwise without
   * any such header, since a gateway never sets it.
   */
  outgoing<M extends SipMessage>(
    target: SipConnection,
    source: SipConnection | undefined,
    message: M,
    rttMs: (c: SipConnection) => number | undefined,
  ): M {
    const rtt = this.#nodes.has(target) && source && !this.#nodes.has(source) ? rttMs(source) : undefined;
    return withHeader(message, HOP_RTT_HEADER, rtt === undefined ? undefined : rtt.toFixed(1));
  }

  /** A message from `party`'s link carries the round trip between its node and that node's gateway. */
  heard(party: Party<SipConnection>, message: SipMessage): void {
    if (!party.connection || !this.#nodes.has(party.connection)) return;
    const rtt = readHopRtt(message, HOP_RTT_HEADER);
    if (rtt !== undefined) party.hopRttMs = rtt;
  }

  /** Idempotent: stops announcing and closes every link. */
  close(): void {
    this.#cluster?.close();
  }
}
