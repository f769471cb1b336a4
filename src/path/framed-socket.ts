/**
 * A TCP connection seen as a datagram socket (issue 21): every datagram sent becomes one RFC 4571
 * frame, every frame received one `message` from the connection's peer. The punch's checks, the
 * DTLS handshake, SRTP and RTCP run over a `direct-tcp` path unchanged, as RFC 6544 §3 carries
 * ICE's over TCP.
 */
import type { Endpoint } from '../net/address.ts';
import { LayeredUdpSocket } from '../net/layered-socket.ts';
import type { StreamConnection, UdpSocket } from '../net/types.ts';
import { DecodeError } from '../protocol/decode-error.ts';
import { Deframer, frame, MAX_FRAMED_DATAGRAM } from '../protocol/rfc4571.ts';

/**
 * Bytes the connection may hold unsent before datagrams are dropped instead: real-time media is
 * better lost than queued behind a peer that stopped reading (about 0.5 s of 2 Mbit/s video).
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 128 * 1024;

export interface FramedSocketCounters {
  framesSent: number;
  framesReceived: number;
  /** Dropped because the connection's send buffer was full. */
  droppedFull: number;
  /** Sent to an endpoint other than the connection's peer: a TCP path has one destination. */
  misdirected: number;
}

export class FramedSocket extends LayeredUdpSocket implements UdpSocket {
  readonly local: Endpoint;
  readonly remote: Endpoint;
  readonly counters: FramedSocketCounters = {
    framesSent: 0,
    framesReceived: 0,
    droppedFull: 0,
    misdirected: 0,
  };
  readonly #deframer: Deframer;
  readonly #maxBufferedBytes: number;
  #closed = false;

  constructor(
    readonly connection: StreamConnection,
    init: { readonly maxBufferedBytes?: number; readonly maxDatagram?: number } = {},
  ) {
    super();
    this.local = connection.local;
    this.remote = connection.remote;
    this.#deframer = new Deframer(init.maxDatagram ?? MAX_FRAMED_DATAGRAM);
    this.#maxBufferedBytes = init.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    connection.on('data', (chunk) => this.#onData(chunk));
    connection.on('close', () => this.close());
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.#closed) return;
    if (to.address !== this.remote.address || to.port !== this.remote.port) {
      this.counters.misdirected++;
      return;
    }
    if (this.connection.bufferedBytes > this.#maxBufferedBytes || data.byteLength > MAX_FRAMED_DATAGRAM) {
      this.counters.droppedFull++;
      return;
    }
    this.counters.framesSent++;
    this.connection.write(frame(data));
  }

  /** The kernel sets an established connection's TTL; a TCP path is never primed this way. */
  setTTL(_ttl: number): void {}

  async sendWithTtl(data: Uint8Array, to: Endpoint, _ttl: number): Promise<void> {
    this.send(data, to);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.connection.close();
    this.emit('close');
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closed) return;
    let datagrams: Uint8Array[];
    try {
      datagrams = this.#deframer.push(chunk);
    } catch (error) {
      // A length no datagram of ours can have: the peer is not speaking RFC 4571. End it.
      if (error instanceof DecodeError) {
        this.close();
        return;
      }
      throw error;
    }
    for (const datagram of datagrams) {
      if (this.#closed) return;
      this.counters.framesReceived++;
      this.deliver(datagram, this.remote);
    }
  }
}
