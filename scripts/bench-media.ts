/**
 * `npm run bench:media [-- --streams N] [-- --mbps M] [-- --duration S] [-- --json] [-- --out FILE]`
 *
 * What the gateway's media hop costs, without ffmpeg:
 *   1. CPU: the forwarding half of a camera gateway (MediaSender with an external encoder: receive
 *      RTP on loopback, rewrite SSRC/sequence/timestamp, count, send out the path socket, RTCP SR
 *      every second) runs in its own process; its user+system CPU over the run, divided by the
 *      streams, is the CPU per forwarded stream. An idle run of the same process is the baseline.
 *   2. Latency: a generator stamps each packet with its send time (hrtime, in the payload). The
 *      sink in the same process reads the stamp, so both ends use one clock. Generator -> sink
 *      directly is the baseline; generator -> gateway -> sink adds the hop. p50 and p95 of both.
 * Every load is bounded: at most 120 s and 64 streams. Loopback only.
 */
import { fork } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { H264 } from '../src/media/negotiate.ts';
import { MediaSender } from '../src/media/sender.ts';
import { SystemClock } from '../src/net/clock.ts';
import { NodeNetwork } from '../src/net/node-network.ts';

const PAYLOAD = 1200;
const HEADER = 12;

interface GatewayReport {
  readonly cpuUs: number;
  readonly wallMs: number;
  readonly forwarded: number;
}

/** The child: one MediaSender per stream, forwarding to the sink; answers `run` with its CPU. */
async function gatewayProcess(): Promise<void> {
  const clock = new SystemClock();
  const network = new NodeNetwork();
  const senders: MediaSender[] = [];
  process.on('message', async (message: { op: string; streams?: number; sink?: number; ms?: number }) => {
    if (message.op === 'start') {
      for (let i = 0; i < message.streams!; i++) {
        const socket = await network.bindUdp({ address: '127.0.0.1' });
        senders.push(
          await MediaSender.start(
            {
              clock,
              network,
              ffmpeg: { spawn: () => undefined as never, binary: { path: '', from: 'system' } },
            },
            {
              path: { socket, remote: { address: '127.0.0.1', port: message.sink! } },
              encode: {
                source: { kind: 'testsrc' },
                width: 0,
                height: 0,
                fps: 0,
                videoBitrateKbps: 0,
                keyframeInterval: 1,
              },
              video: H264,
              externalEncoder: true,
            },
          ),
        );
      }
      process.send!({ op: 'ready', ports: senders.map((s) => s.inputPorts.video) });
    } else if (message.op === 'measure') {
      const before = process.cpuUsage();
      const startedAt = performance.now();
      const forwardedBefore = senders.reduce((a, s) => a + s.stats().video.packets, 0);
      await new Promise((r) => setTimeout(r, message.ms!));
      const used = process.cpuUsage(before);
      const report: GatewayReport = {
        cpuUs: used.user + used.system,
        wallMs: performance.now() - startedAt,
        forwarded: senders.reduce((a, s) => a + s.stats().video.packets, 0) - forwardedBefore,
      };
      process.send!({ op: 'measured', report });
    } else if (message.op === 'stop') {
      await Promise.all(senders.map((s) => s.close()));
      process.exit(0);
    }
  });
}

function request<T>(child: ReturnType<typeof fork>, message: object, reply: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { op: string } & T): void => {
      if (m.op !== reply) return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`the gateway process exited (${code})`)));
    child.send(message);
  });
}

const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const bind = (): Promise<Socket> =>
  new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1', () => resolve(socket));
  });

/**
 * Sends `streams` paced RTP streams of `mbps` each to `targets` for `ms`, and collects the one-way
 * latency of every packet the sink gets back.
 */
