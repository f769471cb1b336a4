/** The NAT model's UPnP IGD (+upnp) refuses what miniupnpd's secure mode refuses. */
import { describe, expect, it } from 'vitest';
import { IGD_HTTP_PORT } from '../../src/nat/upnp-igd.ts';
import {
  decodeHttpResponse,
  decodeSoapResponse,
  encodeHttpRequest,
  encodeSoapAction,
} from '../../src/protocol/portmap/upnp.ts';
import { profiles, world } from '../net/world.ts';

const SERVICE = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const CONTROL = { host: '10.0.1.1', port: IGD_HTTP_PORT, path: '/ctl/IPConn' };

async function soap(w: ReturnType<typeof world>, action: string, args: [string, string | number][]) {
  const connection = await w.clock.run(w.alice.connect({ address: CONTROL.host, port: CONTROL.port }));
  const chunks: Uint8Array[] = [];
  connection.on('data', (d) => chunks.push(d));
  const { body, soapAction } = encodeSoapAction(SERVICE, action, args);
  connection.write(encodeHttpRequest('POST', CONTROL, [['SOAPAction', soapAction]], body));
  await w.clock.advance(50);
  const all = Buffer.concat(chunks);
  return decodeSoapResponse(decodeHttpResponse(new Uint8Array(all), true)!, []);
}

const add = (client: string, externalPort: number): [string, string | number][] => [
  ['NewRemoteHost', ''],
  ['NewExternalPort', externalPort],
  ['NewProtocol', 'UDP'],
  ['NewInternalPort', 40_000],
  ['NewInternalClient', client],
  ['NewEnabled', 1],
  ['NewPortMappingDescription', 'x'],
  ['NewLeaseDuration', 60],
];

describe('NAT model UPnP IGD', () => {
  it('maps only for the sender, and deletes only the sender’s own mappings', async () => {
    const w = world({ natA: profiles.resolve('symmetric-seq1+upnp') });
    // alice asks for a mapping to alice2: refused, nothing leased.
    expect(await soap(w, 'AddPortMapping', add('10.0.1.3', 41_000))).toMatchObject({
      ok: false,
      errorCode: 606,
    });
    expect(w.natA.nat.leases(w.clock.now())).toEqual([]);
    // alice2's own lease cannot be deleted (nor taken over) by alice.
    w.natA.nat.lease('udp', { address: '10.0.1.3', port: 40_000 }, 42_000, 60_000, w.clock.now());
    const del = await soap(w, 'DeletePortMapping', [
      ['NewRemoteHost', ''],
      ['NewExternalPort', 42_000],
      ['NewProtocol', 'UDP'],
    ]);
    expect(del).toMatchObject({ ok: false, errorCode: 606 });
    expect(await soap(w, 'AddPortMapping', add('10.0.1.2', 42_000))).toMatchObject({
      ok: false,
      errorCode: 718,
    });
    expect(w.natA.nat.leases(w.clock.now()).map((l) => l.internal.address)).toEqual(['10.0.1.3']);
    // Its own: granted.
    expect(await soap(w, 'AddPortMapping', add('10.0.1.2', 41_000))).toMatchObject({ ok: true });
    expect(
      w.natA.nat
        .leases(w.clock.now())
        .map((l) => l.external.port)
        .sort(),
    ).toEqual([41_000, 42_000]);
  });
});
