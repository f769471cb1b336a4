import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { digestMatches, digestResponse } from '../../src/protocol/sip/digest.ts';
import { parseAuthParams, parseCSeq, parseNameAddr, uriUser } from '../../src/protocol/sip/headers.ts';
import {
  decodeSip,
  encodeSip,
  header,
  headers,
  MAX_BODY_BYTES,
  SipStreamParser,
} from '../../src/protocol/sip/message.ts';

const te = new TextEncoder();
const INVITE = [
  'INVITE sip:bob@sc2c.lab SIP/2.0',
  'Via: SIP/2.0/TCP 10.0.1.2:5060;branch=z9hG4bK776asdhds',
  'v: SIP/2.0/TCP proxy.sc2c.lab;branch=z9hG4bK1, SIP/2.0/TCP other;branch=z9hG4bK2',
  'Max-Forwards: 70',
  'To: Bob <sip:bob@sc2c.lab>',
  'From: "Alice, A." <sip:alice@sc2c.lab>;tag=1928301774',
  'i: a84b4c76e66710@10.0.1.2',
  'CSeq: 314159 INVITE',
  'Subject: folded',
  '  onto two lines',
  'Content-Type: application/sdp',
  'Content-Length: 4',
  '',
  'v=0\n',
].join('\r\n');

