/**
 * Recording and live view: the receiver's ordered RTP goes over loopback to one ffmpeg, which reads
 * it through an SDP file. It writes MP4 with `-c copy` (H.264 untouched; Opus copied, PCMU converted
 * to AAC because MP4 has no G.711), and for the live view also decodes the video to JPEG frames on
 * its stdout. Packets are held until ffmpeg has bound its ports, so the first keyframe is not lost
 * while ffmpeg starts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../net/clock.ts';
import { sleep } from '../net/clock.ts';
import type { Endpoint, Network, UdpSocket } from '../net/types.ts';
import type { Codec } from '../protocol/sdp.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { type FfmpegComponents, FfmpegProcess } from './ffmpeg.ts';
import type { MediaKind } from './receiver.ts';

export interface RecorderComponents {
  readonly clock: Clock;
  readonly network: Network;
  readonly ffmpeg: FfmpegComponents;
}

export interface RecorderInit {
  /** MP4 to write; omit for a live view only. */
  readonly path?: string;
  /** Decode video to JPEG frames (the `frame` event) at this rate, for a live view. */
  readonly liveFps?: number;
  readonly video: Codec;
  readonly audio?: Codec;
}

/** The SDP ffmpeg reads: where on loopback each stream arrives and how it is encoded. */
export function recorderSdp(init: RecorderInit, ports: { video: number; audio?: number }): string {
  const line = (kind: MediaKind, port: number, c: Codec): string[] => [
    `m=${kind} ${port} RTP/AVP ${c.payloadType}`,
    `a=rtpmap:${c.payloadType} ${c.name}/${c.clockRate}${c.channels ? `/${c.channels}` : ''}`,
    ...(c.name.toUpperCase() === 'H264' ? [`a=fmtp:${c.payloadType} packetization-mode=1`] : []),
  ];
  return [
    'v=0',
    'o=- 0 0 IN IP4 127.0.0.1',
    's=sc2c recording',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    ...line('video', ports.video, init.video),
    ...(init.audio && ports.audio ? line('audio', ports.audio, init.audio) : []),
    '',
  ].join('\r\n');
}

/** UDP ports bound in this network namespace, from /proc/net/udp (Linux); `null` without procfs. */
function boundUdpPorts(): Set<number> | null {
  let table: string;
  try {
    table = readFileSync('/proc/net/udp', 'utf8');
  } catch {
    return null;
  }
  const ports = new Set<number>();
  for (const row of table.split('\n').slice(1)) {
    const local = row.trim().split(/\s+/)[1];
    if (local) ports.add(Number.parseInt(local.split(':')[1] ?? '0', 16));
  }
  return ports;
}

/** An even port whose odd neighbour is free too (ffmpeg binds RTP and RTP+1 for RTCP). */
async function freePortPair(network: Network): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const probe = await network.bindUdp({ address: '127.0.0.1' });
    const port = probe.local.port & ~1;
    probe.close();
    const taken = boundUdpPorts();
    if (port >= 1024 && !taken?.has(port) && !taken?.has(port + 1)) return port;
  }
  throw new Error('no free loopback port pair for the recorder');
}

export type RecorderEvents = { failed: [reason: string]; frame: [jpeg: Uint8Array] };

/**
 * Cuts ffmpeg's `image2pipe` MJPEG stream into whole JPEGs. Entropy-coded data stuffs every 0xFF
 * with 0x00, so FF D9 appears only as an end-of-image marker.
 */
export class JpegSplitter {
  #pending = Buffer.alloc(0);
  constructor(private readonly onFrame: (jpeg: Uint8Array) => void) {}