async function load(
  targets: number[],
  sink: Socket,
  mbps: number,
  ms: number,
): Promise<{ sent: number; received: number; latencyUs: number[] }> {
  const generator = await bind();
  const latencyUs: number[] = [];
  let received = 0;
  const onMessage = (data: Buffer): void => {
    // Our packets only: the gateway's RTCP sender reports arrive on the same (muxed) port.
    if (data.length !== HEADER + PAYLOAD || (data[1]! & 0x7f) !== 96) return;
    received++;
    const sentAt = data.readBigUInt64BE(HEADER + 1);
    latencyUs.push(Number(process.hrtime.bigint() - sentAt) / 1000);
  };
  sink.on('message', onMessage);
  const packetsPerSecond = (mbps * 1e6) / 8 / (HEADER + PAYLOAD);
  const packet = Buffer.alloc(HEADER + PAYLOAD);
  packet[0] = 0x80;
  packet[1] = 96;
  packet[HEADER] = 0x41; // an H.264 non-IDR slice: nothing for the keyframe detector
  let sent = 0;
  const seq = targets.map(() => 0);
  const start = performance.now();
  await new Promise<void>((done) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.floor((Math.min(elapsed, ms) / 1000) * packetsPerSecond);
      for (let i = 0; i < targets.length; i++) {
        while (seq[i]! < due) {
          packet.writeUInt16BE(seq[i]! & 0xffff, 2);
          packet.writeUInt32BE((seq[i]! * 3000) >>> 0, 4);
          packet.writeUInt32BE(0x5c2c0000 + i, 8);
          // A marker every 10 packets: a "frame" of 12 KB, about right for 4 Mbit/s at 30 fps.
          if (seq[i]! % 10 === 9) packet[1] = 0x80 | 96;
          else packet[1] = 96;
          packet.writeBigUInt64BE(process.hrtime.bigint(), HEADER + 1);
          generator.send(packet, targets[i]!, '127.0.0.1');
          seq[i]!++;
          sent++;
        }
      }
      if (elapsed >= ms) {
        clearInterval(tick);
        done();
      }
    }, 1);
  });
  await new Promise((r) => setTimeout(r, 200));
  sink.off('message', onMessage);
  generator.close();
  return { sent, received, latencyUs: latencyUs.sort((a, b) => a - b) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '1' },
      mbps: { type: 'string', default: '4' },
      duration: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `usage: npm run bench:media -- [--streams N (1)] [--mbps M (4)] [--duration S (10)] [--json] [--out FILE]\n` +
        'Measures the CPU the gateway spends per forwarded stream (ffmpeg excluded) and the latency its hop adds.\n',
    );
    return;
  }
  const streams = Number(values.streams);
  const mbps = Number(values.mbps);
  const durationS = Number(values.duration);
  if (!Number.isInteger(streams) || streams < 1 || streams > 64) throw new Error('--streams must be 1-64');
  if (!(mbps > 0 && mbps <= 100)) throw new Error('--mbps must be above 0 and at most 100');
  if (!(durationS >= 1 && durationS <= 120)) throw new Error('--duration must be 1-120 s');
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const ms = durationS * 1000;

  const sink = await bind();
  const sinkPort = sink.address().port;
  const child = fork(new URL(import.meta.url).pathname, ['--gateway-process'], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const { ports } = await request<{ ports: number[] }>(
      child,
      { op: 'start', streams, sink: sinkPort },
      'ready',
    );

    log(`baseline: generator -> sink directly, ${streams} x ${mbps} Mbit/s for ${durationS} s...`);
    const direct = await load(
      ports.map(() => sinkPort),
      sink,
      mbps,
      ms,
    );

    log(`idle gateway for ${durationS} s (its timers and RTCP only)...`);
    const idle = (await request<{ report: GatewayReport }>(child, { op: 'measure', ms }, 'measured')).report;

    log(`through the gateway: ${streams} x ${mbps} Mbit/s for ${durationS} s...`);
    const measuring = request<{ report: GatewayReport }>(child, { op: 'measure', ms }, 'measured');
    const hop = await load(ports, sink, mbps, ms);
    const busy = (await measuring).report;

    const cpuPercent = (r: GatewayReport): number => (100 * r.cpuUs) / 1000 / r.wallMs;
    const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;
    const lat = (l: number[]) => ({
      p50Us: round(percentile(l, 50)),
      p95Us: round(percentile(l, 95)),
      p99Us: round(percentile(l, 99)),
    });
    const result = {
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
      date: new Date().toISOString(),
      command: `npm run bench:media -- --streams ${streams} --mbps ${mbps} --duration ${durationS}`,
      streams,
      mbpsPerStream: mbps,
      durationS,
      payloadBytes: PAYLOAD,
      packetsSent: hop.sent,
      packetsForwarded: busy.forwarded,
      packetsReceived: hop.received,
      cpu: {
        idlePercentOfCore: round(cpuPercent(idle), 2),
        busyPercentOfCore: round(cpuPercent(busy), 2),
        perStreamPercentOfCore: round((cpuPercent(busy) - cpuPercent(idle)) / streams, 2),
        microsecondsPerPacket: round(
          (busy.cpuUs - idle.cpuUs * (busy.wallMs / idle.wallMs)) / busy.forwarded,
          2,
        ),
      },
      latency: {
        direct: lat(direct.latencyUs),
        throughGateway: lat(hop.latencyUs),
        hopAddedP50Us: round(percentile(hop.latencyUs, 50) - percentile(direct.latencyUs, 50)),
        hopAddedP95Us: round(percentile(hop.latencyUs, 95) - percentile(direct.latencyUs, 95)),
      },
    };
    if (values.out) {
      mkdirSync(dirname(values.out), { recursive: true });
      writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(
        [
          `gateway media hop, ${streams} x ${mbps} Mbit/s of ${PAYLOAD}-byte RTP for ${durationS} s (${result.machine.cpu})`,
          `  forwarded ${busy.forwarded} of ${hop.sent} packets, ${hop.received} reached the sink`,
          `  CPU: ${result.cpu.busyPercentOfCore} % of a core busy, ${result.cpu.idlePercentOfCore} % idle -> ${result.cpu.perStreamPercentOfCore} % per ${mbps} Mbit/s stream (${result.cpu.microsecondsPerPacket} us per packet)`,
          `  latency generator->sink direct: p50 ${result.latency.direct.p50Us} us, p95 ${result.latency.direct.p95Us} us`,
          `  latency through the gateway:    p50 ${result.latency.throughGateway.p50Us} us, p95 ${result.latency.throughGateway.p95Us} us`,
          `  the hop adds p50 ${result.latency.hopAddedP50Us} us, p95 ${result.latency.hopAddedP95Us} us`,
          '',
        ].join('\n'),
      );
    }
    if (hop.received < 0.99 * hop.sent) process.exitCode = 1;
  } finally {
    child.send({ op: 'stop' });
    sink.close();
  }
}

if (process.argv.includes('--gateway-process')) await gatewayProcess();
else await main();
