/**
 * TURN client (RFC 8656) over UDP on one of the gateway's sockets, or over a TCP connection of its
 * own (§3.1, for networks that block UDP): allocates a relayed address, keeps it, its permissions
 * and its channels alive, and carries data both ways. It talks to any RFC 8656 server: the embedded
 * one in `sc2c server`, and coturn. Over UDP, everything else arriving on the socket (direct media,
 * punch checks) is left to the socket's other listeners.
 */
import { randomBytes } from 'node:crypto';
import { type Endpoint, formatEndpoint, sameEndpoint } from '../net/address.ts';
import { type Clock, every, sleep, type Timer } from '../net/clock.ts';
import type { Network, StreamConnection, UdpSocket } from '../net/types.ts';
import {
  decodeAddress,
  decodeErrorCode,
  decodeXorAddress,
  encodeText,
  encodeXorAddress,
} from '../protocol/stun/attributes.ts';
import { addFingerprint, addMessageIntegrity, verifyMessageIntegrity } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  findAttribute,
  isStun,
  type StunAttribute,
  StunClass,
  type StunMessage,
  StunMethod,
} from '../protocol/stun/message.ts';
import {
  CHANNEL_MIN,
  decodeChannelData,
  decodeU32,
  encodeChannelData,
  encodeChannelNumber,
  encodeRequestedTransport,
  encodeU32,
  isChannelData,
  longTermKey,
  PROTOCOL_UDP,
  RAW_RELAY_PATH,
  SC2C_RAW_RELAY,
  TURN_LIFETIMES,
  TurnAttribute,
  TurnMethod,
} from '../protocol/stun/turn.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { streamTransport, type TurnTransport, udpTransport } from './turn-transport.ts';

export interface TurnClientInit {
  readonly server: Endpoint;
  readonly username: string;
  readonly password: string;
  /** Requested allocation lifetime. Default 600 s. */
  readonly lifetimeS?: number;
  /** First retransmission timeout; doubles per retry (RFC 8489 §6.2.1). Default 250 ms. */
  readonly rtoMs?: number;
  /** Requests sent per transaction before giving up. Default 6. */
  readonly attempts?: number;
  /** `allocateOverTcp` only: TLS on the connection (TURN over TLS, `turns:`), trusting `ca`. */
  readonly tls?: { readonly ca?: string; readonly servername?: string };
  /**
   * Over UDP: ask for a raw relay (SC2C-RAW-RELAY, issue 23). Our server grants it; others ignore
   * the attribute and the allocation is plain TURN (`rawRelay` stays undefined).
   */
  readonly rawRelay?: boolean;
}

/** Where a granted raw relay forwards: in the kernel, or in the server's process. */
export type RawRelayPath = 'kernel' | 'userspace';

/** How often a latch is sent again, so that our NAT keeps the mapping toward the relayed address open. */
const LATCH_KEEPALIVE_MS = 15_000;

export class TurnError extends Error {
  constructor(
    readonly code: number | null,
    message: string,
    /** A signed 300 (Try Alternate): the server that offers the allocation instead. */
    readonly alternate?: Endpoint,
  ) {
    super(message);
    this.name = 'TurnError';
  }
}

export type TurnClientEvents = {
  /** Data a peer sent to our relayed address. */
  data: [data: Uint8Array, peer: Endpoint];
  /** The allocation is gone (refresh refused or unanswered): the relay path is dead. */
  failed: [reason: string];
};

export interface TurnClientCounters {
  packetsSent: number;
  bytesSent: number;
  packetsReceived: number;
  bytesReceived: number;
}

