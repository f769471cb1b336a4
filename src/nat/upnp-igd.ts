/**
 * The UPnP IGD of the NAT model (issue 20, `+upnp`): what a home router's UPnP daemon answers on
 * its LAN side, over the model's lease table (`Nat.lease`), as WANIPConnection v1:
 * - SSDP: an M-SEARCH for the IGD (or ssdp:all) to 239.255.255.250:1900 or the router's own
 *   address gets a 200 with LOCATION;
 * - HTTP on `IGD_HTTP_PORT`: the device description, and SOAP on the control URL:
 *   GetExternalIPAddress, AddPortMapping (secure mode: only for the sender's own address; a port
 *   another client holds is ConflictInMappingEntry, 718), DeletePortMapping.
 * It runs on a virtual host stack that answers at the router's inside address (the NAT router
 * hands it what is addressed there); requests are bounded (protocol/portmap/upnp.ts).
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, StreamConnection } from '../net/types.ts';
import {
  decodeHttpRequest,
  encodeHttpResponse,
  encodeSoapFault,
  encodeSoapResponse,
  type HttpRequest,
  MAX_HTTP_BYTES,
  SSDP_PORT,
  soapActionOf,
  soapArguments,
  UpnpError,
} from '../protocol/portmap/upnp.ts';
import type { Nat } from './nat.ts';
import { MAX_LEASE_S } from './port-mapping-server.ts';

export const IGD_HTTP_PORT = 5000;
const SERVICE = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const CONTROL_PATH = '/ctl/IPConn';

export interface IgdComponents {
  /** The stack at the router's inside address. */
  readonly network: Network;
  readonly clock: Clock;
  readonly nat: Nat;
}

/** Starts the SSDP responder and the HTTP server; `close()` stops both. */
export async function startIgd(c: IgdComponents, insideAddress: string): Promise<{ close(): void }> {
  const ssdp = await c.network.bindUdp({ port: SSDP_PORT });
  ssdp.on('message', (data, from) => {
    if (data.byteLength > 2048) return;
    const text = new TextDecoder().decode(data);
    if (!text.startsWith('M-SEARCH * HTTP/1.1\r\n')) return;
    const st = /\r\nST:\s*([^\r\n]+)/i.exec(text)?.[1]?.trim();
    if (st !== 'ssdp:all' && st !== 'urn:schemas-upnp-org:device:InternetGatewayDevice:1') return;
    ssdp.send(
      new TextEncoder().encode(
        `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:5c2c0000-0000-4000-8000-000000000020::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: sc2c-model UPnP/1.1 IGD/1.0\r\nLOCATION: http://${insideAddress}:${IGD_HTTP_PORT}/rootDesc.xml\r\n\r\n`,
      ),
      from,
    );
  });
  const http = await c.network.listen({ port: IGD_HTTP_PORT });
  http.on('connection', (connection) => serve(c, connection));
  return {
    close: () => {
      ssdp.close();
      http.close();
    },
  };
}

function serve(c: IgdComponents, connection: StreamConnection): void {
  let buffered = new Uint8Array(0);
  let done = false;
  // An idle or trickling client is dropped: 5 s for the whole request.
  const timer = c.clock.setTimeout(() => connection.close(), 5000);
  connection.on('close', () => timer.clear());
  connection.on('data', (chunk) => {
    if (done) return;
    const next = new Uint8Array(buffered.byteLength + chunk.byteLength);
    next.set(buffered, 0);
    next.set(chunk, buffered.byteLength);
    buffered = next;
    let request: HttpRequest | undefined;
    try {
      if (buffered.byteLength > MAX_HTTP_BYTES) throw new Error('too large');
      request = decodeHttpRequest(buffered);
    } catch {
      done = true;
      connection.write(encodeHttpResponse(400, 'Bad Request', 'text/plain', ''));
      connection.close();
      return;
    }
    if (!request) return;
    done = true;
    connection.write(answer(c, request, connection.remote));
    connection.close();
  });
}

