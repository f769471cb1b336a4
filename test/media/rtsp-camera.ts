/**
 * A small RTSP camera for tests (RFC 2326, RTP interleaved over the RTSP TCP connection, which is
 * what the gateway asks for): ffmpeg plays an H.264 clip to a loopback UDP port as RTP without
 * re-encoding and writes its SDP; this server answers OPTIONS, DESCRIBE, SETUP, PLAY and TEARDOWN
 * and copies every RTP packet to each playing client. It counts the PLAYs: how many sessions
 * pulled the stream.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RtspCamera {
  readonly url: string;
  /** PLAY requests answered: one per session that pulled the stream. */
  readonly plays: () => number;
  close(): Promise<void>;
}

/** Requests are small; a client sending more than this without a full request is dropped. */
const MAX_REQUEST_BYTES = 16 * 1024;

export async function startRtspCamera(ffmpeg: string, clip: string): Promise<RtspCamera> {
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-rtsp-'));
  const sdpPath = join(dir, 'stream.sdp');
  const rtp = createSocket('udp4');
  await new Promise<void>((resolve) => rtp.bind(0, '127.0.0.1', resolve));
  const port = rtp.address().port;
  const encoder: ChildProcess = spawn(
    ffmpeg,
    [
      ...['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', clip],
      ...['-map', '0:v:0', '-c:v', 'copy', '-bsf:v', 'h264_mp4toannexb', '-payload_type', '96'],
      ...['-sdp_file', sdpPath, '-f', 'rtp', `rtp://127.0.0.1:${port}?pkt_size=1200`],
    ],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 10_000;
  while (!existsSync(sdpPath) || !readFileSync(sdpPath, 'utf8').includes('m=video')) {
    if (Date.now() > deadline) throw new Error('the test camera wrote no SDP');
    await new Promise((r) => setTimeout(r, 50));
  }
  const sdp = readFileSync(sdpPath, 'utf8')
    .replace(/^SDP:\n/, '')
    .replace(/(m=video[^\n]*\n)/, '$1a=control:trackID=0\n')
    .replace(/\n/g, '\r\n');

  const playing = new Set<Socket>();
  const clients = new Set<Socket>();
  let plays = 0;
  rtp.on('message', (packet) => {
    const frame = Buffer.alloc(4 + packet.length);
    frame[0] = 0x24; // '$'
    frame[1] = 0; // channel 0: RTP of track 0
    frame.writeUInt16BE(packet.length, 2);
    packet.copy(frame, 4);
    for (const client of playing) if (client.writable) client.write(frame);
  });

  const server = createServer((client) => {
    let buffer = Buffer.alloc(0);
    clients.add(client);
    client.on('error', () => playing.delete(client));
    client.on('close', () => {
      playing.delete(client);
      clients.delete(client);
    });
    client.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (buffer.length > 0 && buffer[0] === 0x24) {
          // The client's interleaved RTCP: skip it.
          if (buffer.length < 4) return;
          const length = 4 + buffer.readUInt16BE(2);
          if (buffer.length < length) return;
          buffer = buffer.subarray(length);
          continue;
        }
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buffer.length > MAX_REQUEST_BYTES) client.destroy();
          return;
        }
        const request = buffer.subarray(0, end).toString();
        buffer = buffer.subarray(end + 4);
        answer(client, request);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `rtsp://127.0.0.1:${(server.address() as { port: number }).port}/live`;

  function answer(client: Socket, request: string): void {
    const [line = '', ...headers] = request.split('\r\n');
    const method = line.split(' ')[0];
    const cseq =
      headers
        .find((h) => /^cseq:/i.test(h))
        ?.split(':')[1]
        ?.trim() ?? '0';
    const reply = (extra: string[], body = ''): void => {
      const head = ['RTSP/1.0 200 OK', `CSeq: ${cseq}`, ...extra];
      if (body) head.push(`Content-Length: ${Buffer.byteLength(body)}`);
      client.write(`${head.join('\r\n')}\r\n\r\n${body}`);
    };
    switch (method) {
      case 'OPTIONS':
        reply(['Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN']);
        return;
      case 'DESCRIBE':
        reply(['Content-Type: application/sdp', `Content-Base: ${url}/`], sdp);
        return;
      case 'SETUP':
        reply(['Transport: RTP/AVP/TCP;unicast;interleaved=0-1', 'Session: 12345678']);
        return;
      case 'PLAY':
        plays++;
        playing.add(client);
        reply(['Session: 12345678', 'Range: npt=0.000-']);
        return;
      case 'TEARDOWN':
        playing.delete(client);
        reply(['Session: 12345678']);
        return;
      default:
        client.write(`RTSP/1.0 501 Not Implemented\r\nCSeq: ${cseq}\r\n\r\n`);
    }
  }

  return {
    url,
    plays: () => plays,
    async close() {
      encoder.kill('SIGKILL');
      for (const client of clients) client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rtp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