export class TurnClient extends TypedEmitter<TurnClientEvents> {
  readonly counters: TurnClientCounters = {
    packetsSent: 0,
    bytesSent: 0,
    packetsReceived: 0,
    bytesReceived: 0,
  };
  /** Open transactions; called with the answer, or with nothing when the transport broke. */
  readonly #pending = new Map<string, (message: StunMessage | undefined) => void>();
  /** Error answers' bytes, for checking a 300's MESSAGE-INTEGRITY. */
  readonly #raw = new WeakMap<StunMessage, Uint8Array>();
  /** Why the transport broke (the TCP connection closed), once it has. */
  #broken?: string;
  readonly #channels = new Map<string, number>();
  /** The same bindings by channel number: the lookup each inbound ChannelData needs. */
  readonly #channelPeers = new Map<number, Endpoint>();
  readonly #permissions = new Set<string>();
  #nextChannel = CHANNEL_MIN;
  #realm = '';
  #nonce = '';
  #key?: Uint8Array;
  #refreshTimer?: Timer;
  #permissionTimer?: Timer;
  #closed = false;
  readonly #off: () => void;
  readonly #transport: TurnTransport;
  relayed: Endpoint = { address: '0.0.0.0', port: 0 };
  /** A raw relay the server granted, and on which path; undefined for plain TURN. */
  rawRelay?: RawRelayPath;
  /** The UDP socket (none over TCP): a raw relay's data arrives on it from the relayed address. */
  #socket?: UdpSocket;
  #latchTimer?: Timer;
  #offRaw?: () => void;
  mapped: Endpoint = { address: '0.0.0.0', port: 0 };
  lifetimeS = 0;

  private constructor(
    private readonly c: { readonly clock: Clock },
    transport: (client: TurnClient) => TurnTransport,
    private readonly init: TurnClientInit,
  ) {
    super();
    this.#transport = transport(this);
    this.#off = this.#transport.receive((data) => this.#onMessage(data));
  }

  /**
   * Allocates on `init.server` over UDP from `socket`; rejects with a `TurnError` saying why when it
   * cannot. A signed 300 (Try Alternate, a relay shard of our server) is followed once: the
   * allocation is then made there, and `server` says where.
   */
  static async allocate(c: { clock: Clock }, socket: UdpSocket, init: TurnClientInit): Promise<TurnClient> {
    try {
      return await TurnClient.#allocateUdp(c, socket, init);
    } catch (error) {
      const alternate = error instanceof TurnError ? error.alternate : undefined;
      if (!alternate) throw error;
      // One redirection, never back: RFC 8489 §10's loop rule, for a chain of one.
      if (sameEndpoint(alternate, init.server))
        throw new TurnError(300, `the TURN server ${formatEndpoint(init.server)} redirected to itself`);
      try {
        return await TurnClient.#allocateUdp(c, socket, { ...init, server: alternate });
      } catch (second) {
        if (second instanceof TurnError && second.alternate)
          throw new TurnError(
            300,
            `the relay shard ${formatEndpoint(alternate)} redirected again: not followed`,
          );
        throw second;
      }
    }
  }

