import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import {
  decodeChangeRequest,
  decodeErrorCode,
  decodeXorAddress,
  encodeChangeRequest,
  encodeErrorCode,
  encodeXorAddress,
} from '../../src/protocol/stun/attributes.ts';
import {
  addFingerprint,
  addMessageIntegrity,
  verifyFingerprint,
  verifyMessageIntegrity,
} from '../../src/protocol/stun/integrity.ts';
import {
  AttributeType,
  decodeMessageType,
  decodeStun,
  encodeMessageType,
  encodeStun,
  findAttribute,
  isStun,
  StunClass,
  StunMethod,
} from '../../src/protocol/stun/message.ts';
import {
  encodeChannelData,
  FrameTooLarge,
  padForStream,
  TurnStreamDeframer,
} from '../../src/protocol/stun/turn.ts';

const hex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

// RFC 5769 §2.1: sample request (short-term credential).
const SAMPLE_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);

// RFC 5769 §2.2: sample IPv4 response.
const SAMPLE_RESPONSE = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);

const PASSWORD = new TextEncoder().encode('VOkJxbRl1RmTxUk/WvJxBt');

describe('STUN codec (RFC 8489) against RFC 5769 vectors', () => {
  it('decodes the sample request and keeps unknown attributes raw', () => {
    const message = decodeStun(SAMPLE_REQUEST);
    expect(message.method).toBe(StunMethod.binding);
    expect(message.cls).toBe(StunClass.request);
    expect(Buffer.from(message.transactionId).toString('hex')).toBe('b7e7a701bc34d686fa87dfae');
    expect(message.attributes.map((a) => a.type)).toEqual([0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    expect(new TextDecoder().decode(findAttribute(message, AttributeType.USERNAME)!.value)).toBe('evtj:h6vY');
    expect(verifyFingerprint(SAMPLE_REQUEST)).toBe(true);
    expect(verifyMessageIntegrity(SAMPLE_REQUEST, PASSWORD)).toBe(true);
    expect(verifyMessageIntegrity(SAMPLE_REQUEST, new TextEncoder().encode('wrong'))).toBe(false);
  });

  it('decodes the sample response XOR-MAPPED-ADDRESS as 192.0.2.1:32853', () => {
    const message = decodeStun(SAMPLE_RESPONSE);
    expect(message.cls).toBe(StunClass.success);
    const mapped = decodeXorAddress(findAttribute(message, AttributeType.XOR_MAPPED_ADDRESS)!.value);
    expect(mapped).toEqual({ address: '192.0.2.1', port: 32853 });
    expect(verifyFingerprint(SAMPLE_RESPONSE)).toBe(true);
    expect(verifyMessageIntegrity(SAMPLE_RESPONSE, PASSWORD)).toBe(true);
  });

  it('re-encodes the sample response byte for byte (integrity and fingerprint included)', () => {
    const message = decodeStun(SAMPLE_RESPONSE);
    const body = { ...message, attributes: message.attributes.slice(0, 2) };
    // The vector pads SOFTWARE with a space where we pad with zero; patch the pad byte to compare.
    const encoded = encodeStun(body);
    encoded[20 + 4 + 11] = 0x20;
    const full = addFingerprint(addMessageIntegrity(encoded, PASSWORD));
    expect(Buffer.from(full).toString('hex')).toBe(Buffer.from(SAMPLE_RESPONSE).toString('hex'));
  });

  it('flips a bit and the fingerprint no longer verifies', () => {
    const corrupted = SAMPLE_RESPONSE.slice();
    corrupted[30] = corrupted[30]! ^ 1;
    expect(verifyFingerprint(corrupted)).toBe(false);
  });

  it('round-trips the message type for every method and class', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xfff }), fc.constantFrom(0, 1, 2, 3), (method, cls) => {
        const decoded = decodeMessageType(encodeMessageType(method, cls as StunClass));
        expect(decoded).toEqual({ method, cls });
      }),
    );
  });
});

