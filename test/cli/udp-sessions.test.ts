/**
 * `sc2c udp sessions`, the lab's background host (issue 19): every session must put its datagram
 * on the wire from a port of its own. Each closes its socket right after send(); dgram sends after
 * an asynchronous step, and a socket closed before it once dropped every datagram, which left the
 * lab's "busy" NATs quiet (NodeNetwork's close now waits for sends in flight).
 */
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { scratch } from './processes.ts';

const { sc2c } = scratch('sc2c-udp-sessions-');

describe('sc2c udp sessions', () => {
  it('sends one datagram per session, each from a source port of its own', async () => {
    const sink = createSocket('udp4');
    await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', resolve));
    const ports = new Set<number>();
    let datagrams = 0;
    sink.on('message', (_data, from) => {
      datagrams++;
      ports.add(from.port);
    });
    const run = sc2c([
      'udp',
      'sessions',
      '--to',
      `127.0.0.1:${sink.address().port}`,
      '--rate',
      '40',
      '--duration-s',
      '2',
      '--json',
    ]);
    expect((await run.exited).code).toBe(0);
    const { sessions } = JSON.parse(run.out()) as { sessions: number };
    await new Promise((r) => setTimeout(r, 300));
    sink.close();
    // Poisson arrivals at 40/s for 2 s: far more than 20 whatever the draw.
    expect(sessions).toBeGreaterThan(20);
    expect(datagrams).toBe(sessions);
    // The kernel draws ephemeral ports at random, so two sessions can share one by chance.
    expect(ports.size).toBeGreaterThan(sessions * 0.8);
  }, 20_000);
});