  push(chunk: Uint8Array): void {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk);
    for (;;) {
      const start = this.#pending.indexOf(SOI);
      if (start < 0) {
        // Keep a trailing 0xFF: it may be the first half of the next start marker.
        this.#pending = this.#pending.at(-1) === 0xff ? this.#pending.subarray(-1) : Buffer.alloc(0);
        return;
      }
      const end = this.#pending.indexOf(EOI, start + 2);
      if (end < 0) {
        this.#pending = this.#pending.subarray(start);
        // A frame this large is not a frame: drop it rather than grow without bound.
        if (this.#pending.length > 8 << 20) this.#pending = Buffer.alloc(0);
        return;
      }
      this.onFrame(Uint8Array.from(this.#pending.subarray(start, end + 2)));
      this.#pending = this.#pending.subarray(end + 2);
    }
  }
}
const SOI = Buffer.from([0xff, 0xd8]);
const EOI = Buffer.from([0xff, 0xd9]);

/**
 * ffmpeg starts with the first packet written (the receiver writes from the first keyframe on), so
 * the only silence its input sees is the end of the call.
 */
export class Recorder extends TypedEmitter<RecorderEvents> {
  readonly #queue: [MediaKind, Uint8Array][] = [];
  #ffmpeg?: FfmpegProcess;
  #ready = false;
  #closed = false;
  packetsWritten = 0;
  /** Where each stream goes, built once rather than per packet. */
  readonly #videoTo: Endpoint;
  readonly #audioTo?: Endpoint;

  private constructor(
    private readonly c: RecorderComponents,
    private readonly args: readonly string[],
    private readonly socket: UdpSocket,
    private readonly ports: { video: number; audio?: number },
    private readonly dir: string,
  ) {
    super();
    this.#videoTo = { address: '127.0.0.1', port: ports.video };
    if (ports.audio !== undefined) this.#audioTo = { address: '127.0.0.1', port: ports.audio };
  }

  static async start(c: RecorderComponents, init: RecorderInit): Promise<Recorder> {
    const video = await freePortPair(c.network);
    let audio: number | undefined;
    if (init.audio) {
      do audio = await freePortPair(c.network);
      while (audio === video);
    }
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-rec-'));
    const sdpPath = join(dir, 'in.sdp');
    writeFileSync(sdpPath, recorderSdp(init, { video, audio }));
    const audioCopy =
      init.audio && init.audio.name.toUpperCase() === 'PCMU' ? ['-c:a', 'aac'] : ['-c:a', 'copy'];
    const mp4 = init.path ? ['-map', '0', '-c:v', 'copy', ...audioCopy, '-f', 'mp4', init.path] : [];
    const live = init.liveFps
      ? [
          '-map',
          '0:v',
          '-r',
          String(init.liveFps),
          '-c:v',
          'mjpeg',
          '-q:v',
          '5',
          '-f',
          'image2pipe',
          'pipe:1',
        ]
      : [];
    if (mp4.length + live.length === 0) throw new Error('the recorder needs a path or a live view');
    const args = [
      '-y',
      '-protocol_whitelist',
      'file,udp,rtp',
      // Our jitter buffer already ordered the packets.
      '-reorder_queue_size',
      '0',
      '-analyzeduration',
      '2000000',
      '-fflags',
      '+genpts',
      // Once packets stop (the call ended) the read gives up after this many seconds, ffmpeg sees
      // the end of its input and writes the MP4 index.
      '-listen_timeout',
      '2',
      '-i',
      sdpPath,
      ...mp4,
      ...live,
    ];
    const socket = await c.network.bindUdp({ address: '127.0.0.1' });
    return new Recorder(c, args, socket, { video, audio }, dir);
  }

  /** The ffmpeg process, once the first packet started it. */
  get process(): FfmpegProcess | undefined {
    return this.#ffmpeg;
  }

  /** Hands one ordered RTP packet to ffmpeg (queued until ffmpeg listens). */
  write(kind: MediaKind, data: Uint8Array): void {
    if (this.#closed) return;
    if (!this.#ffmpeg) this.#spawn();
    if (!this.#ready) {
      if (this.#queue.length < 20_000) this.#queue.push([kind, Uint8Array.from(data)]);
      return;
    }
    this.#send(kind, data);
  }

  /** Finishes the MP4 and removes the SDP. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ffmpeg?.stop(4000);
    this.socket.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  #spawn(): void {
    const ffmpeg = new FfmpegProcess(this.c.ffmpeg, this.args);
    this.#ffmpeg = ffmpeg;
    const splitter = new JpegSplitter((jpeg) => this.emit('frame', jpeg));
    ffmpeg.stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
    ffmpeg.on('exit', (code, _signal, expected) => {
      if (!expected && !this.#closed)
        this.emit('failed', `the recorder (ffmpeg) exited with code ${code}: ${ffmpeg.lastLines}`);
    });
    void this.#waitReady(ffmpeg);
  }

  #send(kind: MediaKind, data: Uint8Array): void {
    const to = kind === 'video' ? this.#videoTo : this.#audioTo;
    if (!to) return;
    this.packetsWritten++;
    this.socket.send(data, to);
  }

  async #waitReady(ffmpeg: FfmpegProcess): Promise<void> {
    const clock = this.c.clock;
    const deadline = clock.now() + 10_000;
    while (!this.#closed && ffmpeg.running && clock.now() < deadline) {
      const bound = boundUdpPorts();
      if (bound === null) {
        // No procfs to watch: ffmpeg binds well within this on an idle machine.
        await sleep(clock, 1000);
        break;
      }
      if (bound.has(this.ports.video) && (this.ports.audio === undefined || bound.has(this.ports.audio)))
        break;
      await sleep(clock, 20);
    }
    // Paced, so a burst does not overflow ffmpeg's socket buffer; new packets queue behind these.
    while (this.#queue.length > 0 && !this.#closed) {
      for (const [kind, data] of this.#queue.splice(0, 64)) this.#send(kind, data);
      await sleep(clock, 2);
    }
    this.#ready = true;
  }
}