describe('STUN decode hostility', () => {
  it('rejects truncated, oversized and garbage input with DecodeError only', () => {
    expect(() => decodeStun(SAMPLE_REQUEST.subarray(0, 19))).toThrow(DecodeError);
    expect(() => decodeStun(SAMPLE_REQUEST.subarray(0, SAMPLE_REQUEST.byteLength - 4))).toThrow(DecodeError);
    const oversizedAttribute = SAMPLE_RESPONSE.slice();
    oversizedAttribute[23] = 0xff;
    expect(() => decodeStun(oversizedAttribute)).toThrow(DecodeError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeStun(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes random bytes behind a valid header with DecodeError or a message, never anything else', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 120 }).map((b) => b.subarray(0, b.byteLength & ~3)),
        (body) => {
          const bytes = new Uint8Array(20 + body.byteLength);
          bytes.set(SAMPLE_REQUEST.subarray(0, 20));
          new DataView(bytes.buffer).setUint16(2, body.byteLength);
          bytes.set(body, 20);
          expect(isStun(bytes)).toBe(true);
          try {
            decodeStun(bytes);
          } catch (error) {
            expect(error).toBeInstanceOf(DecodeError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('round-trips arbitrary messages: decode(encode(x)) equals x', () => {
    const attribute = fc.record({
      type: fc.integer({ min: 0, max: 0xffff }),
      value: fc.uint8Array({ maxLength: 40 }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xfff }),
        fc.constantFrom(0, 1, 2, 3),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.array(attribute, { maxLength: 6 }),
        (method, cls, transactionId, attributes) => {
          const message = { method, cls: cls as StunClass, transactionId, attributes };
          expect(decodeStun(encodeStun(message))).toEqual(message);
        },
      ),
    );
  });

  it('round-trips XOR addresses, CHANGE-REQUEST and ERROR-CODE', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 65535 }), (address, port) => {
        expect(decodeXorAddress(encodeXorAddress({ address, port }))).toEqual({ address, port });
      }),
    );
    for (const changeIp of [false, true]) {
      for (const changePort of [false, true]) {
        expect(decodeChangeRequest(encodeChangeRequest({ changeIp, changePort }))).toEqual({
          changeIp,
          changePort,
        });
      }
    }
    expect(decodeErrorCode(encodeErrorCode({ code: 420, reason: 'Unknown Attribute' }))).toEqual({
      code: 420,
      reason: 'Unknown Attribute',
    });
    expect(() => decodeErrorCode(new Uint8Array(3))).toThrow(DecodeError);
  });
});

describe('TURN stream framing (RFC 8656 §3.1, §12.5)', () => {
  const frames = (): Uint8Array[] => [
    encodeStun({
      method: StunMethod.binding,
      cls: StunClass.request,
      transactionId: new Uint8Array(12),
      attributes: [],
    }),
    encodeChannelData(0x4001, Uint8Array.of(1, 2, 3, 4, 5)),
    encodeChannelData(0x4002, new Uint8Array(0)),
    encodeChannelData(0x4003, Uint8Array.of(9)),
    encodeStun({
      method: StunMethod.binding,
      cls: StunClass.success,
      transactionId: new Uint8Array(12).fill(7),
      attributes: [{ type: AttributeType.SOFTWARE, value: new TextEncoder().encode('abcd') }],
    }),
  ];

  it('cuts STUN messages and padded ChannelData back out of a stream split at any points', () => {
    const sent = frames();
    const stream = Uint8Array.from(sent.flatMap((f) => [...padForStream(f)]));
    expect(stream.byteLength % 4).toBe(0);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: stream.byteLength - 1 }), { maxLength: 12 }),
        (cuts) => {
          const deframer = new TurnStreamDeframer(2048);
          const got: Uint8Array[] = [];
          let from = 0;
          for (const at of [...cuts.sort((a, b) => a - b), stream.byteLength]) {
            got.push(...deframer.push(stream.subarray(from, at)));
            from = at;
          }
          expect(got).toEqual(sent);
        },
      ),
    );
  });

  it('refuses a stream that is neither STUN nor ChannelData, and a frame over the limit', () => {
    expect(() => new TurnStreamDeframer(2048).push(Uint8Array.of(0x80, 0, 0, 0))).toThrow(DecodeError);
    expect(() => new TurnStreamDeframer(2048).push(Uint8Array.of(0x40, 0x01, 0x08, 0x00))).toThrow(
      FrameTooLarge,
    );
    // The limit is checked on the header alone, before the frame's bytes arrive.
    expect(() => new TurnStreamDeframer(100).push(Uint8Array.of(0x00, 0x01, 0x00, 0x60))).toThrow(
      FrameTooLarge,
    );
    expect(new TurnStreamDeframer(100).push(Uint8Array.of(0x00, 0x01, 0x00, 0x40))).toEqual([]);
  });
});