describe('SIP codec (RFC 3261 §7)', () => {
  it('decodes a request: compact names expanded, folded lines joined, lists split', () => {
    const m = decodeSip(te.encode(INVITE));
    expect(m).toMatchObject({ kind: 'request', method: 'INVITE', uri: 'sip:bob@sc2c.lab', body: 'v=0\n' });
    expect(header(m, 'call-id')).toBe('a84b4c76e66710@10.0.1.2');
    expect(header(m, 'Subject')).toBe('folded onto two lines');
    expect(headers(m, 'Via')).toHaveLength(3);
    expect(parseNameAddr(header(m, 'From')!)).toEqual({
      uri: 'sip:alice@sc2c.lab',
      params: { tag: '1928301774' },
    });
    expect(uriUser('sip:bob@sc2c.lab')).toBe('bob');
    expect(parseCSeq(header(m, 'CSeq')!)).toEqual({ seq: 314159, method: 'INVITE' });
  });

  it('round-trips: decode(encode(x)) equals x, Content-Length computed', () => {
    const m = decodeSip(te.encode(INVITE));
    const again = decodeSip(encodeSip(m));
    expect(again).toEqual({
      ...m,
      headers: [...m.headers.filter(([n]) => n !== 'Content-Length'), ['Content-Length', '4']],
    });
    const response = {
      kind: 'response' as const,
      status: 200,
      reason: 'OK',
      headers: [['CSeq', '1 REGISTER'] as const],
      body: '',
    };
    expect(decodeSip(encodeSip(response))).toEqual({
      ...response,
      headers: [...response.headers, ['Content-Length', '0']],
    });
  });

  it('frames a TCP stream: split anywhere, keepalives, several messages per chunk', () => {
    const bytes = te.encode(`\r\n\r\n${INVITE}\r\n${INVITE}`);
    for (const cut of [1, 3, 17, 200, bytes.byteLength - 1]) {
      const parser = new SipStreamParser();
      const events = [...parser.push(bytes.subarray(0, cut)), ...parser.push(bytes.subarray(cut))];
      expect(
        events.map((e) =>
          e.kind === 'keepalive'
            ? e.ping
              ? 'ping'
              : 'pong'
            : e.kind === 'message'
              ? e.message.kind
              : 'invalid',
        ),
      ).toEqual(['ping', 'request', 'pong', 'request']);
    }
  });

  it('does not mistake a ping split after its first CRLF for two pongs (server side)', () => {
    const parser = new SipStreamParser('server');
    expect(parser.push(te.encode('\r\n'))).toEqual([]);
    expect(parser.push(te.encode('\r\n'))).toEqual([{ kind: 'keepalive', ping: true }]);
    expect(new SipStreamParser('client').push(te.encode('\r\n'))).toEqual([
      { kind: 'keepalive', ping: false },
    ]);
  });

  it('frames in linear work however the stream is cut: a header trickled one byte at a time is scanned once', () => {
    // A 15 KiB header section (under the 16 KiB cap), delivered a byte per push as a slowloris would.
    const padding = `X-Padding: ${'a'.repeat(15_000)}\r\n`;
    const bytes = te.encode(INVITE.replace('Content-Length: 4\r\n', `${padding}Content-Length: 4\r\n`));
    const whole = new SipStreamParser();
    expect(whole.push(bytes)).toHaveLength(1);
    const trickled = new SipStreamParser();
    const events = [];
    for (let i = 0; i < bytes.byteLength; i++) events.push(...trickled.push(bytes.subarray(i, i + 1)));
    expect(events).toHaveLength(1);
    // Quadratic rescanning would examine about n^2/2 = 1.1e8 bytes here; linear framing examines each about once.
    expect(trickled.examined).toBeLessThanOrEqual(4 * bytes.byteLength);
    expect(whole.examined).toBeLessThanOrEqual(bytes.byteLength);
  });

  it('rejects truncated, oversized and garbage messages with DecodeError', () => {
    expect(() => decodeSip(te.encode(INVITE.slice(0, 60)))).toThrow(DecodeError);
    expect(() => decodeSip(te.encode(INVITE.replace('Content-Length: 4', 'Content-Length: 5')))).toThrow(
      /does not match/,
    );
    expect(() =>
      decodeSip(te.encode(INVITE.replace('Content-Length: 4', 'Content-Length: 99999999'))),
    ).toThrow(/exceeds/);
    // An oversized body loses the framing: the message is reported (to be answered 400), then the
    // stream is over.
    const oversized = new SipStreamParser();
    expect(
      oversized.push(te.encode(INVITE.replace('Content-Length: 4', `Content-Length: ${MAX_BODY_BYTES + 1}`))),
    ).toMatchObject([{ kind: 'invalid', invalid: { request: true, status: 400 } }]);
    expect(oversized.error).toBeInstanceOf(DecodeError);
    expect(() => oversized.push(te.encode('\r\n'))).toThrow(/exceeds/);
    expect(() => new SipStreamParser().push(new Uint8Array(20_000).fill(65))).toThrow(
      /header section exceeds/,
    );
    expect(() => decodeSip(te.encode('HELLO\r\n\r\n'))).toThrow(/bad start line/);
    expect(() => decodeSip(te.encode(INVITE.replace('Content-Length: 4\r\n', '')))).toThrow(
      /Content-Length is required/,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          new SipStreamParser().push(bytes);
          decodeSip(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses to encode a header value with a line break (header injection)', () => {
    expect(() =>
      encodeSip({
        kind: 'request',
        method: 'BYE',
        uri: 'sip:a@b',
        headers: [['X', 'a\r\nVia: evil']],
        body: '',
      }),
    ).toThrow(/line break/);
  });
});

describe('SIP digest authentication', () => {
  it('reproduces the RFC 2617 §3.5 example', () => {
    const input = {
      algorithm: 'MD5' as const,
      username: 'Mufasa',
      realm: 'testrealm@host.com',
      password: 'Circle Of Life',
      method: 'GET',
      uri: '/dir/index.html',
      nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093',
      qop: 'auth' as const,
      nc: '00000001',
      cnonce: '0a4f113b',
    };
    expect(digestResponse(input)).toBe('6629fae49393a05397450978507c4ef1');
    expect(digestMatches(input, '6629fae49393a05397450978507c4ef1')).toBe(true);
    expect(digestMatches({ ...input, password: 'wrong' }, '6629fae49393a05397450978507c4ef1')).toBe(false);
  });

  it('parses authentication parameters, quoted or not', () => {
    expect(parseAuthParams('Digest realm="sc2c", nonce="a,b", algorithm=SHA-256, qop="auth"')).toEqual({
      scheme: 'Digest',
      params: { realm: 'sc2c', nonce: 'a,b', algorithm: 'SHA-256', qop: 'auth' },
    });
  });
});
