/**
 * The network every protocol and traversal module is written against. Two implementations:
 * `NodeNetwork` (real sockets, for composition roots) and `VirtualHost` (the in-memory network).
 */
import type { TypedEmitter } from '../util/typed-emitter.ts';
import type { Endpoint } from './address.ts';

export type { Endpoint } from './address.ts';

/** ICMP error types the network reports to the socket that sent the offending packet. */
export type IcmpErrorType = 'port-unreachable' | 'time-exceeded' | 'host-unreachable';

export interface IcmpErrorEvent {
  readonly type: IcmpErrorType;
  /**
   * The destination of the packet that caused the error, when known. The Node implementation only
   * learns about ICMP on a connected socket (Linux reports ECONNREFUSED there) and knows it from
   * the connection; the virtual network reads it from the ICMP payload.
   */
  readonly original?: Endpoint;
  /** The router or host that generated the error, when known. */
  readonly reporter?: string;
}

export type UdpSocketEvents = {
  message: [data: Uint8Array, from: Endpoint];
  icmp: [error: IcmpErrorEvent];
  close: [];
};

export interface UdpSocket extends TypedEmitter<UdpSocketEvents> {
  /** The bound local endpoint (address 0.0.0.0 when bound to all addresses). */
  readonly local: Endpoint;
  send(data: Uint8Array, to: Endpoint): void;
  /** IP TTL for packets sent from now on (1..255); used for low-TTL hole punching. */
  setTTL(ttl: number): void;
  /**
   * One datagram with its own IP TTL (1..255), for low-TTL priming; resolves once it has left.
   * Other sends before it resolves may leave with that TTL too: send nothing else meanwhile.
   */
  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): Promise<void>;
  /** Idempotent. */
  close(): void;
  /**
   * The data plane (a relay's forwarding, issue 23): `handler` sees every datagram first, with no
   * per-datagram event objects, and returns true when it took it; the rest go to 'message'
   * listeners. One handler per socket; `undefined` removes it.
   */
  setFastPath(handler: FastPathHandler | undefined): void;
  /**
   * Sends `data[offset, offset + length)` to `address`:`port`, or, with `head`, `head` followed by
   * that range, as one datagram: scatter-gather, no copy and no per-datagram callback on real
   * sockets. For forwarding; a datagram sent just before `close()` may be dropped.
   */
  forward(
    data: Uint8Array,
    offset: number,
    length: number,
    address: string,
    port: number,
    head?: Uint8Array,
  ): void;
}

/** Takes a datagram on the data plane; true when taken. `data` is valid only during the call. */
export type FastPathHandler = (data: Uint8Array, address: string, port: number) => boolean;

export interface BindInit {
  /** Local address to bind; default all addresses. */
  readonly address?: string;
  /** Local port; default an ephemeral port chosen by the stack. */
  readonly port?: number;
  /**
   * Kernel receive buffer (SO_RCVBUF), for sockets that take bursts from many senders (a relay).
   * Capped by net.core.rmem_max; default the system's (about 208 KiB on Linux).
   */
  readonly receiveBufferBytes?: number;
}

export type StreamConnectionEvents = {
  data: [chunk: Uint8Array];
  /** The peer closed its side or the connection was reset; no more data will arrive. */
  close: [error?: Error];
};

/** An ordered, reliable byte stream (TCP-like). */
export interface StreamConnection extends TypedEmitter<StreamConnectionEvents> {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  write(data: Uint8Array): void;
  /** Idempotent. */
  close(): void;
  readonly closed: boolean;
  /** Bytes written but not yet handed to the network: a peer that does not read makes it grow. */
  readonly bufferedBytes: number;
}

export type StreamServerEvents = {
  connection: [connection: StreamConnection];
  close: [];
};

export interface StreamServer extends TypedEmitter<StreamServerEvents> {
  readonly local: Endpoint;
  /** Idempotent; open connections stay open. */
  close(): void;
}

export interface ConnectInit {
  readonly signal?: AbortSignal;
  /**
   * Local port to connect from; default ephemeral. Bound with SO_REUSEADDR (libuv does), so a
   * connect from the same port to another peer, or again after a reset, is allowed: TCP hole
   * punching (issue 21) connects from the port it predicted, and a SYN that meets the peer's SYN
   * becomes a simultaneous open (RFC 9293 §3.5).
   */
  readonly localPort?: number;
  /** Local address to connect from (the signaling benchmark spreads its devices over 127.0.0.0/8). */
  readonly localAddress?: string;
  /**
   * IP TTL of the SYN (1..255), for a low-TTL priming SYN (issue 21); once connected, segments
   * leave with the default TTL again, as STUNT resets IP_TTL after its SYN. Only the virtual
   * network: Node's `net` has no IP_TTL for TCP sockets, so `NodeNetwork` refuses it.
   */
  readonly ttl?: number;
  /** Give up after this long (default the network's own: 10 s virtual, the kernel's ~2 min real). */
  readonly timeoutMs?: number;
  /** Connect with TLS (SIP over TLS, RFC 3261 §26.2). The virtual network does not model TLS. */
  /**
   * TLS instead of plain TCP. `ca`: the CA to trust (default the system's); `fingerprint`: the
   * server certificate's SHA-256 (`AB:CD:…`) to pin instead, so a self-signed server needs no CA.
   */
  readonly tls?: { readonly ca?: string; readonly servername?: string; readonly fingerprint?: string };
}

export interface ListenInit extends BindInit {
  readonly port: number;
  /** Accept TLS with this PEM certificate and key. */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export interface Network {
  bindUdp(init?: BindInit): Promise<UdpSocket>;
  connect(to: Endpoint, init?: ConnectInit): Promise<StreamConnection>;
  listen(init: ListenInit): Promise<StreamServer>;
}

/** Thrown by `connect` when the peer refuses (no listener). */
export class ConnectionRefusedError extends Error {
  readonly code = 'ECONNREFUSED';
  constructor(to: Endpoint) {
    super(`connection refused by ${to.address}:${to.port}`);
    this.name = 'ConnectionRefusedError';
  }
}

/** Thrown by `bindUdp`/`listen` when the port is taken. */
export class AddressInUseError extends Error {
  readonly code = 'EADDRINUSE';
  constructor(local: Endpoint) {
    super(`address in use: ${local.address}:${local.port}`);
    this.name = 'AddressInUseError';
  }
}
