/**
 * A call's relay leg: a TURN allocation on its own socket (never the media socket, whose first
 * packet must take the predicted port), the permission for the peer's public address, and a fresh
 * allocation when the old one died with our NAT's mappings.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import type { RelayLeg } from '../path/routed-path.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import type { ShortLivedCredentials } from '../relay/credentials.ts';
import { TurnClient } from '../relay/turn-client.ts';

export interface RelayConfig {
  /** The TURN server (the embedded one in `sc2c server`, or coturn). */
  readonly server: Endpoint;
  /**
   * How to reach it: 'udp' (default), 'tcp' where UDP to the server is blocked (RFC 8656 §3.1), or
   * 'tls' (TLS over TCP, `turns:`) where only TLS gets out. Over TCP or TLS our relayed media goes
   * out through our own allocation too, so it crosses the relay twice.
   */
  readonly transport?: 'udp' | 'tcp' | 'tls';
  /** For 'tls': the CA to trust and the name to check (default: the server's IP address). */
  readonly tls?: { readonly ca?: string; readonly servername?: string };
  /** Long-term credentials: used when the signaling server issued none (or with `static`). */
  readonly username: string;
  readonly password: string;
  /**
   * 'issued' (default): the short-lived credential the signaling server issued (in the INVITE, or
   * with the registration) while it is valid, else username/password. 'static': always those.
   */
  readonly credentials?: 'issued' | 'static';
  /** No direct path confirmed within this long after the go: media starts on the relay. Default 1000 ms. */
  readonly budgetMs?: number;
  /** Silence on the direct path that moves media to the relay, at the least. Default 500 ms. */
  readonly deadAfterMs?: number;
  /** While on the relay after a direct path died, try a fresh direct path this often. Default 3000 ms. */
  readonly retryDirectMs?: number;
  /** Background direct attempts per call. Default 5. */
  readonly retryDirectAttempts?: number;
  /** Over UDP, ask for a raw relay and latch it (issue 23). Default true; coturn ignores the ask. */
  readonly raw?: boolean;
}

/**
 * What carries the media relayed to us: `kernel` (our server forwards in nftables), `raw` (our
 * server forwards plain datagrams in its process), `turn` (ChannelData, any RFC 8656 server).
 */
export type RelayPath = 'kernel' | 'raw' | 'turn';

/** Username and password for one allocation. */
export interface TurnCredential {
  readonly username: string;
  readonly password: string;
}

/** An issued credential must outlive the allocation request by this much to be used. */
const CREDENTIAL_MARGIN_S = 30;

/**
 * The credential to allocate with: the first issued one still valid (the INVITE's, then the
 * registration's), else the configured long-term one.
 */
export function pickCredential(
  config: RelayConfig,
  issued: readonly (ShortLivedCredentials | undefined)[],
  epochMs: number,
): TurnCredential {
  if (config.credentials !== 'static') {
    const valid = issued.find((c) => c && c.expiresAtS > epochMs / 1000 + CREDENTIAL_MARGIN_S);
    if (valid) return valid;
  }
  return { username: config.username, password: config.password };
}

/**
 * The description to advertise with a relay: our relayed address, and on a network that blocks
 * UDP (no STUN answer) the public address the TURN server saw our TCP connection come from, which
 * the peer needs for its permission.
 */
export function describeWithRelay(
  description: CallDescription,
  relay: CallRelay,
  udpBlocked: boolean | undefined,
): CallDescription {
  const publicEndpoint = udpBlocked
    ? { address: relay.client.mapped.address, port: description.publicEndpoint.port }
    : description.publicEndpoint;
  return { ...description, publicEndpoint, relayEndpoint: relay.relayed };
}

export class CallRelay {
  #peerAddresses: string[] = [];
  #onLost?: (why: string) => void;
  #offFailed?: () => void;
  #renewal?: Promise<boolean>;

  private constructor(
    private readonly c: { readonly network: Network; readonly clock: Clock },
    private readonly config: RelayConfig,
    private readonly credential: () => TurnCredential,
    public client: TurnClient,
    /** The TURN client's own UDP socket; none over TCP. */
    public socket: UdpSocket | undefined,
  ) {}

  /**
   * Allocates with `credential()` (asked again when the allocation has to be made anew); rejects
   * with the TURN error (the call then goes on without a relay).
   */
  static async allocate(
    c: { network: Network; clock: Clock },
    config: RelayConfig,
    credential: () => TurnCredential,
  ): Promise<CallRelay> {
    const { client, socket } = await CallRelay.#open(c, config, credential());
    return new CallRelay(c, config, credential, client, socket);
  }

