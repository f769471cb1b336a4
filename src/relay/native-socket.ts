/**
 * The native data plane's sockets (issue 23): UDP sockets that live in sc2c-relayd, seen here as
 * ordinary `UdpSocket`s, and the `Network` that binds them.
 */
import type { Endpoint } from '../net/address.ts';
import type {
  BindInit,
  FastPathHandler,
  Network,
  StreamConnection,
  StreamServer,
  UdpSocket,
  UdpSocketEvents,
} from '../net/types.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { NativePlane } from './native-plane.ts';

/** A UDP socket that lives in relayd. */
export class NativeUdpSocket extends TypedEmitter<UdpSocketEvents> implements UdpSocket {
  #closed = false;
  #fastPath?: FastPathHandler;

  constructor(
    private readonly plane: NativePlane,
    readonly id: number,
    readonly local: Endpoint,
  ) {
    super();
  }

  receive(data: Buffer, address: string, port: number): void {
    if (this.#closed) return;
    if (this.#fastPath?.(data, address, port)) return;
    this.emit('message', new Uint8Array(data.buffer, data.byteOffset, data.byteLength), { address, port });
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (!this.#closed) this.plane.send(this.id, data, 0, data.byteLength, to);
  }

  forward(
    data: Uint8Array,
    offset: number,
    length: number,
    address: string,
    port: number,
    head?: Uint8Array,
  ): void {
    if (!this.#closed) this.plane.send(this.id, data, offset, length, { address, port }, 0, head);
  }

  setTTL(ttl: number): void {
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255)
      throw new RangeError(`TTL must be 1..255, got ${ttl}`);
    if (!this.#closed) this.plane.setTtl(this.id, ttl);
  }

  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): Promise<void> {
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255)
      return Promise.reject(new RangeError(`TTL must be 1..255, got ${ttl}`));
    // The TTL rides with this datagram alone (an IP_TTL control message), so other sends keep theirs.
    if (!this.#closed) this.plane.send(this.id, data, 0, data.byteLength, to, ttl);
    return Promise.resolve();
  }

  setFastPath(handler: FastPathHandler | undefined): void {
    this.#fastPath = handler;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.plane.closeSocket(this.id);
    this.emit('close');
  }

  /** relayd is gone: so is this socket. */
  gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}

/** A `Network` whose UDP sockets live in relayd; streams are `base`'s. */
export class NativeNetwork implements Network {
  constructor(
    readonly plane: NativePlane,
    private readonly base: Network,
  ) {}

  bindUdp(init?: BindInit): Promise<UdpSocket> {
    return this.plane.bindUdp(init);
  }

  connect(...args: Parameters<Network['connect']>): Promise<StreamConnection> {
    return this.base.connect(...args);
  }

  listen(...args: Parameters<Network['listen']>): Promise<StreamServer> {
    return this.base.listen(...args);
  }
}
