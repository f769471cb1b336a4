/** A host on the virtual network. It implements `Network`, so protocol code runs on it unchanged. */
import { TypedEmitter } from '../../util/typed-emitter.ts';
import { type Endpoint, formatEndpoint, isValidPort } from '../address.ts';
import { sleep } from '../clock.ts';
import { gather } from '../layered-socket.ts';
import {
  AddressInUseError,
  type BindInit,
  type ConnectInit,
  ConnectionRefusedError,
  type FastPathHandler,
  type ListenInit,
  type Network,
  type StreamConnection,
  type StreamServer,
  type UdpSocket,
  type UdpSocketEvents,
} from '../types.ts';
import type { Fabric } from './fabric.ts';
import type { Link, LinkEnd } from './link.ts';
import {
  DEFAULT_TTL,
  type IcmpPacket,
  icmpError,
  type Packet,
  type SegmentFlag,
  type StreamSegment,
} from './packet.ts';
import { type SegmentSender, VirtualStreamConnection, VirtualStreamServer } from './stream.ts';

const ANY = '0.0.0.0';
/** Linux's default ephemeral range (net.ipv4.ip_local_port_range). */
const EPHEMERAL_MIN = 32768;
const EPHEMERAL_MAX = 60999;
/** How long `connect` waits for a SYN-ACK before giving up; Linux gives up after about 2 min, tests need less. */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Linux's first SYN retransmission timeout (TCP_TIMEOUT_INIT, RFC 6298 §2.1), doubled after each. */
const SYN_RTO_MS = 1000;

class VirtualUdpSocket extends TypedEmitter<UdpSocketEvents> implements UdpSocket {
  #ttl = DEFAULT_TTL;
  #closed = false;
  constructor(
    readonly local: Endpoint,
    private readonly host: VirtualHost,
  ) {
    super();
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.#closed) return;
    if (!isValidPort(to.port) || to.port === 0) throw new RangeError(`bad destination port ${to.port}`);
    this.host.sendUdp(this, data, to, this.#ttl);
  }

  /** The data plane's handler, called by the host before 'message' listeners. */
  fastPath?: FastPathHandler;

  setFastPath(handler: FastPathHandler | undefined): void {
    this.fastPath = handler;
  }

  forward(
    data: Uint8Array,
    offset: number,
    length: number,
    address: string,
    port: number,
    head?: Uint8Array,
  ): void {
    this.send(gather(data, offset, length, head), { address, port });
  }

  setTTL(ttl: number): void {
    checkTtl(ttl);
    this.#ttl = ttl;
  }

  async sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): Promise<void> {
    checkTtl(ttl);
    if (this.#closed) return;
    if (!isValidPort(to.port) || to.port === 0) throw new RangeError(`bad destination port ${to.port}`);
    this.host.sendUdp(this, data, to, ttl);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.host.unbindUdp(this);
    this.emit('close');
  }
}

function checkTtl(ttl: number): void {
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255) throw new RangeError(`TTL must be 1..255, got ${ttl}`);
}

export interface VirtualHostInit {
  readonly addresses: readonly string[];
  readonly connectTimeoutMs?: number;
}

export class VirtualHost implements Network, LinkEnd, SegmentSender {
  readonly addresses: readonly string[];
  #uplink?: Pick<Link, 'send'>;
  readonly #udp = new Map<string, VirtualUdpSocket>();
  readonly #tcpPorts = new Set<number>();
  readonly #listeners = new Map<string, VirtualStreamServer>();
  readonly #connections = new Map<string, VirtualStreamConnection>();
  readonly #pendingConnects = new Map<string, (segment: StreamSegment) => void>();
  readonly #connectTimeoutMs: number;

  constructor(
    readonly name: string,
    init: VirtualHostInit,
    private readonly fabric: Fabric,
  ) {
    if (init.addresses.length === 0) throw new RangeError(`host ${name} needs at least one address`);
    this.addresses = [...init.addresses];
    this.#connectTimeoutMs = init.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  get primaryAddress(): string {
    return this.addresses[0]!;
  }

  /** The host's link; a router's embedded service stack gives just a sender (nat/upnp-igd.ts). */
  attach(link: Pick<Link, 'send'>): void {
    this.#uplink = link;
  }

  /** Number of bound UDP sockets, listeners and open streams (for leak checks after close()). */
  openHandles(): number {
    return this.#udp.size + this.#listeners.size + this.#connections.size + this.#pendingConnects.size;
  }

  // ---- Network ------------------------------------------------------------------------------

