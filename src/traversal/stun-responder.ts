/**
 * STUN Binding responder with the RFC 5780 behaviour-discovery extras: it listens on two addresses
 * by two ports, answers with XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS, and honours
 * CHANGE-REQUEST by answering from the other address and/or port. This is the paper's TEST/TEST_200.
 */

import { type Endpoint, formatEndpoint } from '../net/address.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import {
  decodeChangeRequest,
  encodeAddress,
  encodeErrorCode,
  encodeText,
  encodeUnknownAttributes,
  encodeXorAddress,
} from '../protocol/stun/attributes.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeStun,
  encodeStun,
  findAttribute,
  isStun,
  StunClass,
  type StunMessage,
  StunMethod,
} from '../protocol/stun/message.ts';
import { RateLimiter } from '../util/rate-limiter.ts';
import type { RecentBindings } from './recent-bindings.ts';

export interface StunResponderInit {
  /** Primary address and port (the one clients are told about). */
  readonly primary: Endpoint;
  /**
   * Alternate address and port, advertised in OTHER-ADDRESS. With the primary's address (a host
   * with one public address) only the port changes: mapping, the allocation step and prediction
   * work, the filtering test reads only port filtering, and a CHANGE-REQUEST for another IP gets
   * 420, as RFC 5780 §6.1 has a server without an alternate do.
   */
  readonly alternate: Endpoint;
  readonly software?: string;
  /** SO_RCVBUF of the sockets; default the system's. A TURN server on the primary port wants more. */
  readonly receiveBufferBytes?: number;
  /**
   * Requests answered per source address and second (twice that in a burst); more are dropped and
   * counted. A Binding answer is about 5 times its request, so an unlimited responder is a
   * reflector for spoofed floods. Needs `now`; without both, every request is answered (tests).
   */
  readonly perSourcePerSecond?: number;
  /** Monotonic milliseconds, for the rate limit. */
  readonly now?: () => number;
}

export interface StunResponderCounters {
  requests: number;
  responses: number;
  malformed: number;
  ignored: number;
  rateLimited: number;
}

/** Attributes a Binding request may carry that we understand (comprehension-required range 0x0000-0x7fff). */
const UNDERSTOOD = new Set<number>([
  AttributeType.CHANGE_REQUEST,
  AttributeType.USERNAME,
  AttributeType.MESSAGE_INTEGRITY,
  0x0026, // PADDING (RFC 5780)
  0x0027, // RESPONSE-PORT (RFC 5780)
  0x0024, // PRIORITY (ICE)
  0x0025, // USE-CANDIDATE (ICE)
]);

export class StunResponder {
  readonly counters: StunResponderCounters = {
    requests: 0,
    responses: 0,
    malformed: 0,
    ignored: 0,
    rateLimited: 0,
  };
  readonly #limiter?: RateLimiter;
  /** Sockets by role: [primary address][primary port] etc. */
  readonly #sockets = new Map<string, UdpSocket>();
  #closed = false;
  /**
   * Sees each datagram on the primary endpoint first and returns true when it took it: the TURN
   * server shares that port (3478), as TURN servers do, and leaves Binding requests to us.
   */
  delegate?: (data: Uint8Array, from: Endpoint, socket: UdpSocket) => boolean;
  /**
   * The Bindings just answered, by transaction ID, when the signaling server reads pins from them
   * (recent-bindings.ts).
   */
  bindings?: RecentBindings;

  private constructor(
    private readonly network: Network,
    readonly init: StunResponderInit,
  ) {
    if (init.perSourcePerSecond && init.now)
      this.#limiter = new RateLimiter(init.perSourcePerSecond, 2 * init.perSourcePerSecond);
  }

  static async start(network: Network, init: StunResponderInit): Promise<StunResponder> {
    if (formatEndpoint(init.primary) === formatEndpoint(init.alternate))
      throw new Error('the STUN alternate must differ from the primary by address or port');
    const responder = new StunResponder(network, init);
    try {
      for (const endpoint of responder.endpoints()) await responder.open(endpoint);
    } catch (error) {
      responder.close();
      throw error;
    }
    return responder;
  }

  /** One public address: the alternate differs from the primary by its port alone. */
  get singleAddress(): boolean {
    return this.init.alternate.address === this.init.primary.address;
  }

  /** The listening endpoints: primary/alternate address by primary/alternate port (two with one address). */
  endpoints(): Endpoint[] {
    const { primary, alternate } = this.init;
    if (this.singleAddress) return [primary, alternate];
    return [
      primary,
      { address: primary.address, port: alternate.port },
      { address: alternate.address, port: primary.port },
      alternate,
    ];
  }

