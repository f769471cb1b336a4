/**
 * One STUN Binding transaction (RFC 8489 §6.2.1) on a UDP socket: retransmit with a doubling RTO,
 * match the response by transaction id, and report the mapped address and the RFC 5780 extras.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import {
  type ChangeRequest,
  decodeAddress,
  decodeXorAddress,
  encodeChangeRequest,
} from '../protocol/stun/attributes.ts';
import { addFingerprint } from '../protocol/stun/integrity.ts';
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

export interface StunBindingInit {
  readonly server: Endpoint;
  readonly changeRequest?: ChangeRequest;
  /** First retransmission timeout. RFC 8489 §6.2.1 recommends 500 ms on an unknown path. */
  readonly rtoMs?: number;
  /** Requests sent before giving up. RFC 8489 uses Rc = 7; behaviour tests on a clean path need fewer. */
  readonly attempts?: number;
  readonly signal?: AbortSignal;
}

export interface StunBindingComponents {
  readonly clock: Clock;
  /** 12 random bytes per transaction; injected so a simulation is reproducible. */
  readonly transactionId?: () => Uint8Array;
}

export interface StunBindingResult {
  /** XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an RFC 3489 server). */
  readonly mapped: Endpoint;
  /** Where the response actually came from. */
  readonly from: Endpoint;
  readonly responseOrigin?: Endpoint;
  readonly otherAddress?: Endpoint;
  readonly rttMs: number;
}

/**
 * The address a Binding answer reports: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489
 * server; undefined without either. Throws `DecodeError` on a malformed one.
 */
export function mappedAddress(message: StunMessage): Endpoint | undefined {
  const xor = findAttribute(message, AttributeType.XOR_MAPPED_ADDRESS);
  if (xor) return decodeXorAddress(xor.value);
  const plain = findAttribute(message, AttributeType.MAPPED_ADDRESS);
  return plain ? decodeAddress(plain.value) : undefined;
}

/** Sends a Binding request; resolves with the response, or `undefined` when none came back. */
export async function stunBinding(
  socket: UdpSocket,
  components: StunBindingComponents,
  init: StunBindingInit,
): Promise<StunBindingResult | undefined> {
  const transactionId = components.transactionId?.() ?? new Uint8Array(randomBytes(12));
  const attributes: StunAttribute[] = [];
  if (init.changeRequest) {
    attributes.push({ type: AttributeType.CHANGE_REQUEST, value: encodeChangeRequest(init.changeRequest) });
  }
  const request = addFingerprint(
    encodeStun({ method: StunMethod.binding, cls: StunClass.request, transactionId, attributes }),
  );
  const started = components.clock.now();
  let result: StunBindingResult | undefined;
  const off = socket.on('message', (data, from) => {
    if (result || !isStun(data)) return;
    try {
      const message = decodeStun(data);
      if (message.cls !== StunClass.success || !equalBytes(message.transactionId, transactionId)) return;
      const mapped = mappedAddress(message);
      if (!mapped) return;
      const origin = findAttribute(message, AttributeType.RESPONSE_ORIGIN);
      const other = findAttribute(message, AttributeType.OTHER_ADDRESS);
      result = {
        mapped,
        from,
        responseOrigin: origin ? decodeAddress(origin.value) : undefined,
        otherAddress: other ? decodeAddress(other.value) : undefined,
        rttMs: components.clock.now() - started,
      };
      wake.abort();
    } catch {
      // A malformed answer is ignored; the transaction retransmits or times out.
    }
  });
  const wake = new AbortController();
  const onAbort = (): void => wake.abort();
  init.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let rtoMs = init.rtoMs ?? 500;
    const attempts = init.attempts ?? 7;
    for (let attempt = 0; attempt < attempts && !result; attempt++) {
      socket.send(request, init.server);
      try {
        await sleep(components.clock, rtoMs, wake.signal);
      } catch {
        // Woken by a response or by the caller's abort.
      }
      rtoMs *= 2;
      if (init.signal?.aborted) throw init.signal.reason;
    }
    return result;
  } finally {
    off();
    init.signal?.removeEventListener('abort', onAbort);
  }
}