  async bindUdp(init: BindInit = {}): Promise<UdpSocket> {
    const address = init.address ?? ANY;
    if (address !== ANY && !this.addresses.includes(address)) {
      throw new Error(`cannot bind ${address}: not an address of host ${this.name}`);
    }
    const port = init.port ?? this.#ephemeralPort((p) => this.#udpPortFree(address, p));
    if (!this.#udpPortFree(address, port)) throw new AddressInUseError({ address, port });
    const socket = new VirtualUdpSocket({ address, port }, this);
    this.#udp.set(`${address}:${port}`, socket);
    return socket;
  }

  async connect(to: Endpoint, init: ConnectInit = {}): Promise<StreamConnection> {
    const localPort = init.localPort ?? this.#ephemeralPort((p) => !this.#tcpPorts.has(p));
    if (init.ttl !== undefined) checkTtl(init.ttl);
    const ttl = init.ttl ?? DEFAULT_TTL;
    const local = { address: this.primaryAddress, port: localPort };
    const key = connectionKey(local, to);
    if (this.#pendingConnects.has(key) || this.#connections.has(key))
      throw new AddressInUseError({ address: ANY, port: localPort });
    // SO_REUSEADDR: connects from one port to different peers may coexist (no listener on it).
    const shared = init.localPort !== undefined && !this.#listeners.has(String(localPort));
    if (!shared && this.#tcpPorts.has(localPort))
      throw new AddressInUseError({ address: ANY, port: localPort });
    this.#tcpPorts.add(localPort);
    const abort = new AbortController();
    const onAbort = (): void => abort.abort(init.signal?.reason);
    init.signal?.addEventListener('abort', onAbort, { once: true });
    const timeoutMs = init.timeoutMs ?? this.#connectTimeoutMs;
    try {
      const answer = new Promise<StreamSegment>((resolve) => this.#pendingConnects.set(key, resolve));
      // The SYN is retransmitted as Linux does: 1 s, then doubling, until the connect gives up.
      const retransmit = async (): Promise<never> => {
        for (let rto = SYN_RTO_MS; ; rto *= 2) {
          this.sendSegment(local, to, 'syn', 0, undefined, ttl);
          await sleep(this.fabric.clock, rto, abort.signal);
        }
      };
      const syns = retransmit();
      syns.catch(() => {});
      const timeout = sleep(this.fabric.clock, timeoutMs, abort.signal).then(() => {
        throw new Error(`connect to ${formatEndpoint(to)} timed out after ${timeoutMs} ms`);
      });
      const segment = await Promise.race([answer, timeout, syns]);
      if (segment.flag === 'rst') throw new ConnectionRefusedError(to);
      const connection = new VirtualStreamConnection(local, to, this);
      this.#connections.set(key, connection);
      return connection;
    } catch (error) {
      if (!this.#portInUse(localPort)) this.#tcpPorts.delete(localPort);
      throw error;
    } finally {
      abort.abort();
      init.signal?.removeEventListener('abort', onAbort);
      this.#pendingConnects.delete(key);
    }
  }

  async listen(init: ListenInit): Promise<StreamServer> {
    const address = init.address ?? ANY;
    // Port 0: an ephemeral port, as the kernel picks one.
    const port = init.port === 0 ? this.#ephemeralPort((p) => !this.#tcpPorts.has(p)) : init.port;
    if (this.#tcpPorts.has(port)) throw new AddressInUseError({ address, port });
    const server = new VirtualStreamServer({ address, port }, (s) => {
      this.#listeners.delete(String(s.local.port));
      this.#tcpPorts.delete(s.local.port);
    });
    this.#tcpPorts.add(port);
    this.#listeners.set(String(port), server);
    return server;
  }

  // ---- used by sockets and streams ----------------------------------------------------------

  sendUdp(socket: VirtualUdpSocket, data: Uint8Array, to: Endpoint, ttl: number): void {
    const src = {
      address: socket.local.address === ANY ? this.primaryAddress : socket.local.address,
      port: socket.local.port,
    };
    this.#transmit({ kind: 'udp', id: this.fabric.nextPacketId(), src, dst: to, ttl, payload: data.slice() });
  }

  unbindUdp(socket: VirtualUdpSocket): void {
    const key = `${socket.local.address}:${socket.local.port}`;
    if (this.#udp.get(key) === socket) this.#udp.delete(key);
  }

  sendSegment(
    src: Endpoint,
    dst: Endpoint,
    flag: SegmentFlag,
    seq: number,
    payload?: Uint8Array,
    ttl = DEFAULT_TTL,
  ): void {
    this.#transmit({
      kind: 'tcp',
      id: this.fabric.nextPacketId(),
      src,
      dst,
      ttl,
      flag,
      seq,
      payload,
    });
  }

  forgetConnection(connection: VirtualStreamConnection): void {
    const key = connectionKey(connection.local, connection.remote);
    if (this.#connections.get(key) === connection) this.#connections.delete(key);
    if (!this.#portInUse(connection.local.port)) this.#tcpPorts.delete(connection.local.port);
  }

  /** A listener, a connection or a connect in progress holds this local TCP port. */
  #portInUse(port: number): boolean {
    if (this.#listeners.has(String(port))) return true;
    const prefix = `${port}|`;
    for (const key of this.#connections.keys()) if (key.startsWith(prefix)) return true;
    for (const key of this.#pendingConnects.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  // ---- LinkEnd ------------------------------------------------------------------------------

  receive(packet: Packet): void {
    const dstAddress = packet.kind === 'icmp' ? packet.dstAddress : packet.dst.address;
    if (!this.addresses.includes(dstAddress)) {
      this.fabric.trace(this.name, 'drop', packet, 'not addressed to this host');
      return;
    }
    this.fabric.trace(this.name, 'deliver', packet);
    switch (packet.kind) {
      case 'udp': {
        const socket =
          this.#udp.get(formatEndpoint(packet.dst)) ?? this.#udp.get(`${ANY}:${packet.dst.port}`);
        if (socket) {
          if (!socket.fastPath?.(packet.payload, packet.src.address, packet.src.port))
            socket.emit('message', packet.payload, packet.src);
        } else this.#sendIcmp('port-unreachable', packet.dst.address, packet.src.address, packet);
        return;
      }
      case 'tcp':
        this.#receiveSegment(packet);
        return;
      case 'icmp': {
        if (packet.quoted.proto !== 'udp') return;
        const q = packet.quoted.src;
        const socket = this.#udp.get(formatEndpoint(q)) ?? this.#udp.get(`${ANY}:${q.port}`);
        socket?.emit('icmp', { type: packet.type, original: packet.quoted.dst, reporter: packet.srcAddress });
        return;
      }
    }
  }

  #receiveSegment(segment: StreamSegment): void {
    const key = connectionKey(segment.dst, segment.src);
    const pending = this.#pendingConnects.get(key);
    if (pending && (segment.flag === 'syn-ack' || segment.flag === 'rst')) {
      pending(segment);
      return;
    }
    if (pending && segment.flag === 'syn') {
      // Simultaneous open (RFC 9293 §3.5, Figure 7): our SYN and the peer's crossed. SYN-SENT
      // answers with SYN-ACK and, once the peer's SYN-ACK comes, is established; the peer does
      // the same with ours, so both sides count as established here.
      this.sendSegment(segment.dst, segment.src, 'syn-ack', 0);
      pending(segment);
      return;
    }
    const connection = this.#connections.get(key);
    if (connection) {
      connection.receive(segment);
      return;
    }
    if (segment.flag === 'syn') {
      const server = this.#listeners.get(String(segment.dst.port));
      if (!server) {
        this.sendSegment(segment.dst, segment.src, 'rst', 0);
        return;
      }
      const accepted = new VirtualStreamConnection(segment.dst, segment.src, this);
      this.#connections.set(key, accepted);
      this.sendSegment(segment.dst, segment.src, 'syn-ack', 0);
      server.emit('connection', accepted);
      return;
    }
    if (segment.flag !== 'rst') this.sendSegment(segment.dst, segment.src, 'rst', 0);
  }

  #sendIcmp(type: IcmpPacket['type'], from: string, to: string, cause: Packet): void {
    if (cause.kind === 'icmp') return;
    this.#transmit(icmpError(this.fabric.nextPacketId(), type, from, to, cause));
  }

  #transmit(packet: Packet): void {
    this.fabric.trace(this.name, 'send', packet);
    if (!this.#uplink) {
      this.fabric.trace(this.name, 'drop', packet, 'host has no link');
      return;
    }
    this.#uplink.send(packet, this);
  }

  #udpPortFree(address: string, port: number): boolean {
    if (address === ANY) {
      for (const socket of this.#udp.values()) if (socket.local.port === port) return false;
      return true;
    }
    return !this.#udp.has(`${address}:${port}`) && !this.#udp.has(`${ANY}:${port}`);
  }

  /** Linux picks ephemeral ports at random; so do we, from the seeded RNG. */
  #ephemeralPort(free: (port: number) => boolean): number {
    for (let i = 0; i < 1000; i++) {
      const port = this.fabric.rng.int(EPHEMERAL_MIN, EPHEMERAL_MAX);
      if (free(port)) return port;
    }
    for (let port = EPHEMERAL_MIN; port <= EPHEMERAL_MAX; port++) if (free(port)) return port;
    throw new Error(`host ${this.name}: no free ephemeral port`);
  }
}

function connectionKey(local: Endpoint, remote: Endpoint): string {
  return `${local.port}|${formatEndpoint(remote)}`;
}
