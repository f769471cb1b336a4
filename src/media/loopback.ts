/**
 * A camera and a viewer joined by two loopback sockets: no NAT and no signaling. The demo's fallback
 * where network namespaces cannot be created, and the media tests' fixture.
 */
import { H264, OPUS } from './negotiate.ts';
import { MediaSession, type SessionComponents, type SessionInit } from './session.ts';

export interface LoopbackCall {
  readonly camera: MediaSession;
  readonly viewer: MediaSession;
  /** Closes the two path sockets (the sessions close on their own `close()`). */
  close(): void;
}

export async function startLoopbackCall(
  c: SessionComponents,
  init: Pick<SessionInit, 'recordPath' | 'peerTimeoutMs' | 'live'> & {
    readonly encode: NonNullable<SessionInit['encode']>;
  },
): Promise<LoopbackCall> {
  const a = await c.network.bindUdp({ address: '127.0.0.1' });
  const b = await c.network.bindUdp({ address: '127.0.0.1' });
  const close = (): void => {
    a.close();
    b.close();
  };
  try {
    const audio = { codec: OPUS, send: true, receive: false };
    const camera = await MediaSession.start(c, {
      path: { socket: a, remote: b.local },
      agreed: { sendVideo: true, receiveVideo: false, video: H264, audio },
      encode: init.encode,
      peerTimeoutMs: init.peerTimeoutMs,
    });
    const viewer = await MediaSession.start(c, {
      path: { socket: b, remote: a.local },
      agreed: {
        sendVideo: false,
        receiveVideo: true,
        video: H264,
        audio: { ...audio, send: false, receive: true },
      },
      recordPath: init.recordPath,
      live: init.live,
      peerTimeoutMs: init.peerTimeoutMs,
    }).catch(async (error: unknown) => {
      await camera.close();
      throw error;
    });
    return { camera, viewer, close };
  } catch (error) {
    close();
    throw error;
  }
}
