/**
 * A call's relay leg: a TURN allocation on its own socket (never the media socket, whose first
 * packet must take the predicted port), the permission for the peer's public address, and a fresh
 * allocation when the old one died with our NAT's mappings.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import type { RelayLeg } from '../relay/routed-path.ts';
import { TurnClient } from '../relay/turn-client.ts';

export interface RelayConfig {
  /** The TURN server (the embedded one in `sc2c server`, or coturn). */
  readonly server: Endpoint;
  readonly username: string;
  readonly password: string;
  /** No direct path confirmed within this long after the go: media starts on the relay. Default 1000 ms. */
  readonly budgetMs?: number;
  /** Silence on the direct path that moves media to the relay, at the least. Default 500 ms. */
  readonly deadAfterMs?: number;
  /** While on the relay after a direct path died, try a fresh direct path this often. Default 3000 ms. */
  readonly retryDirectMs?: number;
  /** Background direct attempts per call. Default 5. */
  readonly retryDirectAttempts?: number;
}

export class CallRelay {
  #peerAddress?: string;

  private constructor(
    private readonly c: { readonly network: Network; readonly clock: Clock },
    private readonly config: RelayConfig,
    public client: TurnClient,
    public socket: UdpSocket,
  ) {}

  /** Allocates; rejects with the TURN error (the call then goes on without a relay). */
  static async allocate(c: { network: Network; clock: Clock }, config: RelayConfig): Promise<CallRelay> {
    const { client, socket } = await CallRelay.#open(c, config);
    return new CallRelay(c, config, client, socket);
  }

  static async #open(
    c: { network: Network; clock: Clock },
    config: RelayConfig,
  ): Promise<{ client: TurnClient; socket: UdpSocket }> {
    const socket = await c.network.bindUdp();
    try {
      const client = await TurnClient.allocate({ clock: c.clock }, socket, {
        server: config.server,
        username: config.username,
        password: config.password,
        rtoMs: 200,
        attempts: 4,
      });
      return { client, socket };
    } catch (error) {
      socket.close();
      throw error;
    }
  }

  get relayed(): Endpoint {
    return this.client.relayed;
  }

  /** Lets the peer's public address send to our relayed address. */
  async permit(peerAddress: string): Promise<void> {
    this.#peerAddress = peerAddress;
    await this.client.createPermission([peerAddress]);
  }

  /** The leg a `RoutedPath` sends and receives relayed media on. */
  leg(peerRelayed: Endpoint): RelayLeg {
    return { inbound: this.client, socket: this.socket, peerRelayed };
  }

  /**
   * Checks the allocation with a Refresh. When our NAT dropped its mapping the server sees a new
   * 5-tuple and refuses (437) or the refresh goes unanswered: allocate again on a new socket and
   * permit the peer. Resolves true when the relayed address changed.
   */
  async ensureAlive(): Promise<boolean> {
    if (
      await this.client.refresh().then(
        () => true,
        () => false,
      )
    )
      return false;
    const old = { client: this.client, socket: this.socket };
    const fresh = await CallRelay.#open(this.c, this.config);
    this.client = fresh.client;
    this.socket = fresh.socket;
    void old.client.close().finally(() => old.socket.close());
    if (this.#peerAddress) await this.client.createPermission([this.#peerAddress]);
    return true;
  }

  async close(): Promise<void> {
    await this.client.close();
    this.socket.close();
  }
}
