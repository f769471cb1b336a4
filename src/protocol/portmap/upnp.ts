/**
 * UPnP IGD port mapping, the wire side (issue 20): SSDP discovery (UPnP Device Architecture 1.1
 * §1.3: an M-SEARCH over UDP, an HTTP-formatted answer naming the device description's LOCATION),
 * the description (XML naming the WANIPConnection service and its control URL), and SOAP 1.1
 * actions on that service (AddPortMapping, DeletePortMapping, GetExternalIPAddress; WANIPConnection
 * v1 and v2). Pure and bounded: every input is hostile, every size is capped, and the XML is read
 * with patterns for the few elements we need, never parsed into a tree.
 */
import { isIpv4 } from '../../net/address.ts';
import { DecodeError } from '../decode-error.ts';

export const SSDP_PORT = 1900;
export const SSDP_MULTICAST = '239.255.255.250';
/** What we search for: the IGD (v1 answers v2 searches poorly; v1 is what every IGD answers). */
export const IGD_SEARCH_TARGET = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
export const WANIP_SERVICES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
] as const;
/** An SSDP answer, an HTTP header block, a description or a SOAP answer: none is larger in practice. */
export const MAX_SSDP_BYTES = 2048;
export const MAX_HTTP_BYTES = 65_536;

/** UPnP IGD error codes a client acts on (WANIPConnection v2 §2.4.16). */
export const UpnpError = {
  conflictInMappingEntry: 718,
  onlyPermanentLeasesSupported: 725,
  invalidArgs: 402,
  actionNotAuthorized: 606,
} as const;

export function encodeMSearch(mxS = 1): Uint8Array {
  return new TextEncoder().encode(
    `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_MULTICAST}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: ${mxS}\r\nST: ${IGD_SEARCH_TARGET}\r\n\r\n`,
  );
}

export interface HttpUrl {
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

/** `http://a.b.c.d[:port]/path` only: a LAN device named by address; anything else is refused. */
export function parseHttpUrl(text: string, where: string): HttpUrl {
  const m = /^http:\/\/(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?(\/[\x21-\x7e]*)?$/.exec(text.trim());
  if (!m || !isIpv4(m[1]!)) throw new DecodeError('upnp', 0, `${where}: not an http://<IPv4>/ URL`);
  const port = m[2] === undefined ? 80 : Number(m[2]);
  if (port < 1 || port > 65_535) throw new DecodeError('upnp', 0, `${where}: bad port`);
  return { host: m[1]!, port, path: m[3] ?? '/' };
}

/** An SSDP search answer: `HTTP/1.1 200 OK` with LOCATION (and ST). */
export function decodeSsdpResponse(bytes: Uint8Array): { location: HttpUrl; searchTarget: string } {
  if (bytes.byteLength > MAX_SSDP_BYTES) throw new DecodeError('ssdp', 0, 'answer too large');
  const text = new TextDecoder().decode(bytes);
  const lines = text.split('\r\n');
  if (!/^HTTP\/1\.[01] 200\b/.test(lines[0] ?? '')) throw new DecodeError('ssdp', 0, 'not a 200 answer');
  const headers = headerMap(lines.slice(1));
  const location = headers.get('location');
  if (!location) throw new DecodeError('ssdp', 0, 'no LOCATION');
  return { location: parseHttpUrl(location, 'LOCATION'), searchTarget: headers.get('st') ?? '' };
}

function headerMap(lines: readonly string[]): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of lines) {
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/**
 * An HTTP/1.1 request with `Connection: close` (one request per connection, as UPnP control
 * points do with small devices).
 */
export function encodeHttpRequest(
  method: 'GET' | 'POST',
  url: HttpUrl,
  headers: readonly [string, string][] = [],
  body = '',
): Uint8Array {
  const payload = new TextEncoder().encode(body);
  const head = [
    `${method} ${url.path} HTTP/1.1`,
    `HOST: ${url.host}:${url.port}`,
    'Connection: close',
    ...headers.map(([k, v]) => `${k}: ${v}`),
    ...(method === 'POST' ? [`Content-Length: ${payload.byteLength}`] : []),
    '',
    '',
  ].join('\r\n');
  const out = new Uint8Array(head.length + payload.byteLength);
  out.set(new TextEncoder().encode(head), 0);
  out.set(payload, head.length);
  return out;
}

/**
 * A whole response once `bytes` hold it (Content-Length, or the connection's end when `ended`);
 * undefined while more is needed. Throws on garbage or past `MAX_HTTP_BYTES`. Chunked bodies are
 * read too (miniupnpd answers with Content-Length; some routers chunk).
 */
export function decodeHttpResponse(bytes: Uint8Array, ended: boolean): HttpResponse | undefined {
  if (bytes.byteLength > MAX_HTTP_BYTES) throw new DecodeError('http', MAX_HTTP_BYTES, 'response too large');
  const text = new TextDecoder('latin1').decode(bytes);
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) {
    if (ended) throw new DecodeError('http', 0, 'the connection ended inside the headers');
    return undefined;
  }
  const lines = text.slice(0, split).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})\b/.exec(lines[0] ?? '');
  if (!status) throw new DecodeError('http', 0, 'not an HTTP response');
  const headers = headerMap(lines.slice(1));
  const rest = text.slice(split + 4);
  const length = headers.get('content-length');
  if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') {
    const body = dechunk(rest);
    if (body === undefined) {
      if (ended) throw new DecodeError('http', split, 'the connection ended inside a chunked body');
      return undefined;
    }
    return { status: Number(status[1]), headers, body };
  }
  if (length !== undefined) {
    const n = Number(length);
    if (!Number.isInteger(n) || n < 0 || n > MAX_HTTP_BYTES)
      throw new DecodeError('http', 0, 'bad Content-Length');
    if (rest.length < n) {
      if (ended) throw new DecodeError('http', split, 'the connection ended before Content-Length');
      return undefined;
    }
    return { status: Number(status[1]), headers, body: rest.slice(0, n) };
  }
  return ended ? { status: Number(status[1]), headers, body: rest } : undefined;
}

