import { describe, expect, it } from 'vitest';
import { JitterBuffer } from '../../src/media/jitter-buffer.ts';
import { LiveView } from '../../src/media/live-view.ts';
import { agreed, answerFor, H264, OPUS, offerFor, PCMU } from '../../src/media/negotiate.ts';
import { JpegSplitter } from '../../src/media/recorder.ts';
import { startsKeyframe } from '../../src/protocol/h264.ts';
import {
  decodeRtcp,
  encodeDlrr,
  encodePli,
  encodeRr,
  encodeRrtr,
  encodeSr,
  msToNtp,
  ntpMiddle,
  roundTripMs,
} from '../../src/protocol/rtcp.ts';
import { decodeRtpHeader, isRtcp, isRtp, rewriteRtpHeader } from '../../src/protocol/rtp.ts';
import { decodeSdp, encodeSdp } from '../../src/protocol/sdp.ts';

const packet = (seq: number, at: number) => ({
  sequenceNumber: seq,
  data: new Uint8Array([seq & 0xff]),
  arrivedAtMs: at,
});

describe('jitter buffer', () => {
  it('puts reordered packets back in order', () => {
    const b = new JitterBuffer(60);
    expect(b.push(packet(10, 0)).map((p) => p.sequenceNumber)).toEqual([10]);
    expect(b.push(packet(12, 1))).toEqual([]);
    expect(b.push(packet(11, 2)).map((p) => p.sequenceNumber)).toEqual([11, 12]);
    expect(b.counters.lost).toBe(0);
  });

  it('gives up on a gap after its delay and counts it lost', () => {
    const b = new JitterBuffer(60);
    b.push(packet(65535, 0));
    b.push(packet(2, 5)); // 0 and 1 missing, across the wrap
    expect(b.release(50)).toEqual([]);
    expect(b.release(70).map((p) => p.sequenceNumber)).toEqual([2]);
    expect(b.counters.lost).toBe(2);
    expect(b.push(packet(1, 80))).toEqual([]);
    expect(b.counters.late).toBe(1);
  });
});

