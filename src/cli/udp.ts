/**
 * `sc2c udp ...`: small real-socket measurement tools to run inside lab hosts: an echo server, a
 * pinger (RTT and loss), a paced sender and a sink (throughput). Every loop is bounded in count and
 * time and stops by itself.
 */
import type { Command } from 'commander';
import { type Endpoint, isIpv4 } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { BackgroundTraffic } from '../net/virtual/background.ts';
import { createRng } from '../util/rng.ts';
import { summarize } from '../util/stats.ts';
import { parseFloatIn, parseInteger, UsageError } from './errors.ts';

const network = new NodeNetwork();
/** Probe header: magic, sequence number, send time (performance.now, ms). */
const MAGIC = 0x53433243; // "SC2C"
const HEADER = 16;

function parseTarget(text: string): Endpoint {
  const [address, portText] = text.split(':');
  const port = Number(portText);
  if (!address || !isIpv4(address) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`target must be IPv4:port, e.g. 198.18.0.10:7, got '${text}'`);
  }
  return { address, port };
}

function probe(seq: number, size: number): Uint8Array {
  const out = new Uint8Array(Math.max(HEADER, size));
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC);
  view.setUint32(4, seq);
  view.setFloat64(8, performance.now());
  return out;
}

function readProbe(data: Uint8Array): { seq: number; sentAt: number } | undefined {
  if (data.byteLength < HEADER) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint32(0) !== MAGIC) return undefined;
  return { seq: view.getUint32(4), sentAt: view.getFloat64(8) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves after `durationS` or at SIGTERM, whichever comes first (the long-running tools). */
function untilStopped(durationS: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, durationS * 1000);
    process.once('SIGTERM', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function registerUdp(program: Command): void {
  const udp = program
    .command('udp')
    .description('UDP measurement tools to run inside lab hosts (sc2c lab exec HOST -- npx sc2c udp ...)');

  udp
    .command('echo')
    .description('answer every datagram with the same bytes')
    .option('--port <n>', 'UDP port', parseInteger('--port', 1, 65535), 7)
    .option('--duration-s <n>', 'stop after this many seconds', parseInteger('--duration-s', 1, 86_400), 600)
    .action(async (options: { port: number; durationS: number }) => {
      const socket = await network.bindUdp({ port: options.port });
      socket.on('message', (data, from) => socket.send(data, from));
      process.stderr.write(`udp echo on port ${options.port} for up to ${options.durationS} s\n`);
      await untilStopped(options.durationS);
      socket.close();
    });

  udp
    .command('ping')
    .description('send numbered, timestamped datagrams to an echo server; report RTT and loss')
    .argument('<target>', 'echo server as IPv4:port')
    .option('--count <n>', 'datagrams to send', parseInteger('--count', 1, 1_000_000), 100)
    .option('--interval-ms <n>', 'gap between datagrams', parseInteger('--interval-ms', 0, 60_000), 10)
    .option('--size <bytes>', 'datagram size', parseInteger('--size', HEADER, 1472), 64)
    .option('--json', 'print {sent, received, lossPct, rttMs: {min, mean, p50, p95, max}}')
    .action(
      async (
        targetText: string,
        options: { count: number; intervalMs: number; size: number; json?: boolean },
      ) => {
        const target = parseTarget(targetText);
        const socket = await network.bindUdp();
        const rtts = new Map<number, number>();
        socket.on('message', (data) => {
          const p = readProbe(data);
          if (p && p.seq < options.count && !rtts.has(p.seq)) rtts.set(p.seq, performance.now() - p.sentAt);
        });
        const started = performance.now();
        for (let seq = 0; seq < options.count; seq++) {
          socket.send(probe(seq, options.size), target);
          // Pace by the clock, not by summing sleeps, so timer lateness does not stretch the run.
          const due = started + (seq + 1) * options.intervalMs;
          const wait = due - performance.now();
          if (wait >= 1) await sleep(wait);
          else if (seq % 64 === 63) await new Promise((r) => setImmediate(r));
        }
        const worst = Math.max(0, ...rtts.values());
        await sleep(Math.max(500, 3 * worst));
        socket.close();
        const received = rtts.size;
        const result = {
          target: targetText,
          sent: options.count,
          received,
          lossPct: Math.round(((options.count - received) / options.count) * 10_000) / 100,
          rttMs: summarize([...rtts.values()]),
        };
        if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
        else {
          const r = result.rttMs;
          process.stdout.write(
            `${result.sent} sent, ${received} received, ${result.lossPct} % loss; rtt min/p50/p95/max ${r.min}/${r.p50}/${r.p95}/${r.max} ms\n`,
          );
        }
      },
    );

  udp
    .command('blast')
    .description('send datagrams at a paced rate for a fixed time (throughput tests)')
    .argument('<target>', 'receiver as IPv4:port')
    .option('--size <bytes>', 'datagram size', parseInteger('--size', HEADER, 1472), 1200)
    .option(
      '--rate-mbps <n>',
      'target rate in Mbit/s (UDP payload)',
      parseInteger('--rate-mbps', 1, 10_000),
      20,
    )
    .option('--duration-s <n>', 'how long to send', parseInteger('--duration-s', 1, 600), 5)
    .option('--json', 'print {sent, bytes, durationS, offeredMbps}')
    .action(
      async (
        targetText: string,
        options: { size: number; rateMbps: number; durationS: number; json?: boolean },
      ) => {
        const target = parseTarget(targetText);
        const socket = await network.bindUdp();
        const packetsPerMs = (options.rateMbps * 1e6) / 8 / options.size / 1000;
        const started = performance.now();
        const endAt = started + options.durationS * 1000;
        let sent = 0;
        for (let now = performance.now(); now < endAt; now = performance.now()) {
          const due = Math.floor((now - started) * packetsPerMs);
          while (sent < due) socket.send(probe(sent++, options.size), target);
          await sleep(1);
        }
        const durationS = (performance.now() - started) / 1000;
        await sleep(200);
        socket.close();
        const result = {
          sent,
          bytes: sent * options.size,
          durationS,
          offeredMbps: (sent * options.size * 8) / durationS / 1e6,
        };
        process.stdout.write(
          options.json
            ? `${JSON.stringify(result)}\n`
            : `sent ${sent} datagrams, ${result.offeredMbps.toFixed(1)} Mbit/s offered\n`,
        );
      },
    );

  udp
    .command('sessions')
    .description(
      'background traffic through a NAT: open new UDP sessions (a fresh socket, one datagram each) at a random rate',
    )
    .requiredOption('--to <ip:port>', 'where each session sends its datagram (an echo or discard port)')
    .option('--rate <n>', 'mean new sessions per second (Poisson)', parseFloatIn('--rate', 0.1, 1000), 1)
    .option('--duration-s <n>', 'stop after this many seconds', parseInteger('--duration-s', 1, 86_400), 600)
    .option('--seed <n>', 'seed of the arrival times', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option('--json', 'print {sessions, durationS} at the end')
    .action(
      async (options: { to: string; rate: number; durationS: number; seed: number; json?: boolean }) => {
        const target = parseTarget(options.to);
        const started = performance.now();
        const traffic = new BackgroundTraffic(
          { network, clock: new SystemClock(), rng: createRng(options.seed) },
          {
            sessionsPerSecond: options.rate,
            target,
            // Bounded by count as well as time: rate x duration, with room for the random arrivals.
            maxSessions: Math.ceil(options.rate * options.durationS * 2) + 10,
          },
        );
        process.stderr.write(
          `udp sessions: ${options.rate}/s to ${options.to} for up to ${options.durationS} s\n`,
        );
        await untilStopped(options.durationS);
        traffic.stop();
        const result = {
          sessions: traffic.sessions,
          durationS: Math.round((performance.now() - started) / 100) / 10,
        };
        process.stdout.write(
          options.json
            ? `${JSON.stringify(result)}\n`
            : `${result.sessions} sessions in ${result.durationS} s\n`,
        );
      },
    );

  udp
    .command('sink')
    .description('count datagrams from udp blast; report throughput and loss')
    .option('--port <n>', 'UDP port', parseInteger('--port', 1, 65535), 9)
    .option('--duration-s <n>', 'give up after this many seconds', parseInteger('--duration-s', 1, 600), 30)
    .option(
      '--idle-ms <n>',
      'stop this long after the last datagram',
      parseInteger('--idle-ms', 10, 60_000),
      1000,
    )
    .option('--json', 'print {packets, bytes, durationS, mbps, lost}')
    .action(async (options: { port: number; durationS: number; idleMs: number; json?: boolean }) => {
      const socket = await network.bindUdp({ port: options.port });
      let packets = 0;
      let bytes = 0;
      let first = 0;
      let last = 0;
      let maxSeq = -1;
      socket.on('message', (data) => {
        const p = readProbe(data);
        if (!p) return;
        const now = performance.now();
        if (packets === 0) first = now;
        last = now;
        packets++;
        bytes += data.byteLength;
        maxSeq = Math.max(maxSeq, p.seq);
      });
      const giveUp = performance.now() + options.durationS * 1000;
      while (performance.now() < giveUp && !(packets > 0 && performance.now() - last > options.idleMs))
        await sleep(50);
      socket.close();
      const durationS = packets > 1 ? (last - first) / 1000 : 0;
      const result = {
        packets,
        bytes,
        durationS,
        mbps: durationS > 0 ? (bytes * 8) / durationS / 1e6 : 0,
        lost: maxSeq + 1 - packets,
      };
      process.stdout.write(
        options.json
          ? `${JSON.stringify(result)}\n`
          : `received ${packets} datagrams, ${result.mbps.toFixed(1)} Mbit/s, ${result.lost} lost\n`,
      );
    });
}