  static #allocateUdp(c: { clock: Clock }, socket: UdpSocket, init: TurnClientInit): Promise<TurnClient> {
    const client = new TurnClient(c, () => udpTransport(socket, init.server), init);
    client.#socket = socket;
    return TurnClient.#allocate(client);
  }

  /**
   * Allocates on `init.server` over a TCP connection of its own (RFC 8656 §3.1), TLS on it with
   * `init.tls`: for networks that block UDP, or let only TLS out. The relayed address still speaks UDP to peers. The allocation ends with the
   * connection; a connection lost later emits `failed`.
   */
  static async allocateOverTcp(
    c: { clock: Clock; network: Network },
    init: TurnClientInit,
  ): Promise<TurnClient> {
    const timeoutMs = 2 * totalWaitMs(init.rtoMs ?? 250, init.attempts ?? 6);
    let stream: StreamConnection;
    try {
      stream = await c.network.connect(init.server, {
        signal: AbortSignal.timeout(timeoutMs),
        tls: init.tls,
      });
    } catch (error) {
      throw new TurnError(
        null,
        `cannot connect to the TURN server ${formatEndpoint(init.server)} over ${init.tls ? 'TLS' : 'TCP'}: ${(error as Error).message}`,
      );
    }
    return TurnClient.#allocate(
      new TurnClient(
        c,
        (client) =>
          streamTransport(stream, (why) => {
            if (client.#closed) return;
            client.#broken = why;
            for (const wake of client.#pending.values()) wake(undefined);
            client.#stop();
            client.emit('failed', why);
          }),
        init,
      ),
    );
  }

  /** Whether the client talks to its server over TCP. */
  get overTcp(): boolean {
    return this.#transport.reliable;
  }

  static async #allocate(client: TurnClient): Promise<TurnClient> {
    const { init, c } = client;
    try {
      const response = await client.#request(TurnMethod.allocate, [
        { type: TurnAttribute.REQUESTED_TRANSPORT, value: encodeRequestedTransport(PROTOCOL_UDP) },
        {
          type: TurnAttribute.LIFETIME,
          value: encodeU32(init.lifetimeS ?? TURN_LIFETIMES.allocationDefaultS),
        },
        ...(init.rawRelay && client.#socket ? [{ type: SC2C_RAW_RELAY, value: encodeU32(0) }] : []),
      ]);
      const raw = findAttribute(response, SC2C_RAW_RELAY);
      if (raw && client.#socket)
        client.rawRelay =
          decodeU32(raw.value, 'SC2C-RAW-RELAY') === RAW_RELAY_PATH.kernel ? 'kernel' : 'userspace';
      const relayed = findAttribute(response, TurnAttribute.XOR_RELAYED_ADDRESS);
      const mapped = findAttribute(response, AttributeType.XOR_MAPPED_ADDRESS);
      const lifetime = findAttribute(response, TurnAttribute.LIFETIME);
      if (!relayed) throw new TurnError(null, 'Allocate succeeded without XOR-RELAYED-ADDRESS');
      client.relayed = decodeXorAddress(relayed.value);
      if (mapped) client.mapped = decodeXorAddress(mapped.value);
      client.lifetimeS = lifetime ? decodeU32(lifetime.value, 'LIFETIME') : TURN_LIFETIMES.allocationDefaultS;
    } catch (error) {
      client.#stop();
      throw error;
    }
    // Refresh at 80 % of the lifetime; permissions (300 s) and channels (600 s) every 4 minutes.
    client.#refreshTimer = every(
      c.clock,
      Math.max(5, client.lifetimeS * 0.8) * 1000,
      () => void client.#keepAlive(),
    );
    client.#permissionTimer = every(c.clock, 240_000, () => void client.#renewPermissions());
    return client;
  }

  get server(): Endpoint {
    return this.init.server;
  }

  /** Lets `peers` (IP addresses) send to the relayed address. */
  async createPermission(peers: readonly string[]): Promise<void> {
    await this.#request(
      TurnMethod.createPermission,
      peers.map((address) => ({
        type: TurnAttribute.XOR_PEER_ADDRESS,
        value: encodeXorAddress({ address, port: 0 }),
      })),
    );
    for (const address of peers) this.#permissions.add(address);
  }

  /** Binds a channel to `peer`, so data to and from it carries 4 bytes of overhead instead of 36. */
  async bindChannel(peer: Endpoint): Promise<number> {
    const key = formatEndpoint(peer);
    const bound = this.#channels.get(key);
    const channel = bound ?? this.#nextChannel++;
    // Known for receiving before the answer: over TCP the server's first ChannelData can arrive in
    // the same read as its answer, and is handled before this method resumes.
    this.#channelPeers.set(channel, peer);
    try {
      await this.#request(TurnMethod.channelBind, [
        { type: TurnAttribute.CHANNEL_NUMBER, value: encodeChannelNumber(channel) },
        { type: TurnAttribute.XOR_PEER_ADDRESS, value: encodeXorAddress(peer) },
      ]);
    } catch (error) {
      if (bound === undefined) this.#channelPeers.delete(channel);
      throw error;
    }
    this.#channels.set(key, channel);
    this.#permissions.add(peer.address);
    return channel;
  }

  /** Sends `data` to `peer` through the relay: ChannelData when a channel is bound, else a Send indication. */
  send(data: Uint8Array, peer: Endpoint): void {
    if (this.#closed) return;
    const channel = this.#channels.get(formatEndpoint(peer));
    const out =
      channel !== undefined
        ? encodeChannelData(channel, data, this.#transport.reliable)
        : addFingerprint(
            encodeStun({
              method: TurnMethod.send,
              cls: StunClass.indication,
              transactionId: new Uint8Array(randomBytes(12)),
              attributes: [
                { type: TurnAttribute.XOR_PEER_ADDRESS, value: encodeXorAddress(peer) },
                { type: TurnAttribute.DATA, value: data },
              ],
            }),
          );
    this.counters.packetsSent++;
    this.counters.bytesSent += data.byteLength;
    this.#transport.send(out);
  }

  /** Refreshes the allocation now; rejects when the server refuses or does not answer. */
  async refresh(attempts = 2): Promise<void> {
    await this.#request(
      TurnMethod.refresh,
      [
        {
          type: TurnAttribute.LIFETIME,
          value: encodeU32(this.init.lifetimeS ?? TURN_LIFETIMES.allocationDefaultS),
        },
      ],
      attempts,
    );
  }

  /**
   * Releases the allocation (Refresh with lifetime 0), best effort. Idempotent; a UDP socket stays
   * open, a TCP connection is closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#request(TurnMethod.refresh, [{ type: TurnAttribute.LIFETIME, value: encodeU32(0) }], 2);
    } catch {
      // The server forgets the allocation at its lifetime's end anyway.
    }
    this.#stop();
  }

  /**
   * Latches a granted raw relay: a Binding request signed with the allocation's key, from our
   * socket to the relayed address, fixes our address (as the relay sees it) as where peers' data
   * goes. Resolves once the relay answered; from then on the latch is sent again every 15 s so
   * that our NAT keeps the mapping open, and raw data from the relayed address comes out as 'data'.
   */
  async latch(): Promise<void> {
    const socket = this.#socket;
    if (!this.rawRelay || !socket || !this.#key) throw new TurnError(null, 'no raw relay was granted');
    const relayed = this.relayed;
    this.#offRaw ??= socket.on('message', (data, from) => {
      if (sameEndpoint(from, relayed)) this.#onRaw(data);
    });
    const answer = await this.#transactionTo(
      (frame) => socket.send(frame, relayed),
      StunMethod.binding,
      [
        { type: SC2C_RAW_RELAY, value: encodeU32(0) },
        { type: AttributeType.USERNAME, value: encodeText(this.init.username) },
      ],
      this.init.attempts ?? 6,
      false,
    );
    if (answer.cls !== StunClass.success) throw new TurnError(403, 'the relay refused the latch');
    this.#latchTimer ??= every(this.c.clock, LATCH_KEEPALIVE_MS, () => {
      // Not waited for: once the kernel forwards, the relay's answer may not come back to us.
      void this.#transactionTo(
        (frame) => socket.send(frame, relayed),
        StunMethod.binding,
        [
          { type: SC2C_RAW_RELAY, value: encodeU32(0) },
          { type: AttributeType.USERNAME, value: encodeText(this.init.username) },
        ],
        1,
        false,
      ).catch(() => {});
    });
  }

  /** A datagram from our relayed address: the relay's answer to a latch, else a peer's data. */
  #onRaw(data: Uint8Array): void {
    if (isStun(data)) {
      try {
        const message = decodeStun(data);
        // Our latch's answer; any other STUN (the peer's consent checks and answers) is the peer's data.
        const pending = this.#pending.get(Buffer.from(message.transactionId).toString('hex'));
        if (pending && message.method === StunMethod.binding) {
          pending(message);
          return;
        }
      } catch {
        // Not STUN after all: a peer's data.
      }
    }
    this.#deliver(data, this.relayed);
  }

  #stop(): void {
    this.#closed = true;
    this.#latchTimer?.clear();
    this.#offRaw?.();
    this.#refreshTimer?.clear();
    this.#permissionTimer?.clear();
    this.#off();
    this.#transport.end();
  }

  async #keepAlive(): Promise<void> {
    try {
      await this.#request(TurnMethod.refresh, [
        {
          type: TurnAttribute.LIFETIME,
          value: encodeU32(this.init.lifetimeS ?? TURN_LIFETIMES.allocationDefaultS),
        },
      ]);
    } catch (error) {
      if (this.#closed) return;
      this.#stop();
      this.emit('failed', `the relay allocation was lost: ${(error as Error).message}`);
    }
  }

  async #renewPermissions(): Promise<void> {
    try {
      // A channel binding refreshes its peer's permission too (RFC 8656 §12).
      const bound = [...this.#channelPeers.values()];
      const loose = [...this.#permissions].filter((ip) => !bound.some((peer) => peer.address === ip));
      if (loose.length > 0) await this.createPermission(loose);
      for (const peer of bound) await this.bindChannel(peer);
    } catch {
      // The next refresh reports a dead allocation; a failed renewal alone is retried in 4 minutes.
    }
  }

  /**
   * One authenticated transaction: retransmits with a doubling RTO, answers a 401 with the realm
   * and nonce it carries, and a 438 with the fresh nonce, once each.
   */
  async #request(
    method: number,
    attributes: StunAttribute[],
    attempts = this.init.attempts ?? 6,
  ): Promise<StunMessage> {
    for (let round = 0; round < 3; round++) {
      const response = await this.#transaction(method, attributes, attempts);
      if (response.cls === StunClass.success) return response;
      const errorAttribute = findAttribute(response, AttributeType.ERROR_CODE);
      const error = errorAttribute
        ? decodeErrorCode(errorAttribute.value)
        : { code: 0, reason: 'no ERROR-CODE' };
      const realm = findAttribute(response, TurnAttribute.REALM);
      const nonce = findAttribute(response, TurnAttribute.NONCE);
      if (error.code === 300) throw this.#tryAlternate(response, error.reason);
      const retryable = (error.code === 401 && !this.#key) || error.code === 438;
      if (retryable && nonce) {
        if (realm) this.#realm = new TextDecoder().decode(realm.value);
        this.#nonce = new TextDecoder().decode(nonce.value);
        this.#key = longTermKey(this.init.username, this.#realm, this.init.password);
        continue;
      }
      throw new TurnError(error.code, `TURN ${error.code} ${error.reason}`);
    }
    throw new TurnError(null, 'the TURN server kept refusing the credentials');
  }

  #transaction(method: number, attributes: StunAttribute[], attempts: number): Promise<StunMessage> {
    return this.#transactionTo((frame) => this.#transport.send(frame), method, attributes, attempts, true);
  }

  /** One request through `send`; `credentials`: with USERNAME, REALM and NONCE (else the caller's attributes). */
  async #transactionTo(
    send: (frame: Uint8Array) => void,
    method: number,
    attributes: StunAttribute[],
    attempts: number,
    credentials: boolean,
  ): Promise<StunMessage> {
    const transactionId = new Uint8Array(randomBytes(12));
    const id = Buffer.from(transactionId).toString('hex');
    const signed =
      this.#key && credentials
        ? [
            ...attributes,
            { type: AttributeType.USERNAME, value: encodeText(this.init.username) },
            { type: TurnAttribute.REALM, value: encodeText(this.#realm) },
            { type: TurnAttribute.NONCE, value: encodeText(this.#nonce) },
          ]
        : attributes;
    let encoded = encodeStun({ method, cls: StunClass.request, transactionId, attributes: signed });
    if (this.#key) encoded = addMessageIntegrity(encoded, this.#key);
    const request = addFingerprint(encoded);
    if (this.#broken) throw new TurnError(null, this.#broken);
    const wake = new AbortController();
    let response: StunMessage | undefined;
    this.#pending.set(id, (message) => {
      response = message;
      wake.abort();
    });
    try {
      let rtoMs = this.init.rtoMs ?? 250;
      // Over TCP the request is sent once, and waited for as long as all the retransmissions would.
      if (this.#transport.reliable) {
        rtoMs = totalWaitMs(rtoMs, attempts);
        attempts = 1;
      }
      for (let i = 0; i < attempts && !response && !this.#broken; i++) {
        send(request);
        try {
          await sleep(this.c.clock, rtoMs, wake.signal);
        } catch {
          // Woken by the response.
        }
        rtoMs *= 2;
      }
    } finally {
      this.#pending.delete(id);
    }
    if (!response)
      throw new TurnError(
        null,
        this.#broken ?? `no answer from the TURN server ${formatEndpoint(this.init.server)}`,
      );
    return response;
  }

  /**
   * A 300 (Try Alternate): followed only when signed with our key (RFC 8489 §10), or anyone on the
   * path could send our allocation, and the media after it, elsewhere.
   */
  #tryAlternate(response: StunMessage, reason: string): TurnError {
    const raw = this.#raw.get(response);
    const attribute = findAttribute(response, AttributeType.ALTERNATE_SERVER);
    let signed = false;
    try {
      signed = raw !== undefined && this.#key !== undefined && verifyMessageIntegrity(raw, this.#key);
    } catch {
      // No MESSAGE-INTEGRITY: unsigned.
    }
    if (!signed || !attribute)
      return new TurnError(
        300,
        `TURN 300 ${reason}: ${signed ? 'no ALTERNATE-SERVER' : 'not signed'}; not followed`,
      );
    try {
      const alternate = decodeAddress(attribute.value);
      return new TurnError(300, `TURN 300 ${reason}`, alternate);
    } catch (error) {
      return new TurnError(300, `TURN 300 with an unreadable ALTERNATE-SERVER: ${(error as Error).message}`);
    }
  }

  #onMessage(data: Uint8Array): void {
    if (isChannelData(data)) {
      try {
        const frame = decodeChannelData(data);
        const peer = this.#channelPeers.get(frame.channel);
        if (peer) this.#deliver(frame.data, peer);
      } catch {
        // Malformed ChannelData: dropped.
      }
      return;
    }
    if (!isStun(data)) return;
    let message: StunMessage;
    try {
      message = decodeStun(data);
    } catch {
      return;
    }
    if (message.cls === StunClass.indication && message.method === TurnMethod.data) {
      const peer = findAttribute(message, TurnAttribute.XOR_PEER_ADDRESS);
      const payload = findAttribute(message, TurnAttribute.DATA);
      if (!peer || !payload) return;
      try {
        this.#deliver(payload.value, decodeXorAddress(peer.value));
      } catch {
        // A peer address we cannot read: dropped.
      }
      return;
    }
    if (message.cls === StunClass.success || message.cls === StunClass.error) {
      const pending = this.#pending.get(Buffer.from(message.transactionId).toString('hex'));
      if (!pending) return;
      if (message.cls === StunClass.error) this.#raw.set(message, data);
      pending(message);
    }
  }

  #deliver(data: Uint8Array, peer: Endpoint): void {
    this.counters.packetsReceived++;
    this.counters.bytesReceived += data.byteLength;
    this.emit('data', data, peer);
  }
}

/** How long a transaction waits in all: `attempts` sends, the timeout doubling after each. */
function totalWaitMs(rtoMs: number, attempts: number): number {
  return rtoMs * (2 ** attempts - 1);
}
