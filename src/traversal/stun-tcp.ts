/**
 * STUN Binding over TCP (RFC 8489 §6.2.2: messages back to back, each delimited by its own length
 * field), for issue 21's TCP port prediction: the port our NAT gives a new TCP session is read the
 * same way as a UDP one, from a server that echoes it.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import type { Network, StreamConnection, StreamServer } from '../net/types.ts';
import { concat } from '../protocol/dtls/reader.ts';
import { encodeAddress, encodeXorAddress } from '../protocol/stun/attributes.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  equalBytes,
  isStun,
  StunClass,
  StunMethod,
} from '../protocol/stun/message.ts';
import { mappedAddress } from './stun-client.ts';

/** A Binding request or answer is well under this; a peer that announces more is cut off. */
export const MAX_TCP_STUN_MESSAGE = 1024;

/**
 * Splits whole STUN messages off the front of `buffer`. Returns the messages and the bytes left
 * over, or undefined when the stream is not STUN or announces a message above `max` bytes.
 */
export function splitStunStream(
  buffer: Uint8Array,
  max = MAX_TCP_STUN_MESSAGE,
): { readonly messages: Uint8Array[]; readonly rest: Uint8Array } | undefined {
  const messages: Uint8Array[] = [];
  let at = 0;
  while (buffer.byteLength - at >= 20) {
    const header = buffer.subarray(at, at + 20);
    if (!isStun(header)) return undefined;
    const length = 20 + ((header[2]! << 8) | header[3]!);
    if (length > max) return undefined;
    if (buffer.byteLength - at < length) break;
    messages.push(buffer.slice(at, at + length));
    at += length;
  }
  return { messages, rest: buffer.slice(at) };
}

export interface TcpBindingComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface TcpBindingResult {
  /** Our endpoint as the server saw it: the NAT's TCP mapping for this connection. */
  readonly mapped: Endpoint;
  /** The local endpoint the connection left from. */
  readonly local: Endpoint;
  readonly rttMs: number;
}

/**
 * One Binding over a fresh TCP connection (from `localPort`, or an ephemeral port), closed after.
 * Resolves undefined when the server refuses, does not answer within `timeoutMs`, or answers
 * nonsense.
 */
export async function tcpBinding(
  c: TcpBindingComponents,
  init: {
    readonly server: Endpoint;
    readonly localPort?: number;
    readonly timeoutMs?: number;
    readonly signal?: AbortSignal;
  },
): Promise<TcpBindingResult | undefined> {
  const timeoutMs = init.timeoutMs ?? 3000;
  const started = c.clock.now();
  const abort = new AbortController();
  const onAbort = (): void => abort.abort();
  init.signal?.addEventListener('abort', onAbort, { once: true });
  let connection: StreamConnection | undefined;
  try {
    connection = await c.network.connect(init.server, {
      localPort: init.localPort,
      timeoutMs,
      signal: abort.signal,
    });
    const transactionId = c.transactionId?.() ?? new Uint8Array(randomBytes(12));
    const answer = new Promise<TcpBindingResult | undefined>((resolve) => {
      let buffer: Uint8Array = new Uint8Array(0);
      connection!.on('close', () => resolve(undefined));
      connection!.on('data', (chunk) => {
        const split = splitStunStream(concat(buffer, chunk));
        if (!split) {
          resolve(undefined);
          return;
        }
        buffer = split.rest;
        for (const raw of split.messages) {
          try {
            const message = decodeStun(raw);
            if (message.cls !== StunClass.success || !equalBytes(message.transactionId, transactionId))
              continue;
            const mapped = mappedAddress(message);
            if (!mapped) continue;
            resolve({
              mapped,
              local: connection!.local,
              rttMs: c.clock.now() - started,
            });
          } catch {
            // A malformed answer: keep reading until the timeout.
          }
        }
      });
    });
    connection.write(
      addFingerprint(
        encodeStun({ method: StunMethod.binding, cls: StunClass.request, transactionId, attributes: [] }),
      ),
    );
    const remaining = Math.max(1, timeoutMs - (c.clock.now() - started));
    return await Promise.race([
      answer,
      sleep(c.clock, remaining, abort.signal).then(
        () => undefined,
        () => undefined,
      ),
    ]);
  } catch {
    return undefined;
  } finally {
    abort.abort();
    init.signal?.removeEventListener('abort', onAbort);
    connection?.close();
  }
}

