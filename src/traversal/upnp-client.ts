/**
 * UPnP IGD port mapping (issue 20), the third protocol after PCP and NAT-PMP: SSDP search for the
 * router's InternetGatewayDevice (to the router's own address, and to the SSDP multicast group),
 * its description over HTTP, then SOAP on its WANIPConnection service: GetExternalIPAddress and
 * AddPortMapping (AddAnyPortMapping on v2 when the port is taken), DeletePortMapping to release.
 *
 * libp2p's `@achingbrain/nat-port-mapper` was evaluated first: it opens real sockets of its own
 * (dgram and http) where everything here runs on the injected `Network`, so the same client runs
 * on the virtual network and in the lab; so this one is ours, small and bounded. Only a device at
 * the router's own address is believed: answers from elsewhere, and descriptions or control URLs
 * naming another host, are refused (a LAN host must not be able to steer our mappings).
 */
import type { Clock } from '../net/clock.ts';
import type { Network, StreamConnection } from '../net/types.ts';
import {
  decodeHttpResponse,
  decodeSoapResponse,
  decodeSsdpResponse,
  encodeHttpRequest,
  encodeMSearch,
  encodeSoapAction,
  findWanIpService,
  type HttpResponse,
  type HttpUrl,
  type SoapResult,
  SSDP_MULTICAST,
  SSDP_PORT,
  UpnpError,
} from '../protocol/portmap/upnp.ts';
import { exchange } from './exchange.ts';
import type { PortMapping, PortMappingResult } from './port-mapping.ts';

export interface UpnpComponents {
  readonly network: Network;
  readonly clock: Clock;
}

export interface UpnpInit {
  readonly gateway: string;
  readonly clientAddress: string;
  readonly internalPort: number;
  /** 0 deletes (`control` and `externalPort` must then be given). */
  readonly lifetimeS: number;
  readonly suggestedExternalPort?: number;
  readonly rtoMs?: number;
  readonly attempts?: number;
  readonly signal?: AbortSignal;
}

/** Where a granted mapping's service lives: a renewal re-discovers it (the router may have restarted). */
export interface UpnpService {
  readonly serviceType: string;
  readonly control: HttpUrl;
}

/** An HTTP exchange: one request, one response, at most this long. */
const HTTP_TIMEOUT_MS = 3000;
/** Other ports tried when the one asked for is taken and the service has no AddAnyPortMapping. */
const CONFLICT_RETRIES = 3;

export async function askUpnp(c: UpnpComponents, init: UpnpInit): Promise<PortMappingResult> {
  let service: UpnpService;
  try {
    const found = await discover(c, init);
    if (!found) return { ok: false, reason: `UPnP: no answer to SSDP from ${init.gateway}` };
    service = found;
  } catch (error) {
    return { ok: false, reason: `UPnP: ${(error as Error).message}` };
  }
  try {
    const address = await soap(c, service, 'GetExternalIPAddress', [], ['NewExternalIPAddress'], init.signal);
    if (!address.ok)
      return {
        ok: false,
        reason: `UPnP: GetExternalIPAddress: ${address.description} (${address.errorCode})`,
      };
    const externalAddress = address.values.get('NewExternalIPAddress') ?? '';
    const lifetimeS = Math.max(0, Math.floor(init.lifetimeS));
    const ports = [init.suggestedExternalPort || init.internalPort, ...conflictPorts(init.internalPort)];
    let last = '';
    for (const externalPort of ports) {
      const added = await addMapping(c, service, init, externalPort, lifetimeS);
      if (added.ok) {
        const mapping: PortMapping = {
          protocol: 'upnp',
          externalAddress,
          externalPort: added.externalPort,
          internalPort: init.internalPort,
          lifetimeS: added.lifetimeS,
          grantedAtMs: c.clock.now(),
          upnp: service,
        };
        return { ok: true, mapping };
      }
      last = added.reason;
      if (!added.conflict || init.signal?.aborted) break;
    }
    return { ok: false, reason: `UPnP: AddPortMapping: ${last}` };
  } catch (error) {
    return { ok: false, reason: `UPnP: ${(error as Error).message}` };
  }
}

/** DeletePortMapping for a grant, at its service (or at the one discovery finds now). */
export async function deleteUpnp(
  c: UpnpComponents,
  mapping: PortMapping,
  init: Omit<UpnpInit, 'internalPort' | 'lifetimeS'>,
): Promise<PortMappingResult> {
  try {
    const service = mapping.upnp ?? (await discover(c, init));
    if (!service) return { ok: false, reason: `UPnP: no answer to SSDP from ${init.gateway}` };
    const result = await soap(
      c,
      service,
      'DeletePortMapping',
      [
        ['NewRemoteHost', ''],
        ['NewExternalPort', mapping.externalPort],
        ['NewProtocol', 'UDP'],
      ],
      [],
      init.signal,
    );
    if (!result.ok)
      return { ok: false, reason: `UPnP: DeletePortMapping: ${result.description} (${result.errorCode})` };
    return { ok: true, mapping: { ...mapping, lifetimeS: 0 } };
  } catch (error) {
    return { ok: false, reason: `UPnP: ${(error as Error).message}` };
  }
}

/**
 * Other external ports to try when ours is taken: spread over the dynamic range (49152-65535) by
 * the internal port, so two of our leases do not chase the same ones, and the same run after run
 * (no global randomness: a simulation's trace stays reproducible).
 */