function answer(c: IgdComponents, request: HttpRequest, from: Endpoint): Uint8Array {
  if (request.method === 'GET' && request.path === '/rootDesc.xml')
    return encodeHttpResponse(200, 'OK', 'text/xml; charset="utf-8"', DESCRIPTION);
  if (request.method !== 'POST' || request.path !== CONTROL_PATH)
    return encodeHttpResponse(404, 'Not Found', 'text/plain', '');
  const soap = soapActionOf(request);
  if (!soap || soap.serviceType !== SERVICE) return fault(401, 'Invalid Action');
  const now = c.clock.now();
  switch (soap.action) {
    case 'GetExternalIPAddress':
      return ok(soap.action, [['NewExternalIPAddress', c.nat.publicAddress]]);
    case 'AddPortMapping': {
      const args = soapArguments(request.body, [
        'NewExternalPort',
        'NewProtocol',
        'NewInternalPort',
        'NewInternalClient',
        'NewLeaseDuration',
      ]);
      const externalPort = Number(args.get('NewExternalPort'));
      const internalPort = Number(args.get('NewInternalPort'));
      const lease = Number(args.get('NewLeaseDuration') ?? '0');
      if (
        args.get('NewProtocol') !== 'UDP' ||
        !validPort(externalPort) ||
        !validPort(internalPort) ||
        !Number.isInteger(lease) ||
        lease < 0
      )
        return fault(UpnpError.invalidArgs, 'Invalid Args');
      // Secure mode, as miniupnpd's: a client maps only to itself.
      if (args.get('NewInternalClient') !== from.address)
        return fault(UpnpError.actionNotAuthorized, 'Action not authorized');
      const internal = { address: from.address, port: internalPort };
      const holder = c.nat.leases(now).find((l) => l.external.port === externalPort);
      if (holder && (holder.internal.address !== internal.address || holder.internal.port !== internal.port))
        return fault(UpnpError.conflictInMappingEntry, 'ConflictInMappingEntry');
      // 0 means permanent; the model keeps it a day, the longest lease it grants.
      const lifetimeS = lease === 0 ? MAX_LEASE_S : Math.min(lease, MAX_LEASE_S);
      const granted = c.nat.lease('udp', internal, externalPort, lifetimeS * 1000, now);
      if (!granted) return fault(728, 'NoPortMapsAvailable');
      if (granted.externalPort !== externalPort) {
        // The port is taken by an ordinary session: not what was asked for.
        c.nat.lease('udp', internal, 0, 0, now);
        return fault(UpnpError.conflictInMappingEntry, 'ConflictInMappingEntry');
      }
      return ok(soap.action, []);
    }
    case 'DeletePortMapping': {
      const args = soapArguments(request.body, ['NewExternalPort', 'NewProtocol']);
      const externalPort = Number(args.get('NewExternalPort'));
      const held = c.nat.leases(now).find((l) => l.external.port === externalPort);
      if (!held || args.get('NewProtocol') !== 'UDP') return fault(714, 'NoSuchEntryInArray');
      if (held.internal.address !== from.address)
        return fault(UpnpError.actionNotAuthorized, 'Action not authorized');
      c.nat.lease('udp', held.internal, 0, 0, now);
      return ok(soap.action, []);
    }
    default:
      return fault(401, 'Invalid Action');
  }
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65_535;
}

function ok(action: string, outputs: readonly [string, string | number][]): Uint8Array {
  return encodeHttpResponse(
    200,
    'OK',
    'text/xml; charset="utf-8"',
    encodeSoapResponse(SERVICE, action, outputs),
  );
}

function fault(code: number, description: string): Uint8Array {
  return encodeHttpResponse(
    500,
    'Internal Server Error',
    'text/xml; charset="utf-8"',
    encodeSoapFault(code, description),
  );
}

const DESCRIPTION = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>sc2c NAT model</friendlyName>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>${SERVICE}</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>${CONTROL_PATH}</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>
`;