function dechunk(text: string): string | undefined {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = Number.parseInt(text.slice(at, eol).split(';')[0]!, 16);
    if (!Number.isInteger(size) || size < 0) throw new DecodeError('http', at, 'bad chunk size');
    if (size === 0) return out;
    if (text.length < eol + 2 + size + 2) return undefined;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** The WANIPConnection service of a device description (v2 preferred), with its control URL. */
export function findWanIpService(xml: string, location: HttpUrl): { serviceType: string; control: HttpUrl } {
  if (xml.length > MAX_HTTP_BYTES) throw new DecodeError('upnp', 0, 'description too large');
  const services = [...xml.matchAll(/<service>([\s\S]*?)<\/service>/g)].map((m) => m[1]!);
  for (const wanted of WANIP_SERVICES) {
    for (const service of services) {
      if (element(service, 'serviceType') !== wanted) continue;
      const control = element(service, 'controlURL');
      if (!control) throw new DecodeError('upnp', 0, `${wanted} has no controlURL`);
      return { serviceType: wanted, control: resolveUrl(control, location) };
    }
  }
  throw new DecodeError('upnp', 0, 'no WANIPConnection service in the device description');
}

/** A control URL is absolute (on the same device) or a path on the description's host. */
function resolveUrl(text: string, base: HttpUrl): HttpUrl {
  if (text.startsWith('http://')) {
    const url = parseHttpUrl(text, 'controlURL');
    if (url.host !== base.host) throw new DecodeError('upnp', 0, 'controlURL names another host');
    return url;
  }
  if (!/^\/?[\x21-\x7e]*$/.test(text)) throw new DecodeError('upnp', 0, 'bad controlURL');
  return { ...base, path: text.startsWith('/') ? text : `/${text}` };
}

function element(xml: string, name: string): string | undefined {
  const m = new RegExp(`<(?:[A-Za-z0-9_]+:)?${name}\\b[^>]*>([^<]*)</(?:[A-Za-z0-9_]+:)?${name}>`).exec(xml);
  return m ? unescapeXml(m[1]!.trim()) : undefined;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d{1,5});/g, (_, n) => String.fromCharCode(Number(n)))
    .replace(/&amp;/g, '&');
}

