/**
 * The embedded TURN server (RFC 8656, over UDP and TCP): Allocate, Refresh, CreatePermission, ChannelBind,
 * Send/Data indications and ChannelData, with long-term or short-lived credentials, stateless
 * nonces, per-user allocation quotas, a rate limit on unauthenticated requests and denied peer
 * ranges. It also answers STUN Binding, as every TURN server does. Malformed or oversized input is
 * dropped and counted, never thrown.
 */
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import { type Clock, every, type Timer } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { DecodeError } from '../protocol/decode-error.ts';
import {
  decodeXorAddress,
  encodeAddress,
  encodeErrorCode,
  encodeText,
  encodeUnknownAttributes,
  encodeXorAddress,
} from '../protocol/stun/attributes.ts';
import { addFingerprint, addMessageIntegrity } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  equalBytes,
  findAttribute,
  isStun,
  type StunAttribute,
  StunClass,
  type StunMessage,
  StunMethod,
} from '../protocol/stun/message.ts';
import {
  CHANNEL_MAX_ACCEPTED,
  CHANNEL_MIN,
  decodeChannelNumber,
  decodeRequestedTransport,
  decodeU32,
  encodeU32,
  isChannelData,
  KNOWN_REQUIRED_ATTRIBUTES,
  PROTOCOL_UDP,
  SC2C_RAW_RELAY,
  TURN_LIFETIMES,
  TurnAttribute,
  TurnMethod,
} from '../protocol/stun/turn.ts';
import { Allocation } from './allocation.ts';
import { ChannelRoutes } from './channel-routes.ts';
import { PeerPolicy, quotaUser } from './credentials.ts';
import { RawRelayControl } from './raw-relay.ts';
import { Refusal, TURN_ERRORS, TurnAuthenticator } from './turn-auth.ts';
import { TurnDataPath } from './turn-data-path.ts';
import { TurnStreams } from './turn-streams.ts';
import {
  clientKey,
  emptyTurnCounters,
  type TurnClientAddress,
  type TurnCounters,
  type TurnServerInit,
} from './turn-types.ts';

/** SO_RCVBUF of relay sockets: 4 MiB holds about 3500 full-size media packets of a burst. */
export const RELAY_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export type { TurnCounters, TurnServerInit } from './turn-types.ts';

export class TurnServer {
  readonly counters: TurnCounters = emptyTurnCounters();
  readonly #allocations = new Map<string, Allocation>();
  /** UDP clients' allocations by address then port: the forwarding path looks up without a key string. */
  readonly #udpClients = new Map<string, Map<number, Allocation>>();
  #nextId = 1;
  /** 5-tuples whose first Allocate is being served (binding its relay socket), by transaction id. */
  readonly #allocating = new Map<string, { readonly transactionId: Uint8Array; readonly address: string }>();
  readonly #auth: TurnAuthenticator;
  readonly #peers: PeerPolicy;
  /** Latches and the kernel path (issue 23). */
  readonly #raw: RawRelayControl;
  /** Bound channels handed to the native data plane, when there is one (issue 23). */
  readonly #routes: ChannelRoutes;
  readonly #data: TurnDataPath;
  readonly #sweep: Timer;
  readonly #streams: TurnStreams;
  #closed = false;

