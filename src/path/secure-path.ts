/**
 * A call's media path with DTLS-SRTP on it (RFC 5764): the DTLS handshake runs over the path's own
 * socket (so over whichever route it carries, direct or relay), then every RTP and RTCP packet
 * leaves as SRTP/SRTCP and every one that arrives must authenticate. The media code above sees a
 * plain `MediaPath`; the route switching below it keeps the one SRTP session across moves.
 */

import type { MediaPath } from '../media/path.ts';
import type { Endpoint } from '../net/address.ts';
import { LayeredUdpSocket } from '../net/layered-socket.ts';
import type { UdpSocket } from '../net/types.ts';
import { isDtls } from '../protocol/dtls/record.ts';
import { isRtcp, isRtp } from '../protocol/rtp.ts';
import { SrtpProfileName } from '../protocol/srtp/keys.ts';
import { type SrtpCounters, SrtpSession } from '../protocol/srtp/srtp.ts';
import type { DtlsEndpoint, DtlsKeys } from './dtls-endpoint.ts';

export interface SecureCounters extends SrtpCounters {
  /** Media we were asked to send before the keys existed (the handshake still running). */
  unkeyed: number;
}

export class DtlsFailedError extends Error {
  constructor(reason: string) {
    super(`DTLS: ${reason}`);
    this.name = 'DtlsFailedError';
  }
}

export class SecurePath implements MediaPath {
  readonly socket: UdpSocket;
  readonly rtcp?: { readonly socket: UdpSocket; readonly remote: Endpoint };
  readonly #sockets: SrtpSocket[] = [];
  #srtp?: SrtpSession;
  #unkeyed = 0;
  #closed = false;

  private constructor(
    /** The path under the encryption: what crosses the wire. */
    readonly inner: MediaPath,
    readonly endpoint: DtlsEndpoint | undefined,
    sourceChecked: boolean,
  ) {
    const main = new SrtpSocket(this, inner.socket, sourceChecked ? undefined : inner.remote, endpoint);
    this.#sockets.push(main);
    this.socket = main;
    if (inner.rtcp) {
      // Without rtcp-mux the RTCP pair is protected with the same session's SRTCP keys: one
      // handshake per call rather than one per component (RFC 5764 §4.1 would run two).
      const rtcp = new SrtpSocket(this, inner.rtcp.socket, inner.rtcp.remote, undefined);
      this.#sockets.push(rtcp);
      this.rtcp = { socket: rtcp, remote: inner.rtcp.remote };
    }
  }

  /**
   * Runs (or finishes) the handshake over `path` and resolves when SRTP keys exist. `endpoint` may
   * have started earlier on the punch's socket; from here its datagrams go over the path. Rejects
   * with `DtlsFailedError` (a fingerprint that does not match, a timeout, the call closing).
   * `sourceChecked`: the path's socket already drops what its peer did not send (a `RoutedPath`,
   * whose peer address changes with the route); otherwise only `path.remote` is heard.
   */
  static establish(path: MediaPath, endpoint: DtlsEndpoint, sourceChecked = false): Promise<SecurePath> {
    const secure = new SecurePath(path, endpoint, sourceChecked);
    endpoint.setSend((datagram) => path.socket.send(datagram, path.remote), true);
    return new Promise<SecurePath>((resolve, reject) => {
      const done = (keys: DtlsKeys): void => {
        secure.#keyed(keys);
        resolve(secure);
      };
      if (endpoint.keys) {
        done(endpoint.keys);
        return;
      }
      // The early handshake may have failed already, while the punch ran.
      if (endpoint.failure !== undefined) {
        secure.close();
        reject(new DtlsFailedError(endpoint.failure));
        return;
      }
      endpoint.on('connected', done);
      endpoint.on('failed', (reason) => {
        secure.close();
        reject(new DtlsFailedError(reason));
      });
      endpoint.start();
    });
  }

  /**
   * A path keyed without a handshake, from keys agreed elsewhere: for benchmarks and tests of the
   * SRTP layer alone. Calls always use `establish`.
   */
  static fromKeys(path: MediaPath, keys: DtlsKeys, sourceChecked = false): SecurePath {
    const secure = new SecurePath(path, undefined, sourceChecked);
    secure.#keyed(keys);
    return secure;
  }

  get remote(): Endpoint {
    return this.inner.remote;
  }

  /** e.g. `DTLS-SRTP AEAD_AES_128_GCM`. */
  get encryption(): string {
    return this.#srtp ? `DTLS-SRTP ${SrtpProfileName[this.#srtp.profile]}` : 'DTLS-SRTP (handshaking)';
  }

  get counters(): SecureCounters {
    const s = this.#srtp?.counters ?? { authFailures: 0, replayed: 0, malformed: 0 };
    return { ...s, unkeyed: this.#unkeyed };
  }

  get srtp(): SrtpSession | undefined {
    return this.#srtp;
  }

  /** Idempotent: ends DTLS (close_notify once connected) and closes the path below. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.endpoint?.close();
    for (const socket of this.#sockets) socket.closeInner();
  }

  #keyed(keys: DtlsKeys): void {
    this.#srtp = new SrtpSession(keys.profile, keys.local, keys.remote);
  }

  /** @internal */
  protect(data: Uint8Array): Uint8Array | undefined {
    const srtp = this.#srtp;
    if (!srtp) {
      this.#unkeyed++;
      return undefined;
    }
    if (isRtcp(data)) return srtp.protectRtcp(data);
    if (isRtp(data)) return srtp.protectRtp(data);
    return undefined;
  }

  /** @internal */
  unprotect(data: Uint8Array): Uint8Array | undefined {
    const srtp = this.#srtp;
    if (!srtp) return undefined;
    if (isRtcp(data)) return srtp.unprotectRtcp(data);
    if (isRtp(data)) return srtp.unprotectRtp(data);
    return undefined;
  }
}

/** What the media code holds: plain RTP in and out, SRTP on the wire. */
class SrtpSocket extends LayeredUdpSocket implements UdpSocket {
  readonly #off: () => void;

  constructor(
    private readonly path: SecurePath,
    private readonly inner: UdpSocket,
    /** Only datagrams from here count; undefined when the socket below already checks. */
    remote: Endpoint | undefined,
    dtls: DtlsEndpoint | undefined,
  ) {
    super();
    this.#off = inner.on('message', (data, from) => {
      // A raw socket also hears punch checks from other candidates; only the path's peer counts.
      if (remote && (from.address !== remote.address || from.port !== remote.port)) return;
      if (isDtls(data)) {
        dtls?.handle(data);
        return;
      }
      const plain = this.path.unprotect(data);
      if (plain) this.deliver(plain, from);
    });
    inner.on('close', () => this.emit('close'));
  }

  get local(): Endpoint {
    return this.inner.local;
  }

  send(data: Uint8Array, to: Endpoint): void {
    const out = this.path.protect(data);
    if (out) this.inner.send(out, to);
  }

  setTTL(ttl: number): void {
    this.inner.setTTL(ttl);
  }

  sendWithTtl(): Promise<void> {
    return Promise.reject(new Error('an SRTP path carries media, not low-TTL primers'));
  }

  close(): void {
    this.path.close();
  }

  closeInner(): void {
    this.#off();
    this.inner.close();
  }
}
