/**
 * `Network` over Node's `dgram` and `net`. Only composition roots construct this.
 *
 * ICMP: Linux reports an ICMP error to a UDP socket only when the socket is connected (it surfaces
 * as ECONNREFUSED) unless IP_RECVERR is set, which Node does not expose. So `icmp` events come from
 * this implementation only for errors the kernel reports; the virtual network reports them all.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { Endpoint } from './address.ts';
import {
  AddressInUseError,
  type BindInit,
  type ConnectInit,
  ConnectionRefusedError,
  type FastPathHandler,
  type ListenInit,
  type Network,
  type StreamConnection,
  type StreamConnectionEvents,
  type StreamServer,
  type StreamServerEvents,
  type UdpSocket,
  type UdpSocketEvents,
} from './types.ts';

class NodeUdpSocket extends TypedEmitter<UdpSocketEvents> implements UdpSocket {
  #closed = false;
  /**
   * Datagrams handed to dgram and not yet sent. dgram sends after an asynchronous step, and a
   * socket closed before it drops them: `close()` waits for these, so a datagram sent just before
   * a close leaves, as on the virtual network.
   */
  #unsent = 0;
  #lowTtlSends = 0;
  /** Datagrams this host refused to send (a local firewall, no route). */
  sendFailures = 0;
  /** Linux's net.ipv4.ip_default_ttl, or what `setTTL` set. */
  #ttl = 64;
  #fastPath?: FastPathHandler;
  constructor(
    readonly socket: dgram.Socket,
    readonly local: Endpoint,
  ) {
    super();
    socket.on('message', (msg, rinfo) => {
      if (this.#closed) return;
      // A Buffer is a Uint8Array: the data plane takes it as it is.
      if (this.#fastPath?.(msg, rinfo.address, rinfo.port)) return;
      this.emit('message', new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), {
        address: rinfo.address,
        port: rinfo.port,
      });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') this.emit('icmp', { type: 'port-unreachable' });
      else if (error.code === 'EHOSTUNREACH') this.emit('icmp', { type: 'host-unreachable' });
      else this.onListenerError(error, 'message');
    });
    socket.on('close', () => {
      this.#closed = true;
      this.emit('close');
    });
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.#closed) return;
    this.#unsent++;
    this.socket.send(data, to.port, to.address, (error) => {
      this.#unsent--;
      if (this.#closed) {
        if (this.#unsent === 0) this.socket.close();
      } else if (error && DROPPED_BY_HOST.has((error as NodeJS.ErrnoException).code ?? '')) {
        // A local firewall refused it (issue 21's --block-udp: nftables drop gives EPERM), or no
        // route: lost, as on a wire. The sender's own timeouts decide what that means.
        this.sendFailures++;
      } else if (error) this.socket.emit('error', error);
    });
  }

  setFastPath(handler: FastPathHandler | undefined): void {
    this.#fastPath = handler;
  }

  forward(
    data: Uint8Array,
    offset: number,
    length: number,
    address: string,
    port: number,
    head?: Uint8Array,
  ): void {
    if (this.#closed) return;
    // No callback: dgram then allocates nothing to call back, and reports a failure as an 'error'.
    if (head) this.socket.send([head, data.subarray(offset, offset + length)], port, address);
    else this.socket.send(data, offset, length, port, address);
  }

  setTTL(ttl: number): void {
    this.#ttl = ttl;
    if (this.#lowTtlSends === 0) this.socket.setTTL(ttl);
  }

  /**
   * dgram picks the TTL up when the datagram really leaves, after an asynchronous step, so the
   * socket keeps the low TTL until the last such datagram's callback, then goes back.
   */
  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): Promise<void> {
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 255)
      return Promise.reject(new RangeError(`TTL must be 1..255, got ${ttl}`));
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.setTTL(ttl);
      this.#lowTtlSends++;
      this.#unsent++;
      this.socket.send(data, to.port, to.address, (error) => {
        this.#unsent--;
        this.#lowTtlSends--;
        if (this.#closed) {
          if (this.#unsent === 0) this.socket.close();
        } else {
          if (this.#lowTtlSends === 0) this.socket.setTTL(this.#ttl);
          if (error) this.socket.emit('error', error);
        }
        resolve();
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The last send's callback closes it otherwise.
    if (this.#unsent === 0) this.socket.close();
  }
}

class NodeStreamConnection extends TypedEmitter<StreamConnectionEvents> implements StreamConnection {
  #closed = false;
  constructor(
    readonly socket: net.Socket,
    readonly local: Endpoint,
    readonly remote: Endpoint,
  ) {
    super();
    socket.on('data', (chunk) => this.emit('data', new Uint8Array(chunk)));
    let failure: Error | undefined;
    socket.on('error', (error) => {
      failure = error;
    });
    socket.on('close', () => {
      this.#closed = true;
      this.emit('close', failure);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  write(data: Uint8Array): void {
    if (!this.#closed) this.socket.write(data);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.end();
    this.socket.destroySoon();
  }
}

class NodeStreamServer extends TypedEmitter<StreamServerEvents> implements StreamServer {
  #closed = false;
  constructor(
    readonly server: net.Server,
    readonly local: Endpoint,
  ) {
    super();
    server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
      // Signaling is small messages in both directions: with Nagle on, a go that follows a 200 OK
      // waits for the peer's delayed ACK (up to 40 ms), and the synchronized punch falls apart.
      socket.setNoDelay(true);
      this.emit('connection', wrapSocket(socket));
    });
    server.on('close', () => this.emit('close'));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.server.close();
  }
}

function wrapSocket(socket: net.Socket): NodeStreamConnection {
  return new NodeStreamConnection(
    socket,
    { address: socket.localAddress ?? '0.0.0.0', port: socket.localPort ?? 0 },
    { address: socket.remoteAddress ?? '0.0.0.0', port: socket.remotePort ?? 0 },
  );
}

/** Send errors that mean the datagram was dropped before the wire, not that the socket broke. */
const DROPPED_BY_HOST = new Set(['EPERM', 'EACCES', 'ENETUNREACH']);

export class NodeNetwork implements Network {
  bindUdp(init: BindInit = {}): Promise<UdpSocket> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: init.receiveBufferBytes });
      const onError = (error: NodeJS.ErrnoException): void => {
        socket.close();
        reject(
          error.code === 'EADDRINUSE'
            ? new AddressInUseError({ address: init.address ?? '0.0.0.0', port: init.port ?? 0 })
            : error,
        );
      };
      socket.once('error', onError);
      socket.bind({ address: init.address, port: init.port ?? 0, exclusive: true }, () => {
        socket.off('error', onError);
        const address = socket.address();
        resolve(new NodeUdpSocket(socket, { address: address.address, port: address.port }));
      });
    });
  }

  connect(to: Endpoint, init: ConnectInit = {}): Promise<StreamConnection> {
    return new Promise((resolve, reject) => {
      if (init.signal?.aborted) {
        reject(init.signal.reason);
        return;
      }
      if (init.ttl !== undefined) {
        // Node's net exposes no IP_TTL for TCP (dgram has setTTL); a priming SYN needs a raw socket.
        reject(
          new Error(
            'a TCP connect with its own TTL is not available on real sockets (Node has no IP_TTL for TCP)',
          ),
        );
        return;
      }
      const pin = init.tls?.fingerprint?.toUpperCase();
      const socket = init.tls
        ? tls.connect({
            host: to.address,
            port: to.port,
            ca: init.tls.ca,
            servername: init.tls.servername,
            // A pinned certificate is checked below, by its fingerprint, instead of by a CA.
            ...(pin ? { rejectUnauthorized: false } : {}),
          })
        : net.connect({
            host: to.address,
            port: to.port,
            localPort: init.localPort,
            localAddress: init.localAddress,
          });
      const onAbort = (): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(init.signal?.reason);
      };
      init.signal?.addEventListener('abort', onAbort, { once: true });
      const timer =
        init.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              init.signal?.removeEventListener('abort', onAbort);
              socket.destroy();
              reject(new Error(`connect to ${to.address}:${to.port} timed out after ${init.timeoutMs} ms`));
            }, init.timeoutMs);
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        init.signal?.removeEventListener('abort', onAbort);
        reject(error.code === 'ECONNREFUSED' ? new ConnectionRefusedError(to) : error);
      });
      socket.once(init.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        init.signal?.removeEventListener('abort', onAbort);
        if (pin && socket instanceof tls.TLSSocket) {
          const actual = socket.getPeerCertificate().fingerprint256?.toUpperCase();
          if (actual !== pin) {
            socket.destroy();
            reject(
              new Error(
                `the TLS certificate of ${to.address}:${to.port} (sha-256 ${actual ?? 'none'}) is not the pinned one (${pin}): refusing to connect`,
              ),
            );
            return;
          }
        }
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        resolve(wrapSocket(socket));
      });
    });
  }

  listen(init: ListenInit): Promise<StreamServer> {
    return new Promise((resolve, reject) => {
      const server = init.tls
        ? tls.createServer({ cert: init.tls.cert, key: init.tls.key })
        : net.createServer();
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'EADDRINUSE'
            ? new AddressInUseError({ address: init.address ?? '0.0.0.0', port: init.port })
            : error,
        );
      });
      server.listen({ host: init.address ?? '0.0.0.0', port: init.port }, () => {
        const address = server.address() as net.AddressInfo;
        resolve(new NodeStreamServer(server, { address: address.address, port: address.port }));
      });
    });
  }
}
