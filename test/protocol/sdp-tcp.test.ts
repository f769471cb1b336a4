/** Issue 21's SDP: the RFC 6544 simultaneous-open candidate and the x-sc2c TCP attributes. */
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import { type CallDescription, decodeSdp, encodeSdp } from '../../src/protocol/sdp.ts';

const base: CallDescription = {
  publicEndpoint: { address: '198.18.1.1', port: 20_000 },
  ufrag: 'abcd',
  pwd: 'a'.repeat(24),
  nat: 'symmetric',
  mode: 'sc2c',
  portSource: 'predicted',
  rtcpMux: true,
};

describe('SDP for a TCP direct path', () => {
  it('carries the TCP candidate as tcptype so, the UDP block and a TCP-only request, and reads them back', () => {
    const text = encodeSdp(
      {
        ...base,
        tcp: { endpoint: { address: '198.18.1.1', port: 20_007 }, source: 'predicted' },
        udpBlocked: true,
        transport: 'tcp',
      },
      1,
    );
    expect(text).toMatch(/a=candidate:4 1 TCP \d+ 198\.18\.1\.1 20007 typ srflx tcptype so\r\n/);
    expect(text).toContain('a=x-sc2c-tcp:predicted');
    expect(text).toContain('a=x-sc2c-udp:blocked');
    expect(text).toContain('a=x-sc2c-transport:tcp');
    const back = decodeSdp(text);
    expect(back.tcp).toEqual({ endpoint: { address: '198.18.1.1', port: 20_007 }, source: 'predicted' });
    expect(back.udpBlocked).toBe(true);
    expect(back.transport).toBe('tcp');
    // The UDP candidates are unchanged beside it.
    expect(back.publicEndpoint).toEqual(base.publicEndpoint);
  });

  it('leaves all three out of a UDP offer', () => {
    const back = decodeSdp(encodeSdp(base, 1));
    expect(back.tcp).toBeUndefined();
    expect(back.udpBlocked).toBeUndefined();
    expect(back.transport).toBeUndefined();
  });

  it('ignores TCP candidates that are not simultaneous-open, and refuses unknown values', () => {
    const text = encodeSdp(base, 1).replace(
      'a=candidate:1',
      'a=candidate:9 1 TCP 100 198.18.1.1 9 typ srflx tcptype passive\r\na=candidate:1',
    );
    expect(decodeSdp(text).tcp).toBeUndefined();
    const withAttr = (line: string) =>
      encodeSdp(base, 1).replace('a=x-sc2c-mode', `${line}\r\na=x-sc2c-mode`);
    expect(() => decodeSdp(withAttr('a=x-sc2c-tcp:guessed'))).toThrow(DecodeError);
    expect(() => decodeSdp(withAttr('a=x-sc2c-transport:sctp'))).toThrow(DecodeError);
  });
});
