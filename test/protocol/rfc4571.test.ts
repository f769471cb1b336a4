/** RFC 4571 framing (issue 21): round trips however the stream is cut, and a bounded deframer. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { concat } from '../../src/protocol/dtls/reader.ts';
import { Deframer, frame, MAX_FRAMED_DATAGRAM } from '../../src/protocol/rfc4571.ts';

describe('RFC 4571 framing', () => {
  it('puts a 16-bit big-endian length before each datagram', () => {
    expect([...frame(Uint8Array.of(0xaa, 0xbb, 0xcc))]).toEqual([0, 3, 0xaa, 0xbb, 0xcc]);
    expect(frame(new Uint8Array(300)).subarray(0, 2)).toEqual(Uint8Array.of(1, 44));
    expect(() => frame(new Uint8Array(MAX_FRAMED_DATAGRAM + 1))).toThrow(RangeError);
  });

  it('gives the datagrams back whichever way the byte stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 1500 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 50 }),
        (datagrams, cuts) => {
          const stream = concat(...datagrams.map(frame));
          const deframer = new Deframer();
          const out: Uint8Array[] = [];
          let at = 0;
          for (let i = 0; at < stream.byteLength; i++) {
            const size = cuts[i % cuts.length]!;
            out.push(...deframer.push(stream.subarray(at, at + size)));
            at += size;
          }
          expect(out).toEqual(datagrams);
          expect(deframer.pendingBytes).toBe(0);
        },
      ),
    );
  });

  it('skips empty frames (legal, they carry nothing)', () => {
    const deframer = new Deframer();
    expect(deframer.push(Uint8Array.of(0, 0, 0, 1, 7, 0, 0))).toEqual([Uint8Array.of(7)]);
  });

  it('refuses a length above what it accepts, instead of buffering it', () => {
    const deframer = new Deframer(1500);
    expect(() => deframer.push(Uint8Array.of(0x05, 0xdd))).toThrow(DecodeError); // 1501
    const ok = new Deframer(1500);
    // A partial frame holds at most one datagram's bytes.
    ok.push(Uint8Array.of(0x05, 0xdc, ...new Uint8Array(1000)));
    expect(ok.pendingBytes).toBe(1002);
    expect(() => new Deframer(0)).toThrow(RangeError);
  });
});
