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
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { H264 } from '../src/media/negotiate.ts';
import { MediaSender } from '../src/media/sender.ts';
import { SystemClock } from '../src/net/clock.ts';
import { NodeNetwork } from '../src/net/node-network.ts';
import type { DtlsKeys } from '../src/path/dtls-endpoint.ts';
import { SecurePath } from '../src/path/secure-path.ts';
import { masterLengths, type SrtpProfile, SrtpProfileName } from '../src/protocol/srtp/keys.ts';
import { SrtpSession } from '../src/protocol/srtp/srtp.ts';

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
  process.on(
    'message',
    async (message: { op: string; streams?: number; sink?: number; ms?: number; keys?: DtlsKeys }) => {
      if (message.op === 'start') {
        const keys = message.keys && revive(message.keys);
        for (let i = 0; i < message.streams!; i++) {
          const raw = await network.bindUdp({ address: '127.0.0.1' });
          const remote = { address: '127.0.0.1', port: message.sink! };
          // With keys, every packet leaves as SRTP, as on a call (the handshake is not what is measured).
          const socket = keys ? SecurePath.fromKeys({ socket: raw, remote }, keys).socket : raw;
          senders.push(
            await MediaSender.start(
              {
                clock,
                network,
                ffmpeg: { spawn: () => undefined as never, binary: { path: '', from: 'system' } },
              },
              {
                path: { socket, remote },
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
    },
  );
}

/** Keys through IPC arrive as plain objects: back to bytes. */
function revive(keys: DtlsKeys): DtlsKeys {
  const bytes = (v: unknown): Uint8Array => new Uint8Array(Object.values(v as Record<string, number>));
  return {
    profile: keys.profile,
    local: { key: bytes(keys.local.key), salt: bytes(keys.local.salt) },
    remote: { key: bytes(keys.remote.key), salt: bytes(keys.remote.salt) },
  };
}

function randomKeys(profile: SrtpProfile): DtlsKeys {
  const { keyLength, saltLength } = masterLengths(profile);
  const master = () => ({
    key: new Uint8Array(randomBytes(keyLength)),
    salt: new Uint8Array(randomBytes(saltLength)),
  });
  return { profile, local: master(), remote: master() };
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
  srtp?: SrtpSession,
): Promise<{ sent: number; received: number; latencyUs: number[] }> {
  const generator = await bind();
  const latencyUs: number[] = [];
  let received = 0;
  const onMessage = (wire: Buffer): void => {
    // The sink decrypts as a receiving gateway would: that cost is part of the encrypted hop.
    if ((wire[1]! & 0x7f) !== 96) return;
    const plain = srtp ? srtp.unprotectRtp(wire) : wire;
    if (!plain) return;
    const data = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
    // Our packets only: the gateway's RTCP sender reports arrive on the same (muxed) port.
    if (data.length !== HEADER + PAYLOAD) return;
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
  const cpuPercent = (r: GatewayReport): number => (100 * r.cpuUs) / 1000 / r.wallMs;
  const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;
  const lat = (l: number[]) => ({
    p50Us: round(percentile(l, 50)),
    p95Us: round(percentile(l, 95)),
    p99Us: round(percentile(l, 99)),
  });
  try {
    log(`baseline: generator -> sink directly, ${streams} x ${mbps} Mbit/s for ${durationS} s...`);
    const direct = await load(
      Array.from({ length: streams }, () => sinkPort),
      sink,
      mbps,
      ms,
    );
    // One row per way the hop leaves: plain RTP, then SRTP with each profile we negotiate.
    const rows = [];
    for (const profile of [undefined, 7, 1] as const) {
      const encryption = profile === undefined ? 'none' : `SRTP ${SrtpProfileName[profile]}`;
      const keys = profile === undefined ? undefined : randomKeys(profile);
      const srtp = keys && new SrtpSession(keys.profile, keys.remote, keys.local);
      const child = fork(new URL(import.meta.url).pathname, ['--gateway-process'], {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      try {
        const { ports } = await request<{ ports: number[] }>(
          child,
          { op: 'start', streams, sink: sinkPort, keys },
          'ready',
        );
        log(`[${encryption}] idle gateway for ${durationS} s (its timers and RTCP only)...`);
        const idle = (await request<{ report: GatewayReport }>(child, { op: 'measure', ms }, 'measured'))
          .report;
        log(`[${encryption}] through the gateway: ${streams} x ${mbps} Mbit/s for ${durationS} s...`);
        const measuring = request<{ report: GatewayReport }>(child, { op: 'measure', ms }, 'measured');
        const hop = await load(ports, sink, mbps, ms, srtp);
        const busy = (await measuring).report;
        rows.push({
          encryption,
          packetsSent: hop.sent,
          packetsForwarded: busy.forwarded,
          packetsReceived: hop.received,
          srtpAuthFailures: srtp?.counters.authFailures ?? 0,
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
            throughGateway: lat(hop.latencyUs),
            hopAddedP50Us: round(percentile(hop.latencyUs, 50) - percentile(direct.latencyUs, 50)),
            hopAddedP95Us: round(percentile(hop.latencyUs, 95) - percentile(direct.latencyUs, 95)),
          },
        });
      } finally {
        child.send({ op: 'stop' });
      }
    }
    const result = {
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
      date: new Date().toISOString(),
      command: `npm run bench:media -- --streams ${streams} --mbps ${mbps} --duration ${durationS}`,
      streams,
      mbpsPerStream: mbps,
      durationS,
      payloadBytes: PAYLOAD,
      note: 'SRTP rows: the gateway encrypts and the sink decrypts (as the receiving gateway would), so the hop includes both',
      latencyDirect: lat(direct.latencyUs),
      rows,
    };
    if (values.out) {
      mkdirSync(dirname(values.out), { recursive: true });
      writeFileSync(values.out, `${JSON.stringify(result, null, 2)}\n`);
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      const lines = [
        `gateway media hop, ${streams} x ${mbps} Mbit/s of ${PAYLOAD}-byte RTP for ${durationS} s (${result.machine.cpu})`,
        `  generator->sink directly: p50 ${result.latencyDirect.p50Us} us, p95 ${result.latencyDirect.p95Us} us`,
      ];
      for (const row of rows)
        lines.push(
          `  ${row.encryption.padEnd(32)} forwarded ${row.packetsForwarded} of ${row.packetsSent}, ${row.packetsReceived} reached the sink; CPU ${row.cpu.perStreamPercentOfCore} % of a core per ${mbps} Mbit/s stream (${row.cpu.microsecondsPerPacket} us/packet); hop adds p50 ${row.latency.hopAddedP50Us} us, p95 ${row.latency.hopAddedP95Us} us`,
        );
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (rows.some((r) => r.packetsReceived < 0.99 * r.packetsSent)) process.exitCode = 1;
  } finally {
    sink.close();
  }
}

if (process.argv.includes('--gateway-process')) await gatewayProcess();
else await main();
