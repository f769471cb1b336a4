/**
 * The abuse test of issue 16, with real processes on loopback: while a camera gateway is
 * registered and a call runs, a bounded generator sends malformed and mutated SIP (from the RFC
 * 4475 messages), random STUN/TURN/ChannelData and slow TCP connections, a few thousand a second
 * for 20 s. Then the gateway is still registered, the running call ended well, a new call
 * connects, the server grew by less than 50 MB, and /metrics counted the drops. Server and
 * gateways run with --unhandled-rejections=strict: a rejection nobody handled kills them.
 */
import { createSocket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';
import { inputs } from '../fuzz/targets.ts';
import { loopbackConfigs, scratch, startServer, until } from './processes.ts';

const TORTURE = new URL('../../../shared/sip-torture/', import.meta.url).pathname;
const FLOOD_MS = 20_000;
const TOKEN = 'abuse-test-admin-token-0123456789';
const { dir, sc2c } = scratch('sc2c-abuse-');

const rssMb = (pid: number): number =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

/** Malformed and mutated SIP, random STUN/TURN/ChannelData, and slow connections, for `ms`. */
async function flood(sip: number, stun: number, ms: number) {
  const seeds = readdirSync(TORTURE)
    .filter((f) => f.endsWith('.dat'))
    .map((f) => new Uint8Array(readFileSync(join(TORTURE, f))));
  const sipInputs = fc.sample(inputs(seeds), 4000);
  const udpInputs = fc.sample(
    inputs([
      Uint8Array.from([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, ...new Array(12).fill(7)]),
      Uint8Array.from([
        0,
        3,
        0,
        8,
        0x21,
        0x12,
        0xa4,
        0x42,
        ...new Array(12).fill(9),
        0,
        0x19,
        0,
        4,
        17,
        0,
        0,
        0,
      ]),
      Uint8Array.from([0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]),
    ]),
    4000,
  );
  const sent = { sip: 0, udp: 0, slow: 0 };
  const open = new Set<Socket>();
  const end = Date.now() + ms;
  // Slow connections from 127.0.0.4: one byte a second each.
  const slow: Socket[] = [];
  for (let i = 0; i < 200; i++) {
    const socket = connect({ host: '127.0.0.1', port: sip, localAddress: '127.0.0.4' });
    socket.on('error', () => {});
    slow.push(socket);
    sent.slow++;
  }
  const slowBytes = new TextEncoder().encode(
    'INVITE sip:bob@sc2c.test SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\n',
  );
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.5', () => r()));
  let k = 0;
  while (Date.now() < end) {
    const tick = Date.now();
    // About 1500 SIP messages and 1500 datagrams a second, over up to 40 connections from 127.0.0.3.
    while (open.size < 40) {
      const socket = connect({ host: '127.0.0.1', port: sip, localAddress: '127.0.0.3' });
      socket.on('error', () => {});
      socket.on('close', () => open.delete(socket));
      open.add(socket);
    }
    const sockets = [...open];
    for (let i = 0; i < 30; i++) {
      const socket = sockets[i % sockets.length]!;
      if (!socket.destroyed) socket.write(sipInputs[(k + i) % sipInputs.length]!);
      udp.send(udpInputs[(k + i) % udpInputs.length]!, stun, '127.0.0.1');
      sent.sip++;
      sent.udp++;
    }
    k += 30;
    if (k % 1500 === 0)
      for (const socket of slow)
        if (!socket.destroyed) socket.write(slowBytes.subarray(k % 60, (k % 60) + 1));
    await new Promise((r) => setTimeout(r, Math.max(0, 20 - (Date.now() - tick))));
  }
  for (const socket of [...open, ...slow]) socket.destroy();
  udp.close();
  return sent;
}

const present = existsSync(TORTURE);
if (!present && process.env.CI === 'true')
  throw new Error(`the RFC 4475 messages are missing from ${TORTURE}`);
if (!present) console.warn(`abuse test skipped: no RFC 4475 messages at ${TORTURE}`);

/**
 * 2000 idle connections, 250 from each of eight addresses (the per-source cap is 256), opened 100
 * per 20 ms (all at once would overflow the listen backlog); resolves with how many the server had
 * closed 12 s after the last opened (its idle timeout is 10 s).
 */
async function idleRound(sip: number): Promise<{ opened: number; closed: number }> {
  const idle: Socket[] = [];
  let closed = 0;
  for (let n = 0; n < 2000; n++) {
    const socket = connect({ host: '127.0.0.1', port: sip, localAddress: `127.0.0.${10 + (n % 8)}` });
    socket.on('error', () => {});
    socket.on('data', () => {});
    socket.once('close', () => closed++);
    idle.push(socket);
    if (n % 100 === 99) await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 12_000));
  const result = { opened: idle.length, closed };
  for (const socket of idle) socket.destroy();
  return result;
}

