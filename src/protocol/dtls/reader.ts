/** Bounds-checked big-endian reading and writing for the DTLS codecs: every length on the wire is checked before it is used. */
import { DecodeError } from '../decode-error.ts';

export class Reader {
  #at = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
    /** Offset of `bytes` within the datagram, for error positions. */
    private readonly base = 0,
  ) {}

  get offset(): number {
    return this.#at;
  }

  get remaining(): number {
    return this.bytes.byteLength - this.#at;
  }

  fail(reason: string): never {
    throw new DecodeError('DTLS', this.base + this.#at, `${this.what}: ${reason}`);
  }

  #need(n: number, field: string): void {
    if (this.remaining < n) this.fail(`${field} needs ${n} bytes, ${this.remaining} left`);
  }

  u8(field: string): number {
    this.#need(1, field);
    return this.bytes[this.#at++]!;
  }

  u16(field: string): number {
    this.#need(2, field);
    const v = (this.bytes[this.#at]! << 8) | this.bytes[this.#at + 1]!;
    this.#at += 2;
    return v;
  }

  u24(field: string): number {
    this.#need(3, field);
    const v = (this.bytes[this.#at]! << 16) | (this.bytes[this.#at + 1]! << 8) | this.bytes[this.#at + 2]!;
    this.#at += 3;
    return v;
  }

  u48(field: string): number {
    const high = this.u16(field);
    this.#need(4, field);
    const low = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.#at, 4).getUint32(0);
    this.#at += 4;
    return high * 2 ** 32 + low;
  }

  bytesOf(n: number, field: string): Uint8Array {
    this.#need(n, field);
    const v = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return v;
  }

  /** An opaque vector with a 1-, 2- or 3-byte length prefix (RFC 5246 §4.3), at most `max` bytes. */
  vector(prefix: 1 | 2 | 3, field: string, max = 0xffffff): Uint8Array {
    const n = prefix === 1 ? this.u8(field) : prefix === 2 ? this.u16(field) : this.u24(field);
    if (n > max) this.fail(`${field} of ${n} bytes exceeds ${max}`);
    return this.bytesOf(n, field);
  }

  rest(): Uint8Array {
    return this.bytesOf(this.remaining, 'rest');
  }

  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} unexpected trailing bytes`);
  }
}

/** Big-endian integer of `size` bytes. */
export function uint(value: number, size: 1 | 2 | 3 | 4 | 6): Uint8Array {
  const out = new Uint8Array(size);
  let v = value;
  for (let i = size - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return out;
}

/** An opaque vector with its length prefix. */
export function vector(prefix: 1 | 2 | 3, body: Uint8Array): Uint8Array {
  return concat(uint(body.byteLength, prefix), body);
}

export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