export function conflictPorts(internalPort: number): number[] {
  return Array.from(
    { length: CONFLICT_RETRIES },
    (_, i) => 49_152 + ((internalPort * 7919 + (i + 1) * 104_729) % 16_384),
  );
}

async function addMapping(
  c: UpnpComponents,
  service: UpnpService,
  init: UpnpInit,
  externalPort: number,
  lifetimeS: number,
): Promise<
  { ok: true; externalPort: number; lifetimeS: number } | { ok: false; reason: string; conflict: boolean }
> {
  const args = (lease: number): [string, string | number][] => [
    ['NewRemoteHost', ''],
    ['NewExternalPort', externalPort],
    ['NewProtocol', 'UDP'],
    ['NewInternalPort', init.internalPort],
    ['NewInternalClient', init.clientAddress],
    ['NewEnabled', 1],
    ['NewPortMappingDescription', `sc2c ${init.internalPort}`],
    ['NewLeaseDuration', lease],
  ];
  let result = await soap(c, service, 'AddPortMapping', args(lifetimeS), [], init.signal);
  let granted = lifetimeS;
  // IGD v1 routers may only keep permanent leases: ask for one, and delete it ourselves.
  if (!result.ok && result.errorCode === UpnpError.onlyPermanentLeasesSupported) {
    result = await soap(c, service, 'AddPortMapping', args(0), [], init.signal);
    granted = lifetimeS;
  }
  if (result.ok) return { ok: true, externalPort, lifetimeS: granted };
  const conflict = result.errorCode === UpnpError.conflictInMappingEntry;
  if (conflict && service.serviceType.endsWith(':2')) {
    const any = await soap(
      c,
      service,
      'AddAnyPortMapping',
      args(lifetimeS),
      ['NewReservedPort'],
      init.signal,
    );
    const reserved = Number(any.ok ? any.values.get('NewReservedPort') : Number.NaN);
    if (any.ok && Number.isInteger(reserved) && reserved > 0 && reserved < 65_536)
      return { ok: true, externalPort: reserved, lifetimeS };
  }
  return { ok: false, reason: `${result.description} (${result.errorCode})`, conflict };
}

/** SSDP to the router (unicast, and the multicast group), then its description. */
async function discover(
  c: UpnpComponents,
  init: Pick<UpnpInit, 'gateway' | 'rtoMs' | 'attempts' | 'signal'>,
): Promise<UpnpService | undefined> {
  const socket = await c.network.bindUdp();
  const search = encodeMSearch();
  let got: Awaited<ReturnType<typeof exchange<HttpUrl>>>;
  try {
    got = await exchange(
      c.clock,
      socket,
      () => {
        socket.send(search, { address: init.gateway, port: SSDP_PORT });
        socket.send(search, { address: SSDP_MULTICAST, port: SSDP_PORT });
      },
      // Only the router itself: another host answering SSDP must not steer our mappings.
      (from) => from.address === init.gateway,
      init,
      (data) => {
        try {
          const answer = decodeSsdpResponse(data);
          return answer.location.host === init.gateway ? answer.location : undefined;
        } catch {
          return undefined;
        }
      },
    );
  } finally {
    socket.close();
  }
  if ('silent' in got) return undefined;
  const location = got.answer;
  const description = await http(c, location, encodeHttpRequest('GET', location), init.signal);
  if (description.status !== 200) throw new Error(`device description: HTTP ${description.status}`);
  return findWanIpService(description.body, location);
}

function soap(
  c: UpnpComponents,
  service: UpnpService,
  action: string,
  args: readonly [string, string | number][],
  outputs: readonly string[],
  signal?: AbortSignal,
): Promise<SoapResult> {
  const { body, soapAction } = encodeSoapAction(service.serviceType, action, args);
  const request = encodeHttpRequest(
    'POST',
    service.control,
    [
      ['Content-Type', 'text/xml; charset="utf-8"'],
      ['SOAPAction', soapAction],
    ],
    body,
  );
  return http(c, service.control, request, signal).then((response) => decodeSoapResponse(response, outputs));
}

/** One request on its own connection; the whole response, within `HTTP_TIMEOUT_MS`. */
async function http(
  c: UpnpComponents,
  url: HttpUrl,
  request: Uint8Array,
  signal?: AbortSignal,
): Promise<HttpResponse> {
  const timeout = new AbortController();
  const timer = c.clock.setTimeout(() => timeout.abort(), HTTP_TIMEOUT_MS);
  const abort = signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal;
  let connection: StreamConnection | undefined;
  try {
    connection = await c.network.connect({ address: url.host, port: url.port }, { signal: abort });
    const open = connection;
    return await new Promise<HttpResponse>((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      const take = (ended: boolean): void => {
        const all = new Uint8Array(size);
        let at = 0;
        for (const chunk of chunks) {
          all.set(chunk, at);
          at += chunk.byteLength;
        }
        try {
          const response = decodeHttpResponse(all, ended);
          if (response) resolve(response);
          else if (ended) reject(new Error(`HTTP ${url.host}:${url.port}: no response`));
        } catch (error) {
          reject(error);
        }
      };
      open.on('data', (chunk) => {
        chunks.push(chunk);
        size += chunk.byteLength;
        take(false);
      });
      open.on('close', () => take(true));
      abort.addEventListener(
        'abort',
        () => reject(new Error(`HTTP ${url.host}:${url.port}: no response in ${HTTP_TIMEOUT_MS} ms`)),
        { once: true },
      );
      open.write(request);
    });
  } finally {
    timer.clear();
    connection?.close();
  }
}
