/**
 * TCP-like streams on the virtual network: a SYN / SYN-ACK handshake, ordered delivery by
 * sequence number (jitter may reorder segments on the wire), FIN and RST. Segments cross NATs in
 * the TCP port space and see the path's latency; links never drop them (TCP would retransmit).
 */
import { TypedEmitter } from '../../util/typed-emitter.ts';
import type { Endpoint } from '../address.ts';
import type { StreamConnection, StreamConnectionEvents, StreamServer, StreamServerEvents } from '../types.ts';
import type { SegmentFlag, StreamSegment } from './packet.ts';

export interface SegmentSender {
  sendSegment(src: Endpoint, dst: Endpoint, flag: SegmentFlag, seq: number, payload?: Uint8Array): void;
  forgetConnection(connection: VirtualStreamConnection): void;
}

export class VirtualStreamConnection
  extends TypedEmitter<StreamConnectionEvents>
  implements StreamConnection
{
  #sendSeq = 1;
  #recvSeq = 1;
  readonly #outOfOrder = new Map<number, StreamSegment>();
  #closed = false;

  constructor(
    readonly local: Endpoint,
    readonly remote: Endpoint,
    private readonly sender: SegmentSender,
  ) {
    super();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The virtual network delivers every segment it is given: nothing queues. */
  get bufferedBytes(): number {
    return 0;
  }

  write(data: Uint8Array): void {
    if (this.#closed || data.byteLength === 0) return;
    this.sender.sendSegment(this.local, this.remote, 'data', this.#sendSeq++, data.slice());
  }

  close(): void {
    if (this.#closed) return;
    this.sender.sendSegment(this.local, this.remote, 'fin', this.#sendSeq++);
    this.#finish();
  }

  /** A segment for this connection arrived (after the handshake). */
  receive(segment: StreamSegment): void {
    if (this.#closed) return;
    if (segment.flag === 'rst') {
      this.#finish(new Error(`connection reset by ${segment.src.address}:${segment.src.port}`));
      return;
    }
    if (segment.flag !== 'data' && segment.flag !== 'fin') return;
    if (segment.seq < this.#recvSeq) return;
    this.#outOfOrder.set(segment.seq, segment);
    for (let next = this.#outOfOrder.get(this.#recvSeq); next; next = this.#outOfOrder.get(this.#recvSeq)) {
      this.#outOfOrder.delete(this.#recvSeq);
      this.#recvSeq++;
      if (next.flag === 'fin') {
        this.#finish();
        return;
      }
      if (next.payload) this.emit('data', next.payload);
    }
  }

  #finish(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#outOfOrder.clear();
    this.sender.forgetConnection(this);
    this.emit('close', error);
  }
}

export class VirtualStreamServer extends TypedEmitter<StreamServerEvents> implements StreamServer {
  #closed = false;
  constructor(
    readonly local: Endpoint,
    private readonly onClose: (server: VirtualStreamServer) => void,
  ) {
    super();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose(this);
    this.emit('close');
  }
}