/** A SOAP 1.1 action's body and its SOAPAction header value. */
export function encodeSoapAction(
  serviceType: string,
  action: string,
  args: readonly [string, string | number][],
): { body: string; soapAction: string } {
  const inner = args.map(([k, v]) => `<${k}>${escapeXml(String(v))}</${k}>`).join('');
  return {
    body: `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${serviceType}">${inner}</u:${action}></s:Body></s:Envelope>\r\n`,
    soapAction: `"${serviceType}#${action}"`,
  };
}

export type SoapResult =
  | { readonly ok: true; readonly values: ReadonlyMap<string, string> }
  | { readonly ok: false; readonly errorCode: number; readonly description: string };

/** A SOAP answer: the named output arguments of a success, or the UPnPError of a fault. */
export function decodeSoapResponse(response: HttpResponse, outputs: readonly string[]): SoapResult {
  if (response.body.length > MAX_HTTP_BYTES) throw new DecodeError('upnp', 0, 'SOAP answer too large');
  if (response.status !== 200) {
    const code = Number(element(response.body, 'errorCode'));
    return {
      ok: false,
      errorCode: Number.isInteger(code) ? code : response.status,
      description: element(response.body, 'errorDescription') ?? `HTTP ${response.status}`,
    };
  }
  const values = new Map<string, string>();
  for (const name of outputs) {
    const value = element(response.body, name);
    if (value !== undefined) values.set(name, value);
  }
  return { ok: true, values };
}

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
}

/**
 * A whole HTTP request once `bytes` hold it (headers and a Content-Length body); undefined while
 * more is needed. For the NAT model's IGD (nat/upnp-igd.ts). Throws on garbage or past the cap.
 */
export function decodeHttpRequest(bytes: Uint8Array): HttpRequest | undefined {
  if (bytes.byteLength > MAX_HTTP_BYTES) throw new DecodeError('http', MAX_HTTP_BYTES, 'request too large');
  const text = new TextDecoder('latin1').decode(bytes);
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) return undefined;
  const lines = text.slice(0, split).split('\r\n');
  const start = /^([A-Z-]{1,16}) (\S{1,1024}) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
  if (!start) throw new DecodeError('http', 0, 'not an HTTP request');
  const headers = headerMap(lines.slice(1));
  const n = Number(headers.get('content-length') ?? '0');
  if (!Number.isInteger(n) || n < 0 || n > MAX_HTTP_BYTES)
    throw new DecodeError('http', 0, 'bad Content-Length');
  const rest = text.slice(split + 4);
  if (rest.length < n) return undefined;
  return { method: start[1]!, path: start[2]!, headers, body: rest.slice(0, n) };
}

/** The SOAP action a request names (`"<serviceType>#<action>"`), or undefined. */
export function soapActionOf(request: HttpRequest): { serviceType: string; action: string } | undefined {
  const m = /^"?([^"#]{1,200})#([A-Za-z]{1,64})"?$/.exec(request.headers.get('soapaction') ?? '');
  return m ? { serviceType: m[1]!, action: m[2]! } : undefined;
}

/** The named arguments of a SOAP request body (absent ones are left out). */
export function soapArguments(body: string, names: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  if (body.length > MAX_HTTP_BYTES) return values;
  for (const name of names) {
    const value = element(body, name);
    if (value !== undefined) values.set(name, value);
  }
  return values;
}

/** A SOAP success answer with output arguments, as an IGD sends it. */
export function encodeSoapResponse(
  serviceType: string,
  action: string,
  outputs: readonly [string, string | number][],
): string {
  const inner = outputs.map(([k, v]) => `<${k}>${escapeXml(String(v))}</${k}>`).join('');
  return `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action}Response xmlns:u="${serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>\r\n`;
}

/** A SOAP fault carrying a UPnPError (sent with HTTP 500). */
export function encodeSoapFault(errorCode: number, description: string): string {
  return `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${errorCode}</errorCode><errorDescription>${escapeXml(description)}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n`;
}

/** An HTTP/1.1 response with Content-Length, the connection closed after it. */
export function encodeHttpResponse(
  status: number,
  reason: string,
  contentType: string,
  body: string,
): Uint8Array {
  const payload = new TextEncoder().encode(body);
  const head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${contentType}\r\nContent-Length: ${payload.byteLength}\r\nConnection: close\r\n\r\n`;
  const out = new Uint8Array(head.length + payload.byteLength);
  out.set(new TextEncoder().encode(head), 0);
  out.set(payload, head.length);
  return out;
}