export interface StunTcpResponderInit {
  readonly listen: Endpoint;
  /** Connections open at once; more are closed on arrival. Default 256. */
  readonly maxConnections?: number;
  /** A connection silent this long is closed. Default 5000 ms. */
  readonly idleMs?: number;
  /** Requests answered per connection before it is closed. Default 4. */
  readonly maxRequests?: number;
  readonly software?: string;
}

export interface StunTcpResponderCounters {
  connections: number;
  refused: number;
  requests: number;
  malformed: number;
  idleClosed: number;
}

/** Answers Binding requests over TCP with the connection's source (XOR-MAPPED-ADDRESS). */
export class StunTcpResponder {
  readonly counters: StunTcpResponderCounters = {
    connections: 0,
    refused: 0,
    requests: 0,
    malformed: 0,
    idleClosed: 0,
  };
  readonly #open = new Set<StreamConnection>();

  private constructor(
    private readonly server: StreamServer,
    private readonly clock: Clock,
    readonly init: StunTcpResponderInit,
  ) {
    server.on('connection', (connection) => this.#accept(connection));
  }

  static async start(
    c: { network: Network; clock: Clock },
    init: StunTcpResponderInit,
  ): Promise<StunTcpResponder> {
    const server = await c.network.listen({ address: init.listen.address, port: init.listen.port });
    return new StunTcpResponder(server, c.clock, init);
  }

  get local(): Endpoint {
    return this.server.local;
  }

  get openConnections(): number {
    return this.#open.size;
  }

  close(): void {
    this.server.close();
    for (const connection of [...this.#open]) connection.close();
    this.#open.clear();
  }

  #accept(connection: StreamConnection): void {
    if (this.#open.size >= (this.init.maxConnections ?? 256)) {
      this.counters.refused++;
      connection.close();
      return;
    }
    this.counters.connections++;
    this.#open.add(connection);
    let buffer: Uint8Array = new Uint8Array(0);
    let answered = 0;
    // One idle timer per connection, restarted by every chunk; closing the connection stops it.
    let timer = new AbortController();
    const rearm = (): void => {
      timer.abort();
      timer = new AbortController();
      void sleep(this.clock, this.init.idleMs ?? 5000, timer.signal).then(
        () => {
          this.counters.idleClosed++;
          connection.close();
        },
        () => {},
      );
    };
    rearm();
    connection.on('close', () => {
      timer.abort();
      this.#open.delete(connection);
    });
    connection.on('data', (chunk) => {
      rearm();
      const split = splitStunStream(concat(buffer, chunk));
      if (!split) {
        this.counters.malformed++;
        connection.close();
        return;
      }
      buffer = split.rest;
      for (const raw of split.messages) {
        let request: ReturnType<typeof decodeStun>;
        try {
          request = decodeStun(raw);
        } catch {
          this.counters.malformed++;
          connection.close();
          return;
        }
        if (request.method !== StunMethod.binding || request.cls !== StunClass.request) continue;
        this.counters.requests++;
        const attributes = [
          { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(connection.remote) },
          { type: AttributeType.MAPPED_ADDRESS, value: encodeAddress(connection.remote) },
          { type: AttributeType.RESPONSE_ORIGIN, value: encodeAddress(this.server.local) },
        ];
        connection.write(
          addFingerprint(
            encodeStun({
              method: StunMethod.binding,
              cls: StunClass.success,
              transactionId: request.transactionId,
              attributes,
            }),
          ),
        );
        if (++answered >= (this.init.maxRequests ?? 4)) {
          connection.close();
          return;
        }
      }
    });
  }
}