describe.skipIf(!present)('sc2c server under abuse (real processes on loopback)', () => {
  it('keeps the camera registered and its call up, connects a new call, stays within 50 MB and counts the drops', async () => {
    const [sip, stun, admin] = [await freePort(), await freePort(), await freePort()];
    const configs = loopbackConfigs(
      dir,
      { sip, stun },
      '    alice: alice-abuse-pass\n    bob: { password: bob-abuse-pass, callers: [alice] }',
      {
        server: `turn:\n  allowedPeers: [127.0.0.0/8]\nadmin:\n  listen: { address: 127.0.0.1, port: ${admin} }\n  token: ${TOKEN}\n`,
        gateway: `relay: { server: 127.0.0.1:${stun} }\n`,
      },
    );
    const [serverConfig, gatewayConfig] = [configs.server, configs.gateway];
    const server = await startServer(sc2c, serverConfig);
    const camera = sc2c([
      'gateway',
      '--config',
      gatewayConfig,
      '--user',
      'bob',
      '--password',
      'bob-abuse-pass',
      '--json',
      '--allow',
      'alice',
    ]);
    await until('the camera to register', () => /"event":"registered"/.test(camera.out()));
    const gateway = [
      '--config',
      gatewayConfig,
      '--user',
      'alice',
      '--password',
      'alice-abuse-pass',
      '--json',
      '--no-media',
    ];
    const during = sc2c(['call', 'bob', ...gateway, '--duration', String(FLOOD_MS / 1000 + 4)]);
    await until(
      'the first call',
      () => /"ok":/.test(during.out()) || during.child.exitCode !== null,
      15_000,
    ).catch(() => {});
    const before = rssMb(server.child.pid!);
    const sent = await flood(sip, stun, FLOOD_MS);
    expect(sent.sip).toBeGreaterThan(20_000);
    expect(server.child.exitCode).toBeNull();
    await until('the first call to end', () => during.child.exitCode !== null, 15_000);
    const first = JSON.parse(during.out().trim().split('\n').at(-1)!) as { ok: boolean; reason?: string };
    expect(first, during.err()).toMatchObject({ ok: true });
    const headers = { authorization: `Bearer ${TOKEN}` };
    const registrations = (await (
      await fetch(`http://127.0.0.1:${admin}/registrations`, { headers })
    ).json()) as {
      user: string;
    }[];
    expect(registrations.map((r) => r.user)).toContain('bob');
    const after = sc2c(['call', 'bob', ...gateway, '--duration', '0']);
    await until('the second call', () => after.child.exitCode !== null, 20_000);
    expect(JSON.parse(after.out().trim().split('\n').at(-1)!), after.err()).toMatchObject({ ok: true });
    await new Promise((r) => setTimeout(r, 1000));
    const grownMb = rssMb(server.child.pid!) - before;
    expect(grownMb).toBeLessThan(50);
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { headers })).text();
    const value = (name: string): number =>
      Number(new RegExp(`^${name} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    const sipDrops =
      value('sc2c_sip_malformed_total') +
      value('sc2c_sip_refused_requests_total') +
      value('sc2c_sip_idle_closed_total');
    expect(sipDrops).toBeGreaterThan(100);
    expect(
      value('sc2c_stun_malformed_total') +
        value('sc2c_turn_malformed_total') +
        value('sc2c_stun_ignored_total') +
        value('sc2c_turn_unauthorized_total') +
        value('sc2c_turn_rate_limited_total'),
    ).toBeGreaterThan(100);
    // 2000 idle connections, twice: all closed at the idle timeout, and the server holds none of
    // them afterwards. (RSS is reported, not asserted: the allocator keeps freed pages, and over
    // rounds on this machine it moved by -27 to +28 MB with no trend.)
    const idleClosedBefore = value('sc2c_sip_idle_closed_total');
    const connectionsBefore = value('sc2c_sip_connections');
    const rounds: { opened: number; closed: number; rssMb: number }[] = [];
    for (let round = 0; round < 2; round++)
      rounds.push({ ...(await idleRound(sip)), rssMb: rssMb(server.child.pid!) });
    for (const round of rounds) expect(round.closed).toBe(round.opened);
    const metricsAfter = await (await fetch(`http://127.0.0.1:${admin}/metrics`, { headers })).text();
    const idleClosed =
      Number(/^sc2c_sip_idle_closed_total (\d+)/m.exec(metricsAfter)?.[1] ?? 0) - idleClosedBefore;
    expect(idleClosed).toBeGreaterThanOrEqual(4000);
    expect(Number(/^sc2c_sip_connections (\d+)/m.exec(metricsAfter)?.[1])).toBeLessThanOrEqual(
      connectionsBefore,
    );
    expect(server.child.exitCode).toBeNull();
    expect(camera.child.exitCode).toBeNull();
    expect(server.err() + camera.err()).not.toMatch(/Unhandled|unhandled/);
    console.log(
      `abuse: sent ${sent.sip} SIP messages, ${sent.udp} datagrams, ${sent.slow} slow connections in ${FLOOD_MS / 1000} s; server RSS ${before.toFixed(1)} MB -> +${grownMb.toFixed(1)} MB; SIP drops ${sipDrops}; idle rounds ${JSON.stringify(rounds)}`,
    );
    for (const child of [camera.child, server.child]) child.kill('SIGTERM');
  }, 180_000);
});
