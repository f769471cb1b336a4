import { describe, expect, it } from 'vitest';
import { parseDefaultRoute } from '../../src/net/default-route.ts';

const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT';

describe('parseDefaultRoute (/proc/net/route)', () => {
  it('reads the default route through a router, little-endian hex', () => {
    const table = [
      HEADER,
      'eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      'eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    ].join('\n');
    expect(parseDefaultRoute(table)).toEqual({ gateway: '10.0.2.1', interface: 'eth0' });
  });

  it('skips a default route with no router (point-to-point) or one that is down, and garbage', () => {
    const table = [
      HEADER,
      'tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0',
      'eth1\t00000000\t0101A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0',
      'eth2\t00000000\tZZZZZZZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'short line',
    ].join('\n');
    expect(parseDefaultRoute(table)).toBeUndefined();
    expect(parseDefaultRoute('')).toBeUndefined();
  });
});
