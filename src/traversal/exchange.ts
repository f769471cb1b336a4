/**
 * One request over UDP until it is answered (port mapping, issue 20): sent up to `attempts` times,
 * `rtoMs` apart and doubling (RFC 6886 §3.1's schedule, from 250 ms), until `accept` takes a
 * datagram from a sender `from` allows.
 */
import type { Endpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';

export type Answer<T> = { readonly answer: T } | { readonly silent: true };

export interface ExchangeInit {
  /** Default 250 ms. */
  readonly rtoMs?: number;
  /** Default 3. */
  readonly attempts?: number;
  readonly signal?: AbortSignal;
}

export async function exchange<T>(
  clock: Clock,
  socket: UdpSocket,
  send: () => void,
  from: (sender: Endpoint) => boolean,
  init: ExchangeInit,
  accept: (data: Uint8Array) => T | undefined,
): Promise<Answer<T>> {
  let answer: T | undefined;
  const wake = new AbortController();
  const off = socket.on('message', (data, sender) => {
    if (answer !== undefined || !from(sender)) return;
    answer = accept(data);
    if (answer !== undefined) wake.abort();
  });
  try {
    let rtoMs = init.rtoMs ?? 250;
    for (let i = 0; i < (init.attempts ?? 3) && answer === undefined; i++) {
      send();
      const signal = init.signal ? AbortSignal.any([init.signal, wake.signal]) : wake.signal;
      await sleep(clock, rtoMs, signal).catch(() => {});
      if (init.signal?.aborted) break;
      rtoMs *= 2;
    }
  } finally {
    off();
  }
  return answer === undefined ? { silent: true } : { answer };
}
