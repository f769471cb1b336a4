import { describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import { AddressInUseError, ConnectionRefusedError } from '../../src/net/types.ts';
import { stunBinding } from '../../src/traversal/stun-client.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';

// Real sockets on loopback: the same interfaces the virtual network implements.
const net = new NodeNetwork();
const LOOPBACK = '127.0.0.1';

describe('NodeNetwork (real sockets on loopback)', () => {
  it('exchanges UDP datagrams and reports the sender', async () => {
    const a = await net.bindUdp({ address: LOOPBACK });
    const b = await net.bindUdp({ address: LOOPBACK });
    const got = new Promise<{ data: string; port: number }>((resolve) =>
      b.on('message', (data, from) => resolve({ data: new TextDecoder().decode(data), port: from.port })),
    );
    a.send(new TextEncoder().encode('hello'), b.local);
    expect(await got).toEqual({ data: 'hello', port: a.local.port });
    a.close();
    b.close();
    a.close();
  });

  it('refuses a second bind on the same port with AddressInUseError', async () => {
    const a = await net.bindUdp({ address: LOOPBACK });
    await expect(net.bindUdp({ address: LOOPBACK, port: a.local.port })).rejects.toBeInstanceOf(
      AddressInUseError,
    );
    a.close();
  });

  it('carries a stream both ways and reports close', async () => {
    const server = await net.listen({ address: LOOPBACK, port: 0 });
    server.on('connection', (c) => c.on('data', (d) => c.write(d)));
    const client = await net.connect(server.local);
    const reply = new Promise<string>((resolve) =>
      client.on('data', (d) => resolve(new TextDecoder().decode(d))),
    );
    client.write(new TextEncoder().encode('REGISTER'));
    expect(await reply).toBe('REGISTER');
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.close();
    await closed;
    server.close();
  });

  it('rejects a connection to a closed port with ConnectionRefusedError', async () => {
    const server = await net.listen({ address: LOOPBACK, port: 0 });
    const port = server.local.port;
    server.close();
    await new Promise((r) => setTimeout(r, 20));
    await expect(net.connect({ address: LOOPBACK, port })).rejects.toBeInstanceOf(ConnectionRefusedError);
  });

  it('runs a STUN Binding transaction against our responder over real sockets', async () => {
    const probe = await net.bindUdp({ address: LOOPBACK });
    const port = probe.local.port;
    probe.close();
    // Both "addresses" are loopback here; RFC 5780 extras are exercised on the virtual network.
    const responder = await StunResponder.start(net, {
      primary: { address: LOOPBACK, port },
      alternate: { address: '127.0.0.2', port: port + 1 },
    });
    const client = await net.bindUdp({ address: LOOPBACK });
    const result = await stunBinding(
      client,
      { clock: new SystemClock() },
      { server: { address: LOOPBACK, port }, rtoMs: 100 },
    );
    expect(result?.mapped).toEqual(client.local);
    expect(result?.otherAddress).toEqual({ address: '127.0.0.2', port: port + 1 });
    client.close();
    responder.close();
  });
});
