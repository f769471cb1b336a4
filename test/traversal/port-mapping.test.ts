/**
 * The port-mapping client (issue 20) against small PCP / NAT-PMP gateways written with the codecs,
 * on the virtual network: PCP first, NAT-PMP when the gateway speaks only that, bounded silence,
 * answers that do not match ignored, and a delete that repeats the nonce.
 */
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/net/clock.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { decodeNatPmpRequest, encodeNatPmpResponse, NATPMP_PORT } from '../../src/protocol/portmap/natpmp.ts';
import { decodePcpRequest, encodePcpResponse, isPcp, PcpResult } from '../../src/protocol/portmap/pcp.ts';
import { releasePortMapping, requestPortMapping } from '../../src/traversal/port-mapping.ts';

type Mode = 'pcp' | 'nat-pmp' | 'silent' | 'wrong-nonce' | 'refuse';

async function lan(mode: Mode) {
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: 3 });
  const router = net.addRouter('lan', { addresses: ['10.0.1.254'] });
  const cam = net.addHost('cam', { addresses: ['10.0.1.2'] });
  const gw = net.addHost('gw', { addresses: ['10.0.1.1'] });
  net.connect(cam, router, { latencyMs: 1 });
  net.connect(gw, router, { latencyMs: 1 });
  const server = await gw.bindUdp({ port: NATPMP_PORT });
  const seen: { protocol: string; lifetimeS: number; nonce?: string }[] = [];
  server.on('message', (data, from) => {
    if (mode === 'silent') return;
    if (isPcp(data)) {
      if (mode === 'nat-pmp') {
        // RFC 6887 §9: a NAT-PMP server answers version 2 with its own "unsupported version".
        server.send(Uint8Array.of(0, 129, 0, 1, 0, 0, 0, 9), from);
        return;
      }
      const request = decodePcpRequest(data);
      seen.push({
        protocol: 'pcp',
        lifetimeS: request.lifetimeS,
        nonce: Buffer.from(request.map!.nonce).toString('hex'),
      });
      const map = {
        ...request.map!,
        nonce: mode === 'wrong-nonce' ? new Uint8Array(12) : request.map!.nonce,
        externalPort: 61_000,
        externalAddress: '198.18.9.1',
      };
      server.send(
        encodePcpResponse({
          opcode: request.opcode,
          resultCode: mode === 'refuse' ? PcpResult.notAuthorized : PcpResult.success,
          lifetimeS: Math.min(request.lifetimeS, 3600),
          epochS: 100,
          map,
          options: [],
        }),
        from,
      );
      return;
    }
    const request = decodeNatPmpRequest(data);
    if (request.kind === 'external-address') {
      server.send(
        encodeNatPmpResponse({
          kind: 'external-address',
          resultCode: 0,
          epochS: 50,
          externalAddress: '198.18.9.1',
        }),
        from,
      );
      return;
    }
    seen.push({ protocol: 'nat-pmp', lifetimeS: request.lifetimeS });
    server.send(
      encodeNatPmpResponse({
        kind: 'map',
        protocol: 'udp',
        resultCode: 0,
        epochS: 50,
        internalPort: request.internalPort,
        externalPort: 62_000,
        lifetimeS: Math.min(request.lifetimeS, 3600),
      }),
      from,
    );
  });
  const c = { network: cam, clock };
  const init = { gateway: '10.0.1.1', clientAddress: '10.0.1.2', internalPort: 40_000 };
  return { clock, c, init, seen, close: () => server.close() };
}

describe('port mapping client (PCP, then NAT-PMP)', () => {
  it('takes a PCP grant, capped lifetime and all, and deletes it with the same nonce', async () => {
    const s = await lan('pcp');
    const result = await s.clock.run(requestPortMapping(s.c, { ...s.init, lifetimeS: 10 ** 9 }));
    expect(result).toMatchObject({
      ok: true,
      mapping: {
        protocol: 'pcp',
        externalAddress: '198.18.9.1',
        externalPort: 61_000,
        internalPort: 40_000,
        lifetimeS: 3600,
        epochS: 100,
      },
    });
    expect(s.seen[0]!.lifetimeS).toBe(86_400); // asked for at most a day
    if (!result.ok) throw new Error(result.reason);
    await s.clock.run(releasePortMapping(s.c, result.mapping, s.init));
    expect(s.seen[1]).toEqual({ protocol: 'pcp', lifetimeS: 0, nonce: s.seen[0]!.nonce });
    s.close();
  });

  it('moves to NAT-PMP at once when the gateway answers PCP with its own unsupported version', async () => {
    const s = await lan('nat-pmp');
    const started = s.clock.now();
    const result = await s.clock.run(requestPortMapping(s.c, s.init));
    expect(result).toMatchObject({
      ok: true,
      mapping: { protocol: 'nat-pmp', externalAddress: '198.18.9.1', externalPort: 62_000 },
    });
    // No PCP retransmissions were waited out: a few round trips on a 2 ms LAN.
    expect(s.clock.now() - started).toBeLessThan(250);
    s.close();
  });

  it('gives up on a silent gateway after its bounded tries, saying why', async () => {
    const s = await lan('silent');
    const result = await s.clock.run(requestPortMapping(s.c, s.init));
    expect(result).toEqual({
      ok: false,
      reason:
        'PCP: no answer from 10.0.1.1:5351; NAT-PMP: no answer from 10.0.1.1:5351; UPnP: no answer to SSDP from 10.0.1.1',
    });
    // 250 + 500 + 1000 ms per protocol.
    expect(s.clock.now()).toBe(3 * 1750);
    s.close();
  });

  it('ignores a PCP answer that does not echo our nonce, and reports a refusal by name', async () => {
    const wrong = await lan('wrong-nonce');
    const ignored = await wrong.clock.run(requestPortMapping(wrong.c, { ...wrong.init, protocols: ['pcp'] }));
    expect(ignored).toEqual({ ok: false, reason: 'PCP: no answer from 10.0.1.1:5351' });
    wrong.close();
    const refusing = await lan('refuse');
    const refused = await refusing.clock.run(
      requestPortMapping(refusing.c, { ...refusing.init, protocols: ['pcp'] }),
    );
    expect(refused).toEqual({ ok: false, reason: 'PCP: notAuthorized (2)' });
    refusing.close();
  });
});
