/** UPnP IGD wire pieces (issue 20): SSDP answers, HTTP framing, the description, SOAP; all hostile. */
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/protocol/decode-error.ts';
import {
  decodeHttpResponse,
  decodeSoapResponse,
  decodeSsdpResponse,
  encodeHttpRequest,
  encodeMSearch,
  encodeSoapAction,
  findWanIpService,
  parseHttpUrl,
} from '../../src/protocol/portmap/upnp.ts';
import { conflictPorts } from '../../src/traversal/upnp-client.ts';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);
const LOCATION = { host: '10.0.2.1', port: 45_777, path: '/rootDesc.xml' };

describe('UPnP IGD codecs', () => {
  it('searches for the IGD and reads the LOCATION of an answer, refusing a named host', () => {
    expect(text(encodeMSearch())).toBe(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n',
    );
    const answer = decodeSsdpResponse(
      bytes(
        'HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLocation: http://10.0.2.1:45777/rootDesc.xml\r\n\r\n',
      ),
    );
    expect(answer.location).toEqual(LOCATION);
    expect(() =>
      decodeSsdpResponse(bytes('HTTP/1.1 200 OK\r\nLOCATION: http://evil.example/x\r\n\r\n')),
    ).toThrow(DecodeError);
    expect(() =>
      decodeSsdpResponse(bytes('NOTIFY * HTTP/1.1\r\nLOCATION: http://10.0.2.1/\r\n\r\n')),
    ).toThrow(DecodeError);
    expect(() => decodeSsdpResponse(new Uint8Array(4096))).toThrow(/too large/);
    expect(parseHttpUrl('http://10.0.2.1/', 'x')).toEqual({ host: '10.0.2.1', port: 80, path: '/' });
    expect(() => parseHttpUrl('http://10.0.2.1:99999/', 'x')).toThrow(DecodeError);
  });

  it('frames HTTP: Content-Length, chunked, incomplete, and the 64 KB cap', () => {
    const request = text(encodeHttpRequest('POST', LOCATION, [['SOAPAction', '"x#y"']], 'body'));
    expect(request).toBe(
      'POST /rootDesc.xml HTTP/1.1\r\nHOST: 10.0.2.1:45777\r\nConnection: close\r\nSOAPAction: "x#y"\r\nContent-Length: 4\r\n\r\nbody',
    );
    const whole = bytes('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    expect(decodeHttpResponse(whole.subarray(0, 30), false)).toBeUndefined();
    expect(decodeHttpResponse(whole, false)).toMatchObject({ status: 200, body: 'hello' });
    expect(() => decodeHttpResponse(whole.subarray(0, 30), true)).toThrow(DecodeError);
    const chunked = bytes(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
    );
    expect(decodeHttpResponse(chunked, false)?.body).toBe('abcde');
    expect(decodeHttpResponse(bytes('HTTP/1.1 200 OK\r\n\r\nuntil close'), true)?.body).toBe('until close');
    expect(() => decodeHttpResponse(new Uint8Array(70_000), false)).toThrow(/too large/);
    expect(() => decodeHttpResponse(bytes('SIP/2.0 200 OK\r\n\r\n'), true)).toThrow(DecodeError);
  });

  it('finds WANIPConnection (v2 before v1) and its control URL, only on the same device', () => {
    const service = (type: string, control: string) =>
      `<service><serviceType>${type}</serviceType><controlURL>${control}</controlURL></service>`;
    const xml = `<root>${service('urn:schemas-upnp-org:service:WANIPConnection:1', '/v1')}${service('urn:schemas-upnp-org:service:WANIPConnection:2', 'ctl/v2')}</root>`;
    expect(findWanIpService(xml, LOCATION)).toEqual({
      serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
      control: { ...LOCATION, path: '/ctl/v2' },
    });
    const elsewhere = `<root>${service('urn:schemas-upnp-org:service:WANIPConnection:1', 'http://10.0.2.99:80/ctl')}</root>`;
    expect(() => findWanIpService(elsewhere, LOCATION)).toThrow(/another host/);
    expect(() => findWanIpService('<root/>', LOCATION)).toThrow(/no WANIPConnection/);
  });

  it('encodes a SOAP action with escaped arguments and reads results and UPnP errors', () => {
    const { body, soapAction } = encodeSoapAction(
      'urn:schemas-upnp-org:service:WANIPConnection:1',
      'AddPortMapping',
      [
        ['NewExternalPort', 40_000],
        ['NewPortMappingDescription', 'a<b&c'],
      ],
    );
    expect(soapAction).toBe('"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"');
    expect(body).toContain('<NewExternalPort>40000</NewExternalPort>');
    expect(body).toContain('<NewPortMappingDescription>a&#60;b&#38;c</NewPortMappingDescription>');
    const ok = decodeSoapResponse(
      {
        status: 200,
        headers: new Map(),
        body: '<u:R><NewExternalIPAddress>198.18.2.1</NewExternalIPAddress></u:R>',
      },
      ['NewExternalIPAddress'],
    );
    expect(ok).toEqual({ ok: true, values: new Map([['NewExternalIPAddress', '198.18.2.1']]) });
    const fault = decodeSoapResponse(
      {
        status: 500,
        headers: new Map(),
        body: '<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>',
      },
      [],
    );
    expect(fault).toEqual({ ok: false, errorCode: 718, description: 'ConflictInMappingEntry' });
  });

  it('tries other ports from the dynamic range when ours is taken, the same ones every time', () => {
    const ports = conflictPorts(40_000);
    expect(ports).toHaveLength(3);
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) expect(port >= 49_152 && port <= 65_535).toBe(true);
    expect(conflictPorts(40_000)).toEqual(ports);
    expect(conflictPorts(40_002)).not.toEqual(ports);
  });
});