  static async #open(
    c: { network: Network; clock: Clock },
    config: RelayConfig,
    credential: TurnCredential,
  ): Promise<{ client: TurnClient; socket: UdpSocket | undefined }> {
    const init = {
      server: config.server,
      username: credential.username,
      password: credential.password,
      rtoMs: 200,
      attempts: 4,
    };
    if (config.transport === 'tcp' || config.transport === 'tls') {
      const tls = config.transport === 'tls' ? (config.tls ?? {}) : undefined;
      const client = await TurnClient.allocateOverTcp(
        { clock: c.clock, network: c.network },
        { ...init, tls },
      );
      return { client, socket: undefined };
    }
    const socket = await c.network.bindUdp();
    try {
      const client = await TurnClient.allocate({ clock: c.clock }, socket, {
        ...init,
        rawRelay: config.raw ?? true,
      });
      if (client.rawRelay) {
        try {
          await client.latch();
        } catch {
          // Unlatched, the relay sends us ChannelData as any TURN server does.
          client.rawRelay = undefined;
        }
      }
      return { client, socket };
    } catch (error) {
      socket.close();
      throw error;
    }
  }

  get relayed(): Endpoint {
    return this.client.relayed;
  }

  get path(): RelayPath {
    const raw = this.client.rawRelay;
    return raw === 'kernel' ? 'kernel' : raw === 'userspace' ? 'raw' : 'turn';
  }

  /**
   * Lets the peer send to our relayed address, and (over TCP) us send to it: from its public
   * address (a peer on UDP sends from its own socket) and from its relayed address (a peer on TCP
   * sends through its allocation).
   */
  async permit(peerAddresses: readonly string[]): Promise<void> {
    this.#peerAddresses = [...new Set(peerAddresses)];
    await this.client.createPermission(this.#peerAddresses);
  }

  /**
   * The leg a `RoutedPath` sends and receives relayed media on. Over UDP media goes from our TURN
   * socket straight to the peer's relayed address; over TCP it goes through our allocation, on a
   * channel once one is bound (Send indications until then).
   */
  leg(peerRelayed: Endpoint): RelayLeg {
    if (this.socket) return { inbound: this.client, socket: this.socket, peerRelayed };
    const client = this.client;
    void client.bindChannel(peerRelayed).catch(() => {
      // Send indications carry the media meanwhile; a dead allocation is found by ensureAlive.
    });
    return {
      inbound: client,
      socket: { local: client.relayed, send: (data, to) => client.send(data, to) },
      peerRelayed,
    };
  }

  /**
   * Checks the allocation with a Refresh. When our NAT dropped its mapping the server sees a new
   * 5-tuple and refuses (437) or the refresh goes unanswered: allocate again on a new socket and
   * permit the peer. Resolves true when the relayed address changed.
   */
  ensureAlive(): Promise<boolean> {
    // One renewal at a time: a route change and a lost allocation can ask at once.
    this.#renewal ??= this.#renew().finally(() => {
      this.#renewal = undefined;
    });
    return this.#renewal;
  }

  async #renew(): Promise<boolean> {
    if (
      await this.client.refresh().then(
        () => true,
        () => false,
      )
    )
      return false;
    const old = { client: this.client, socket: this.socket };
    const fresh = await CallRelay.#open(this.c, this.config, this.credential());
    this.client = fresh.client;
    this.socket = fresh.socket;
    if (this.#onLost) this.watch(this.#onLost);
    void old.client.close().finally(() => old.socket?.close());
    if (this.#peerAddresses.length > 0) await this.client.createPermission(this.#peerAddresses);
    return true;
  }

  /**
   * Calls `onLost` when the allocation dies on its own: the TCP connection to the server closed, or
   * a periodic refresh went unanswered or was refused (the server restarted, our NAT forgot us).
   * It follows the allocation through renewals.
   */
  watch(onLost: (why: string) => void): void {
    this.#onLost = onLost;
    this.#offFailed?.();
    this.#offFailed = this.client.on('failed', (why) => this.#onLost?.(why));
  }

  async close(): Promise<void> {
    this.#offFailed?.();
    this.#onLost = undefined;
    await this.client.close();
    this.socket?.close();
  }
}
