/**
 * How a TURN client reaches its server (RFC 8656 §3.1): datagrams on a UDP socket, or a TCP (or
 * TLS) connection carrying STUN messages and padded ChannelData back to back.
 */
import { type Endpoint, sameEndpoint } from '../net/address.ts';
import type { StreamConnection, UdpSocket } from '../net/types.ts';
import { padForStream, TurnStreamDeframer } from '../protocol/stun/turn.ts';

/** Largest frame the client accepts from a server over TCP: a full-size datagram and its headers. */
const MAX_STREAM_FRAME_BYTES = 65_535 + 4;

/** How the client reaches its server: datagrams on a UDP socket, or a TCP connection. */
export interface TurnTransport {
  /** Reliable transports are not retransmitted on (RFC 8489 §6.2.2). */
  readonly reliable: boolean;
  send(frame: Uint8Array): void;
  /** Calls `onFrame` with each datagram or frame from the server; returns the unsubscribe. */
  receive(onFrame: (frame: Uint8Array) => void): () => void;
  /** Ends the transport if the client owns it (the TCP connection); a UDP socket stays open. */
  end(): void;
}

export function udpTransport(socket: UdpSocket, server: Endpoint): TurnTransport {
  return {
    reliable: false,
    send: (frame) => socket.send(frame, server),
    receive: (onFrame) =>
      socket.on('message', (data, from) => {
        if (sameEndpoint(from, server)) onFrame(data);
      }),
    end: () => {},
  };
}

export function streamTransport(stream: StreamConnection, onBroken: (why: string) => void): TurnTransport {
  const deframer = new TurnStreamDeframer(MAX_STREAM_FRAME_BYTES);
  return {
    reliable: true,
    send: (frame) => {
      if (!stream.closed) stream.write(padForStream(frame));
    },
    receive: (onFrame) => {
      const offData = stream.on('data', (chunk) => {
        let frames: Uint8Array[];
        try {
          frames = deframer.push(chunk);
        } catch (error) {
          stream.close();
          onBroken(`the TURN server sent a bad frame: ${(error as Error).message}`);
          return;
        }
        for (const frame of frames) onFrame(frame);
      });
      const offClose = stream.on('close', (error) =>
        onBroken(`the TURN connection closed${error ? `: ${error.message}` : ''}`),
      );
      return () => {
        offData();
        offClose();
      };
    },
    end: () => stream.close(),
  };
}