describe('RTP header', () => {
  it('reads and rewrites the fixed header, and demultiplexes RTP from RTCP and STUN', () => {
    const rtp = new Uint8Array([0x80, 0xe0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0x65, 0x88]);
    const h = decodeRtpHeader(rtp);
    expect(h).toMatchObject({
      payloadType: 96,
      marker: true,
      sequenceNumber: 1,
      timestamp: 2,
      ssrc: 3,
      payloadOffset: 12,
    });
    rewriteRtpHeader(rtp, { sequenceNumber: 0xffff, timestamp: 0xfffffffe, ssrc: 7 });
    expect(decodeRtpHeader(rtp)).toMatchObject({ sequenceNumber: 0xffff, timestamp: 0xfffffffe, ssrc: 7 });
    expect(startsKeyframe(rtp.subarray(12))).toBe(true);
    expect(isRtp(rtp)).toBe(true);
    expect(isRtcp(encodePli(1, 2))).toBe(true);
    expect(isRtp(new Uint8Array([0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]))).toBe(false);
  });

  it('rejects truncated headers, CSRC lists and extensions that run past the end', () => {
    expect(() => decodeRtpHeader(new Uint8Array(11))).toThrow(/shorter/);
    expect(() => decodeRtpHeader(new Uint8Array([0x8f, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/CSRC/);
    expect(() =>
      decodeRtpHeader(new Uint8Array([0x90, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9])),
    ).toThrow(/extension/);
  });
});

describe('RTCP', () => {
  it('round-trips SR, RR, PLI and the XR blocks a receive-only viewer measures RTT with', () => {
    const ntp = msToNtp(123_456);
    const sr = decodeRtcp(encodeSr({ ssrc: 5, ntp, rtpTimestamp: 9, packetCount: 10, octetCount: 1000 }));
    expect(sr.sr).toMatchObject({ ssrc: 5, ntpMid: ntpMiddle(ntp), packetCount: 10, octetCount: 1000 });
    const block = {
      ssrc: 5,
      fractionLost: 64,
      packetsLost: 3,
      highestSequence: 70_000,
      jitter: 90,
      lsr: 1,
      dlsr: 2,
    };
    const compound = new Uint8Array([...encodeRr(6, [block]), ...encodeRrtr(6, ntp), ...encodePli(6, 5)]);
    const summary = decodeRtcp(compound);
    expect(summary.reports[0]).toMatchObject(block);
    expect(summary.rrtr).toEqual({ ssrc: 6, ntpMid: ntpMiddle(ntp) });
    expect(summary.keyframeRequests).toEqual([5]);
    const dlrr = decodeRtcp(encodeDlrr(5, [{ ssrc: 6, lrr: 100, dlrr: 200 }]));
    expect(dlrr.dlrr).toEqual([{ ssrc: 6, lrr: 100, dlrr: 200 }]);
  });

  it('computes RTT as A - LSR - DLSR (RFC 3550 §6.4.1) and ignores a missing echo', () => {
    const lsr = ntpMiddle(msToNtp(10_000));
    const now = ntpMiddle(msToNtp(10_150));
    expect(roundTripMs(now, lsr, Math.round(0.1 * 65536))).toBeCloseTo(50, 0);
    expect(roundTripMs(now, 0, 0)).toBeNull();
  });

  it('rejects a length that runs past the datagram', () => {
    const rr = encodeRr(6, []);
    rr[3] = 40;
    expect(() => decodeRtcp(rr)).toThrow(/length/);
    expect(() => decodeRtcp(new Uint8Array([0x80, 201, 0]))).toThrow();
  });
});

/** A call description for SDP round trips. */
const DESCRIPTION = {
  publicEndpoint: { address: '198.18.1.1', port: 20_000 },
  ufrag: 'abcd',
  pwd: 'a'.repeat(24),
  nat: 'x',
  mode: 'sc2c',
  portSource: 'predicted',
  rtcpMux: true,
} as const;

describe('media offer/answer', () => {
  const camera = { send: true, receive: false, audio: [OPUS, PCMU] };
  const viewer = { send: false, receive: true, audio: [OPUS, PCMU] };

  it('a viewer offer to a camera: video and audio flow camera -> viewer', () => {
    const answer = answerFor(offerFor(viewer), camera);
    if ('reason' in answer) throw new Error(answer.reason);
    expect(answer.map((l) => l.direction)).toEqual(['sendonly', 'sendonly']);
    expect(agreed(answer, true)).toMatchObject({
      sendVideo: true,
      receiveVideo: false,
      audio: { send: true },
    });
    expect(agreed(answer, false)).toMatchObject({
      sendVideo: false,
      receiveVideo: true,
      audio: { receive: true },
    });
  });

  it('survives the SDP round trip', () => {
    const media = offerFor({ ...viewer, send: true });
    const sdp = encodeSdp({ ...DESCRIPTION, media }, 1);
    expect(decodeSdp(sdp).media).toEqual(media);
  });

  it('carries the DTLS fingerprint and setup, and refuses SAVP without them', () => {
    const base = DESCRIPTION;
    const fingerprint = Array.from({ length: 32 }, (_, i) =>
      (i * 7).toString(16).padStart(2, '0').toUpperCase(),
    ).join(':');
    const sdp = encodeSdp({ ...base, dtls: { fingerprint, setup: 'actpass' } }, 1);
    expect(sdp).toContain('UDP/TLS/RTP/SAVP');
    expect(decodeSdp(sdp).dtls).toEqual({ fingerprint, setup: 'actpass' });
    expect(decodeSdp(encodeSdp(base, 1)).dtls).toBeUndefined();
    expect(() => decodeSdp(sdp.replace(/a=fingerprint.*\r\n/, ''))).toThrow(/fingerprint:sha-256/);
    expect(() => decodeSdp(sdp.replace('a=setup:actpass', 'a=setup:holdconn'))).toThrow(/a=setup/);
    // Found by the fuzzer: sdp-transform reads the protocol of `m=video 200 0 …` as a number.
    expect(() => decodeSdp(encodeSdp(base, 1).replace(/m=video (\d+) /, 'm=video $1 0 '))).not.toThrow(
      TypeError,
    );
  });

  it('refuses a codec we do not have, and two cameras, with the reason', () => {
    const vp8 = [
      {
        kind: 'video' as const,
        codecs: [{ payloadType: 100, name: 'VP8', clockRate: 90_000 }],
        direction: 'recvonly' as const,
      },
    ];
    expect(answerFor(vp8, camera)).toEqual({
      reason: expect.stringMatching(/no common video codec.*VP8.*H264/),
    });
    expect(answerFor(offerFor(camera), camera)).toEqual({
      reason: expect.stringMatching(/no media would flow/),
    });
    expect(answerFor([{ kind: 'video', codecs: [H264], direction: 'inactive' }], camera)).toEqual([
      { kind: 'video', codecs: [H264], direction: 'inactive' },
    ]);
  });
});

describe('live view', () => {
  const jpeg = (fill: number, size = 50): Uint8Array =>
    Uint8Array.from([0xff, 0xd8, ...new Array<number>(size).fill(fill), 0xff, 0x00, 0xff, 0xd9]);

  it('cuts an MJPEG byte stream into whole JPEGs however it is chunked, skipping garbage', () => {
    const frames = [jpeg(1), jpeg(2, 300), jpeg(3, 7)];
    const stream = Buffer.concat([Buffer.from([9, 9, 9]), ...frames.map((f) => Buffer.from(f))]);
    for (const chunk of [1, 5, 64, stream.length]) {
      const out: Uint8Array[] = [];
      const splitter = new JpegSplitter((f) => out.push(f));
      for (let i = 0; i < stream.length; i += chunk) splitter.push(stream.subarray(i, i + chunk));
      expect(out).toEqual(frames);
    }
  });

  it('serves a page, the latest snapshot and a multipart stream on loopback, and refuses the rest', async () => {
    const view = await LiveView.start({ title: 'cam <1>' });
    expect(view.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await (await fetch(view.url)).text();
    expect(page).toContain('cam &lt;1&gt;');
    expect(page).toContain('/stream.mjpg');
    expect((await fetch(`${view.url}snapshot.jpg`)).status).toBe(503);
    expect((await fetch(`${view.url}nope`)).status).toBe(404);
    expect((await fetch(view.url, { method: 'POST' })).status).toBe(405);
    const stream = await fetch(`${view.url}stream.mjpg`);
    for (let i = 0; i < 50 && view.watchers === 0; i++) await new Promise((r) => setTimeout(r, 10));
    view.push(jpeg(7));
    view.push(jpeg(8));
    const reader = stream.body!.getReader();
    let bytes = Buffer.alloc(0);
    while ((bytes.toString('latin1').match(/--sc2cframe/g) ?? []).length < 2) {
      const { value } = await reader.read();
      bytes = Buffer.concat([bytes, value!]);
    }
    await reader.cancel();
    expect(bytes.toString('latin1')).toContain(`Content-Length: ${jpeg(7).byteLength}`);
    const snapshot = new Uint8Array(await (await fetch(`${view.url}snapshot.jpg`)).arrayBuffer());
    expect(snapshot).toEqual(jpeg(8));
    expect(view.framesShown).toBe(2);
    await view.close();
  });

  it('says which port is taken', async () => {
    const first = await LiveView.start();
    const port = Number(new URL(first.url).port);
    await expect(LiveView.start({ port })).rejects.toThrow(`port ${port} is in use`);
    await first.close();
  });
});
