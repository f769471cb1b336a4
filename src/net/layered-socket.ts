/**
 * The base of a socket built on another (framing over TCP, SRTP, a route switch): it delivers
 * what it decodes through `deliver`, which honours the data plane's fast path like a real socket,
 * and forwards by copying into one datagram (these layers transform what they send anyway).
 */
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { Endpoint } from './address.ts';
import type { FastPathHandler, UdpSocketEvents } from './types.ts';

/** `head` then `data[offset, offset + length)` in one new array: a forward where no socket gathers. */
export function gather(data: Uint8Array, offset: number, length: number, head?: Uint8Array): Uint8Array {
  const out = new Uint8Array((head?.byteLength ?? 0) + length);
  if (head) out.set(head);
  out.set(data.subarray(offset, offset + length), head?.byteLength ?? 0);
  return out;
}

export abstract class LayeredUdpSocket extends TypedEmitter<UdpSocketEvents> {
  #fastPath?: FastPathHandler;

  abstract send(data: Uint8Array, to: Endpoint): void;

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
    this.send(gather(data, offset, length, head), { address, port });
  }

  /** Hands a received datagram up: to the fast path, else to 'message' listeners. */
  protected deliver(data: Uint8Array, from: Endpoint): void {
    if (!this.#fastPath?.(data, from.address, from.port)) this.emit('message', data, from);
  }
}
