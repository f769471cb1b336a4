/**
 * TURN clients over TCP and TLS (RFC 8656 §3.1): each connection is one client 5-tuple whose
 * frames are deframed (§12.5) and handed to the server; its allocation ends with the connection.
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, StreamConnection, StreamServer } from '../net/types.ts';
import { FrameTooLarge, TurnStreamDeframer } from '../protocol/stun/turn.ts';
import type { TurnClientAddress, TurnCounters, TurnServerInit } from './turn-types.ts';

export interface TurnStreamsComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly counters: TurnCounters;
  /** One frame from a client, as a datagram would be. */
  onFrame(frame: Uint8Array, from: TurnClientAddress): void;
  /** True when the client holds an allocation (a connection without one is closed when idle). */
  allocated(client: TurnClientAddress): boolean;
  /** The connection closed: its allocation, if any, goes. */
  closed(client: TurnClientAddress): void;
}

export class TurnStreams {
  readonly #streams = new Set<StreamConnection>();
  readonly #servers: StreamServer[] = [];
  #closed = false;

  constructor(
    private readonly c: TurnStreamsComponents,
    private readonly init: Pick<TurnServerInit, 'capacity' | 'unallocatedIdleMs' | 'maxDatagramBytes'>,
  ) {}

  /** Listens at `at`, over TLS with `tls`; resolves with the listening endpoint. */
  async listen(at: Endpoint, tls?: { readonly cert: string; readonly key: string }): Promise<Endpoint> {
    const server = await this.c.network.listen({ address: at.address, port: at.port, tls });
    this.#servers.push(server);
    server.on('connection', (stream) => this.#onConnection(stream));
    return server.local;
  }

  /** Connections open now. */
  get size(): number {
    return this.#streams.size;
  }

  close(): void {
    this.#closed = true;
    for (const server of this.#servers) server.close();
    for (const stream of this.#streams) stream.close();
    this.#streams.clear();
  }

  #onConnection(stream: StreamConnection): void {
    if (this.#closed || this.#streams.size >= (this.init.capacity ?? 1000)) {
      this.c.counters.tcpRefused++;
      stream.close();
      return;
    }
    this.c.counters.tcpConnections++;
    this.#streams.add(stream);
    const from: TurnClientAddress = { address: stream.remote.address, port: stream.remote.port, stream };
    // A connection that never allocates would hold one of `capacity` places for nothing.
    const idle = this.c.clock.setTimeout(() => {
      if (stream.closed || this.c.allocated(from)) return;
      this.c.counters.tcpIdleClosed++;
      stream.close();
    }, this.init.unallocatedIdleMs ?? 10_000);
    const deframer = new TurnStreamDeframer(this.init.maxDatagramBytes ?? 2048);
    stream.on('data', (chunk) => {
      let frames: Uint8Array[];
      try {
        frames = deframer.push(chunk);
      } catch (error) {
        // A stream cannot be resynchronised after a bad frame: drop the connection (and its allocation).
        if (error instanceof FrameTooLarge) this.c.counters.oversized++;
        else this.c.counters.malformed++;
        stream.close();
        return;
      }
      for (const frame of frames) this.c.onFrame(frame, from);
    });
    stream.on('close', () => {
      idle.clear();
      this.#streams.delete(stream);
      this.c.closed(from);
    });
  }
}