  private constructor(
    private readonly c: { readonly network: Network; readonly clock: Clock },
    private readonly init: TurnServerInit,
    private readonly socket: UdpSocket,
    private readonly ownsSocket: boolean,
  ) {
    this.#auth = new TurnAuthenticator({
      ...init,
      nonceLifetimeMs: init.nonceLifetimeMs ?? 10 * 60_000,
      unauthenticatedPerSecond: init.unauthenticatedPerSecond ?? 20,
    });
    this.#peers = new PeerPolicy(init.deniedPeers, init.allowedPeers);
    this.#raw = new RawRelayControl(c, this.counters, init.offload);
    this.#routes = new ChannelRoutes(c, this.counters, socket, init.channelPlane);
    this.#data = new TurnDataPath(
      {
        clock: c.clock,
        counters: this.counters,
        socket,
        raw: this.#raw,
        allocationOf: (client) => this.#allocations.get(clientKey(client)),
        udpAllocation: (address, port) => this.#udpClients.get(address)?.get(port),
        closed: () => this.#closed,
      },
      init,
    );
    this.#streams = new TurnStreams(
      {
        ...c,
        counters: this.counters,
        onFrame: (frame, from) => this.#onClient(frame, from),
        allocated: (client) => this.#allocations.has(clientKey(client)),
        closed: (client) => {
          const allocation = this.#allocations.get(clientKey(client));
          if (allocation) this.#delete(allocation);
        },
      },
      init,
    );
    if (ownsSocket) socket.on('message', (data, from) => this.#onClient(data, from));
    // ChannelData from UDP clients never reaches an emitter (issue 23): the data path forwards it.
    socket.setFastPath((data, address, port) => this.#data.fromClientFast(data, address, port));
    this.#sweep = every(c.clock, 1000, () => this.#expire());
  }

  /** A TURN server on its own socket at `init.listen`. */
  static async start(c: { network: Network; clock: Clock }, init: TurnServerInit): Promise<TurnServer> {
    const socket = await c.network.bindUdp({
      address: init.listen.address,
      port: init.listen.port,
      receiveBufferBytes: RELAY_SOCKET_BUFFER_BYTES,
    });
    return new TurnServer(c, init, socket, true);
  }

  /**
   * A TURN server on a socket it shares (the STUN responder's primary port): the owner passes each
   * datagram to `handle`, and keeps Binding requests for itself.
   */
  static attach(c: { network: Network; clock: Clock }, init: TurnServerInit, socket: UdpSocket): TurnServer {
    return new TurnServer(c, init, socket, false);
  }

  /** True when `data` is TURN (taken and handled); false leaves it to the socket's owner. */
  handle(data: Uint8Array, from: Endpoint): boolean {
    if (isStun(data) && data[0] === 0x00 && data[1] === 0x01) return false; // Binding request
    this.#onClient(data, from);
    return true;
  }

  get local(): Endpoint {
    return this.socket.local;
  }

  /**
   * Also takes clients over TCP (RFC 8656 §3.1) at `at` (default: the UDP listen address), or over
   * TLS with `tls` (conventionally port 5349): each connection is one client 5-tuple, its allocation
   * ends with it, and relayed data goes back on it. Resolves with the listening endpoint.
   */
  async listenTcp(
    at: Endpoint = this.init.listen,
    tls?: { readonly cert: string; readonly key: string },
  ): Promise<Endpoint> {
    return this.#streams.listen(at, tls);
  }

  /** Serving: not closed (UDP rides the shared socket; TCP/TLS listeners as configured). */
  get listening(): boolean {
    return !this.#closed;
  }

  /** TCP and TLS connections open now. */
  get tcpClients(): number {
    return this.#streams.size;
  }

  /** Live allocations, for the admin API and metrics. */
  allocations(): {
    client: string;
    user: string;
    relayed: string;
    expiresInS: number;
    channels: number;
    /** Relayed bytes both ways (issue 22's admin page). */
    bytes: number;
  }[] {
    const now = this.c.clock.now();
    return [...this.#allocations.values()].map((a) => ({
      client: formatEndpoint(a.client),
      user: a.username,
      relayed: formatEndpoint(a.relayed),
      expiresInS: Math.round((a.expiresAtMs - now) / 1000),
      channels: a.channels,
      bytes: a.counters.bytesToPeers + a.counters.bytesToClient,
    }));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sweep.clear();
    this.socket.setFastPath(undefined);
    for (const allocation of this.#allocations.values()) allocation.relay.close();
    this.#allocations.clear();
    this.#udpClients.clear();
    void this.init.offload?.close().catch(() => {});
    this.#streams.close();
    if (this.ownsSocket) this.socket.close();
  }

  #onClient(data: Uint8Array, from: TurnClientAddress): void {
    if (this.#closed) return;
    if (data.byteLength > (this.init.maxDatagramBytes ?? 2048)) {
      this.counters.oversized++;
      return;
    }
    if (isChannelData(data)) {
      this.#data.onChannelData(data, from);
      return;
    }
    if (!isStun(data)) {
      this.counters.malformed++;
      return;
    }
    let message: StunMessage;
    try {
      message = decodeStun(data);
    } catch {
      this.counters.malformed++;
      return;
    }
    if (message.cls === StunClass.indication) {
      if (message.method === TurnMethod.send) this.#data.onSend(message, from);
      return;
    }
    if (message.cls !== StunClass.request) return;
    this.counters.requests++;
    if (message.method === StunMethod.binding) {
      this.#reply(from, message, StunClass.success, [
        { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from) },
      ]);
      return;
    }
    this.#onRequest(data, message, from).catch((error: unknown) => {
      // Every path answers; this is a bug or a closed socket, and the server carries on.
      this.counters.malformed++;
      void error;
    });
  }

  async #onRequest(raw: Uint8Array, message: StunMessage, from: TurnClientAddress): Promise<void> {
    const key = clientKey(from);
    let signingKey: Uint8Array | undefined;
    try {
      const unknown = message.attributes
        .filter((a) => a.type < 0x8000 && !KNOWN_REQUIRED_ATTRIBUTES.has(a.type))
        .map((a) => a.type);
      if (unknown.length > 0) {
        this.#replyError(from, message, 420, 'unknown comprehension-required attribute', undefined, [
          { type: AttributeType.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributes(unknown) },
        ]);
        return;
      }
      const auth = this.#auth.check(raw, message, from, this.c.clock.now(), this.c.clock.epochMs());
      if (!auth.ok) {
        if ('rateLimited' in auth) {
          this.counters.rateLimited++;
          return;
        }
        this.#count(auth.code);
        this.#replyError(from, message, auth.code, auth.why, undefined, [
          { type: TurnAttribute.REALM, value: encodeText(this.init.realm) },
          { type: TurnAttribute.NONCE, value: encodeText(auth.nonce) },
        ]);
        return;
      }
      signingKey = auth.key;
      const existing = this.#allocations.get(key);
      switch (message.method) {
        case TurnMethod.allocate:
          await this.#allocate(message, from, auth, existing);
          return;
        case TurnMethod.refresh:
          this.#refresh(message, from, auth.key, this.#own(existing, auth.username));
          return;
        case TurnMethod.createPermission:
          this.#createPermission(message, from, auth.key, this.#own(existing, auth.username));
          return;
        case TurnMethod.channelBind:
          this.#channelBind(message, from, auth.key, this.#own(existing, auth.username));
          return;
        default:
          throw new Refusal(400, `method 0x${message.method.toString(16)} is not a TURN request`);
      }
    } catch (error) {
      if (error instanceof Refusal) {
        this.#count(error.code);
        this.#replyError(from, message, error.code, error.why, signingKey);
      } else if (error instanceof DecodeError) {
        this.counters.badRequest++;
        this.#replyError(from, message, 400, error.reason, signingKey);
      } else throw error;
    }
  }

  /** The allocation of this 5-tuple, which must exist and belong to `username`. */
  #own(existing: Allocation | undefined, username: string): Allocation {
    if (!existing) throw new Refusal(437, 'no allocation for this 5-tuple');
    if (existing.username !== username) throw new Refusal(441, 'the allocation belongs to another user');
    return existing;
  }

  async #allocate(
    message: StunMessage,
    from: TurnClientAddress,
    auth: { username: string; key: Uint8Array },
    existing: Allocation | undefined,
  ): Promise<void> {
    const now = this.c.clock.now();
    if (existing) {
      if (!equalBytes(existing.transactionId, message.transactionId))
        throw new Refusal(437, 'this 5-tuple already has an allocation');
      this.#allocated(from, message, auth.key, existing); // a retransmission
      return;
    }
    const key = clientKey(from);
    const inFlight = this.#allocating.get(key);
    if (inFlight) {
      // The first Allocate of this 5-tuple is still binding its socket: a retransmission is
      // answered when it completes; another transaction would leak a second socket.
      this.counters.allocateInFlight++;
      if (!equalBytes(inFlight.transactionId, message.transactionId))
        throw new Refusal(437, 'this 5-tuple is already allocating');
      return;
    }
    const transport = findAttribute(message, TurnAttribute.REQUESTED_TRANSPORT);
    if (!transport) throw new Refusal(400, 'REQUESTED-TRANSPORT missing');
    if (decodeRequestedTransport(transport.value) !== PROTOCOL_UDP)
      throw new Refusal(442, 'only UDP relaying is offered');
    const family = findAttribute(message, TurnAttribute.REQUESTED_ADDRESS_FAMILY);
    if (family && family.value[0] !== 0x01) throw new Refusal(440, 'only IPv4 relayed addresses');
    if (findAttribute(message, TurnAttribute.RESERVATION_TOKEN))
      throw new Refusal(508, 'reservations are not offered');
    // The quota is per user: every short-lived username of one user counts against the same one.
    const user = quotaUser(auth.username);
    if (this.init.shards && !from.stream) {
      // Only an authenticated request is redirected, and the 300 is signed (RFC 8489 §10), so no one
      // can send a client elsewhere with a forged answer.
      const shard = this.init.shards.pick(user);
      if ('code' in shard) throw new Refusal(shard.code, shard.why);
      this.counters.redirected++;
      this.#replyError(from, message, 300, `relay shard ${formatEndpoint(shard)}`, auth.key, [
        { type: AttributeType.ALTERNATE_SERVER, value: encodeAddress(shard) },
      ]);
      return;
    }
    const held = [...this.#allocations.values()].filter((a) => quotaUser(a.username) === user).length;
    if (held >= (this.init.userQuota ?? 10))
      throw new Refusal(486, `${user} already holds ${held} allocations`);
    const fromSource =
      [...this.#allocations.values()].filter((a) => a.client.address === from.address).length +
      [...this.#allocating.values()].filter((a) => a.address === from.address).length;
    if (fromSource >= (this.init.perSourceQuota ?? 100))
      throw new Refusal(486, `${from.address} already holds ${fromSource} allocations`);
    if (this.#allocations.size + this.#allocating.size >= (this.init.capacity ?? 1000))
      throw new Refusal(508, 'the server holds as many allocations as it may');
    this.#allocating.set(key, { transactionId: message.transactionId, address: from.address });
    let relay: UdpSocket;
    try {
      relay = await this.#bindRelay(Boolean(findAttribute(message, TurnAttribute.EVEN_PORT)));
    } finally {
      this.#allocating.delete(key);
    }
    if (this.#closed || (from.stream?.closed ?? false)) {
      relay.close();
      return;
    }
    const relayed = { address: this.init.relayAddress ?? this.init.listen.address, port: relay.local.port };
    const allocation = new Allocation(
      from,
      auth.username,
      auth.key,
      relay,
      relayed,
      now + this.#lifetimeS(message) * 1000,
      message.transactionId,
      now,
    );
    allocation.id = this.#nextId++;
    allocation.raw = !from.stream && findAttribute(message, SC2C_RAW_RELAY) !== undefined;
    relay.on('message', (data, peer) => this.#data.fromPeer(allocation, data, peer));
    relay.setFastPath((data, address, port) => this.#data.fromPeerFast(allocation, data, address, port));
    this.#allocations.set(clientKey(from), allocation);
    if (!from.stream) {
      let ports = this.#udpClients.get(from.address);
      if (!ports) {
        ports = new Map();
        this.#udpClients.set(from.address, ports);
      }
      ports.set(from.port, allocation);
    }
    this.counters.allocations++;
    this.#allocated(from, message, auth.key, allocation);
  }

  #allocated(from: TurnClientAddress, message: StunMessage, key: Uint8Array, allocation: Allocation): void {
    const lifetimeS = Math.max(0, Math.round((allocation.expiresAtMs - this.c.clock.now()) / 1000));
    this.#reply(
      from,
      message,
      StunClass.success,
      [
        { type: TurnAttribute.XOR_RELAYED_ADDRESS, value: encodeXorAddress(allocation.relayed) },
        { type: TurnAttribute.LIFETIME, value: encodeU32(lifetimeS) },
        { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from) },
        ...(allocation.raw ? [{ type: SC2C_RAW_RELAY, value: encodeU32(this.#raw.path) }] : []),
      ],
      key,
    );
  }

  async #bindRelay(even: boolean): Promise<UdpSocket> {
    const address = this.init.relayAddress ?? this.init.listen.address;
    for (let i = 0; i < 20; i++) {
      // Relayed sockets take a peer's media in bursts (a keyframe is dozens of packets at once).
      const socket = await this.c.network.bindUdp({ address, receiveBufferBytes: RELAY_SOCKET_BUFFER_BYTES });
      if (!even || socket.local.port % 2 === 0) return socket;
      socket.close();
    }
    throw new Refusal(508, 'no even relay port free');
  }

  /** RFC 8656 §7.2: the requested lifetime, at least the default and at most the maximum. */
  #lifetimeS(message: StunMessage): number {
    const requested = findAttribute(message, TurnAttribute.LIFETIME);
    const wanted = requested ? decodeU32(requested.value, 'LIFETIME') : TURN_LIFETIMES.allocationDefaultS;
    return Math.min(TURN_LIFETIMES.allocationMaxS, Math.max(TURN_LIFETIMES.allocationDefaultS, wanted));
  }

  #refresh(message: StunMessage, from: TurnClientAddress, key: Uint8Array, allocation: Allocation): void {
    const requested = findAttribute(message, TurnAttribute.LIFETIME);
    const zero = requested !== undefined && decodeU32(requested.value, 'LIFETIME') === 0;
    let lifetimeS = 0;
    if (zero) this.#delete(allocation);
    else {
      lifetimeS = this.#lifetimeS(message);
      allocation.expiresAtMs = this.c.clock.now() + lifetimeS * 1000;
    }
    this.#reply(
      from,
      message,
      StunClass.success,
      [{ type: TurnAttribute.LIFETIME, value: encodeU32(lifetimeS) }],
      key,
    );
  }

  #createPermission(
    message: StunMessage,
    from: TurnClientAddress,
    key: Uint8Array,
    allocation: Allocation,
  ): void {
    const peers = message.attributes
      .filter((a) => a.type === TurnAttribute.XOR_PEER_ADDRESS)
      .map((a) => this.#peer(a));
    if (peers.length === 0) throw new Refusal(400, 'XOR-PEER-ADDRESS missing');
    // All or nothing (§9.2): check every peer before installing any.
    for (const peer of peers) this.#checkPeer(peer);
    const now = this.c.clock.now();
    for (const peer of peers) allocation.permit(peer.address, now);
    this.#routes.sync(allocation);
    this.#reply(from, message, StunClass.success, [], key);
  }

  #channelBind(message: StunMessage, from: TurnClientAddress, key: Uint8Array, allocation: Allocation): void {
    const number = findAttribute(message, TurnAttribute.CHANNEL_NUMBER);
    const peerAttribute = findAttribute(message, TurnAttribute.XOR_PEER_ADDRESS);
    if (!number || !peerAttribute) throw new Refusal(400, 'CHANNEL-NUMBER and XOR-PEER-ADDRESS are required');
    const channel = decodeChannelNumber(number.value);
    if (channel < CHANNEL_MIN || channel > CHANNEL_MAX_ACCEPTED)
      throw new Refusal(400, `channel 0x${channel.toString(16)} outside 0x4000-0x7FFF`);
    const peer = this.#peer(peerAttribute);
    this.#checkPeer(peer);
    if (!allocation.bind(channel, peer, this.c.clock.now()))
      throw new Refusal(400, 'the channel or the peer is bound to something else');
    this.#routes.sync(allocation);
    this.#reply(from, message, StunClass.success, [], key);
  }

  #peer(attribute: StunAttribute): Endpoint {
    try {
      return decodeXorAddress(attribute.value);
    } catch (error) {
      if (error instanceof DecodeError && /family/.test(error.reason))
        throw new Refusal(443, 'the relay is IPv4 only');
      throw error;
    }
  }

  #checkPeer(peer: Endpoint): void {
    if (!this.#peers.permits(peer.address))
      throw new Refusal(403, `peer ${peer.address} is in a denied range`);
  }

  #expire(): void {
    const now = this.c.clock.now();
    for (const allocation of this.#allocations.values()) {
      if (allocation.expiresAtMs <= now) this.#delete(allocation);
      else {
        allocation.expire(now);
        this.#raw.lapse(allocation, now);
        this.#routes.sync(allocation);
      }
    }
    this.#auth.prune(now);
    this.#raw.read(this.#allocations.values());
    this.#routes.poll();
  }

  #delete(allocation: Allocation): void {
    this.#routes.forget(allocation);
    allocation.relay.close();
    this.#allocations.delete(clientKey(allocation.client));
    const ports = this.#udpClients.get(allocation.client.address);
    if (ports?.get(allocation.client.port) === allocation) {
      ports.delete(allocation.client.port);
      if (ports.size === 0) this.#udpClients.delete(allocation.client.address);
    }
    this.#raw.forget(allocation);
  }

  #count(code: number): void {
    if (code === 401) this.counters.unauthorized++;
    else if (code === 438) this.counters.staleNonce++;
    else if (code === 403) this.counters.forbidden++;
    else if (code === 486) this.counters.quotaExceeded++;
    else if (code === 437 || code === 441) this.counters.mismatch++;
    else this.counters.badRequest++;
  }

  #reply(
    to: TurnClientAddress,
    request: StunMessage,
    cls: StunClass,
    attributes: StunAttribute[],
    key?: Uint8Array,
  ): void {
    const software = this.init.software ?? 'sc2c-gateway turn';
    let encoded = encodeStun({
      method: request.method,
      cls,
      transactionId: request.transactionId,
      attributes: [...attributes, { type: AttributeType.SOFTWARE, value: encodeText(software) }],
    });
    if (key) encoded = addMessageIntegrity(encoded, key);
    this.#data.send(to, addFingerprint(encoded));
  }

  #replyError(
    to: TurnClientAddress,
    request: StunMessage,
    code: number,
    why: string,
    key?: Uint8Array,
    extra: StunAttribute[] = [],
  ): void {
    const reason = `${TURN_ERRORS[code] ?? 'Error'}: ${why}`;
    this.#reply(
      to,
      request,
      StunClass.error,
      [{ type: AttributeType.ERROR_CODE, value: encodeErrorCode({ code, reason }) }, ...extra],
      key,
    );
  }
}