  /** Stops listening on one endpoint (packets to it then get the host's ICMP port-unreachable). */
  closeEndpoint(endpoint: Endpoint): void {
    const key = formatEndpoint(endpoint);
    this.#sockets.get(key)?.close();
    this.#sockets.delete(key);
  }

  /** Listens on one of the four endpoints again. */
  async open(endpoint: Endpoint): Promise<void> {
    const key = formatEndpoint(endpoint);
    if (this.#closed || this.#sockets.has(key)) return;
    const socket = await this.network.bindUdp({
      ...endpoint,
      receiveBufferBytes: this.init.receiveBufferBytes,
    });
    socket.on('message', (data, from) => this.#onMessage(socket, data, from));
    this.#sockets.set(key, socket);
  }

  /** Sends `data` from one of our endpoints (used by behaviour tests to knock on a NAT). */
  socketAt(endpoint: Endpoint): UdpSocket | undefined {
    return this.#sockets.get(formatEndpoint(endpoint));
  }

  /** Every endpoint is open. */
  get listening(): boolean {
    return !this.#closed && this.#sockets.size === this.endpoints().length;
  }

  close(): void {
    this.#closed = true;
    for (const socket of this.#sockets.values()) socket.close();
    this.#sockets.clear();
  }

  #onMessage(socket: UdpSocket, data: Uint8Array, from: Endpoint): void {
    if (this.delegate && socket === this.socketAt(this.init.primary) && this.delegate(data, from, socket))
      return;
    if (!isStun(data)) {
      this.counters.ignored++;
      return;
    }
    let request: StunMessage;
    try {
      request = decodeStun(data);
    } catch {
      this.counters.malformed++;
      return;
    }
    if (request.method !== StunMethod.binding || request.cls !== StunClass.request) {
      this.counters.ignored++;
      return;
    }
    if (this.#limiter && !this.#limiter.allow(from.address, this.init.now!())) {
      this.counters.rateLimited++;
      return;
    }
    this.counters.requests++;
    const unknown = request.attributes
      .filter((a) => a.type < 0x8000 && !UNDERSTOOD.has(a.type))
      .map((a) => a.type);
    if (unknown.length > 0) {
      this.#reply(socket, from, request, StunClass.error, [
        {
          type: AttributeType.ERROR_CODE,
          value: encodeErrorCode({ code: 420, reason: 'Unknown Attribute' }),
        },
        { type: AttributeType.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributes(unknown) },
      ]);
      return;
    }
    let sender = socket;
    const change = findAttribute(request, AttributeType.CHANGE_REQUEST);
    if (change) {
      let flags: ReturnType<typeof decodeChangeRequest>;
      try {
        flags = decodeChangeRequest(change.value);
      } catch {
        this.counters.malformed++;
        return;
      }
      if (flags.changeIp && this.singleAddress) {
        this.#reply(socket, from, request, StunClass.error, [
          {
            type: AttributeType.ERROR_CODE,
            value: encodeErrorCode({ code: 420, reason: 'No Alternate Address' }),
          },
        ]);
        return;
      }
      const target = {
        address: flags.changeIp ? this.#other(socket.local.address, 'address') : socket.local.address,
        port: flags.changePort ? this.#other(socket.local.port, 'port') : socket.local.port,
      };
      const alt = this.#sockets.get(formatEndpoint(target));
      if (!alt) {
        this.counters.ignored++;
        return;
      }
      sender = alt;
    }
    this.bindings?.record(Buffer.from(request.transactionId).toString('hex'), from);
    this.#reply(sender, from, request, StunClass.success, [
      { type: AttributeType.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from) },
      { type: AttributeType.MAPPED_ADDRESS, value: encodeAddress(from) },
      { type: AttributeType.RESPONSE_ORIGIN, value: encodeAddress(sender.local) },
      { type: AttributeType.OTHER_ADDRESS, value: encodeAddress(this.init.alternate) },
    ]);
  }

  #other<T extends string | number>(value: T, kind: 'address' | 'port'): T {
    const { primary, alternate } = this.init;
    if (kind === 'address') return (value === primary.address ? alternate.address : primary.address) as T;
    return (value === primary.port ? alternate.port : primary.port) as T;
  }

  #reply(
    socket: UdpSocket,
    to: Endpoint,
    request: StunMessage,
    cls: StunClass,
    attributes: { type: number; value: Uint8Array }[],
  ): void {
    if (this.init.software)
      attributes.push({ type: AttributeType.SOFTWARE, value: encodeText(this.init.software) });
    const response = addFingerprint(
      encodeStun({ method: StunMethod.binding, cls, transactionId: request.transactionId, attributes }),
    );
    this.counters.responses++;
    socket.send(response, to);
  }
}
