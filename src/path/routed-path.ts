/**
 * The media path of one call, over the direct pair SC2C punched or over the TURN relay, switchable
 * while media flows: the sender and receiver see one socket and one remote, and never restart.
 *
 * Relay route: we send from our relay socket straight to the peer's relayed address (the peer's
 * allocation permits our public IP), and receive what peers send to our relayed address through
 * our TURN client. Each direction crosses the relay once; twice when we reach the server over TCP,
 * since then our media leaves through our own allocation.
 *
 * The path follows the peer: media arriving over the other route means the peer moved (it saw the
 * direct path die, or a new direct path confirmed), so we move too. A watchdog moves to the relay
 * when the direct route goes silent for longer than its usual gaps.
 */

import type { Endpoint } from '../net/address.ts';
import { type Clock, every, type Timer } from '../net/clock.ts';
import { LayeredUdpSocket } from '../net/layered-socket.ts';
import type { UdpSocket } from '../net/types.ts';
import { isDtls } from '../protocol/dtls/record.ts';
import { decodeRelayMoved, encodeRelayMoved, isRelayMoved } from '../protocol/rtcp.ts';
import { isRtcp, isRtp } from '../protocol/rtp.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { FramedSocket } from './framed-socket.ts';
import { type ConsentCredentials, RouteConsent, type RouteConsentInit } from './route-consent.ts';

export type Route = 'direct' | 'relay';

export interface RouteCounters {
  packetsSent: number;
  bytesSent: number;
  packetsReceived: number;
  bytesReceived: number;
}

/** Where relayed media comes from: a TURN client's data events. */
export interface RelayInbound {
  on(event: 'data', listener: (data: Uint8Array, peer: Endpoint) => void): () => void;
}

export interface RelayLeg {
  /** Receives what the peer sends to our relayed address. */
  readonly inbound: RelayInbound;
  /** What we send relayed media with: the TURN client's UDP socket, or its allocation over TCP. */
  readonly socket: Pick<UdpSocket, 'local' | 'send'>;
  /** The peer's relayed address. */
  readonly peerRelayed: Endpoint;
}

export interface RoutedPathInit {
  readonly direct?: { readonly socket: UdpSocket; readonly remote: Endpoint };
  readonly relay?: RelayLeg;
  readonly route: Route;
  /** Silence on the direct route that counts as dead, at the least. Default 500 ms. */
  readonly deadAfterMs?: number;
  /**
   * The call's credentials. With them, relayed media waits for the peer's relayed address to
   * answer a check, both routes keep consent with a check every 5 s (`RouteConsent`; media on a
   * route stops 30 s after its last answer), and route changes in band are signed. Without them
   * (tests of the route logic alone) the legs are trusted as given and `SC2R` is ignored.
   */
  readonly consent?: ConsentCredentials & RouteConsentInit;
}

/** Drops on the path: what was refused, by why. */
export interface PathDrops {
  /** Media for the relay route held back: the peer's relayed address has not answered a check. */
  unconfirmedRelay: number;
  /** Media for the direct route held back: the peer stopped answering checks there. */
  unconfirmedDirect: number;
  /** `SC2R` route changes whose tag did not verify. */
  forgedRouteChanges: number;
}

export type RoutedPathEvents = {
  route: [route: Route, why: string];
  /** Consent on the relay leg was given or withdrawn. */
  consent: [confirmed: boolean, why: string];
};

const emptyRoute = (): RouteCounters => ({
  packetsSent: 0,
  bytesSent: 0,
  packetsReceived: 0,
  bytesReceived: 0,
});

export class RoutedPath extends TypedEmitter<RoutedPathEvents> {
  readonly counters: Record<Route, RouteCounters> = { direct: emptyRoute(), relay: emptyRoute() };
  readonly drops: PathDrops = { unconfirmedRelay: 0, unconfirmedDirect: 0, forgedRouteChanges: 0 };
  readonly socket: UdpSocket;
  #route: Route;
  #direct?: { socket: UdpSocket; remote: Endpoint; off: () => void };
  #relay?: RelayLeg & { off: () => void };
  #consent?: RouteConsent;
  #directConsent?: RouteConsent;
  readonly #consentInit?: ConsentCredentials & RouteConsentInit;
  #lastDirectAtMs: number | null = null;
  #switchedAtMs = Number.NEGATIVE_INFINITY;
  /** Media packets heard on the current direct leg: the watchdog arms after a few. */
  #directHeard = 0;
  /** Of those, RTP: a side that hears only RTCP (a camera's viewer reports) is patient. */
  #directRtpHeard = 0;
  /** Smoothed gap between media packets on the direct route. */
  #gapMs = 0;
  readonly #watch: Timer;
  readonly #facade: FacadeSocket;
  #closed = false;
  switches = 0;

  constructor(
    private readonly c: { readonly clock: Clock },
    init: RoutedPathInit,
  ) {
    super();
    this.#consentInit = init.consent;
    this.#route = init.route;
    this.#facade = new FacadeSocket(this);
    this.socket = this.#facade;
    if (init.direct) this.setDirect(init.direct.socket, init.direct.remote);
    if (init.relay) this.setRelay(init.relay);
    const deadAfterMs = init.deadAfterMs ?? 500;
    this.#watch = every(c.clock, 100, () => this.#checkDirect(deadAfterMs));
  }

  get route(): Route {
    return this.#route;
  }

  get remote(): Endpoint {
    return this.#route === 'relay' && this.#relay ? this.#relay.peerRelayed : (this.#direct?.remote ?? ZERO);
  }

  /** The socket media leaves from on the current route. */
  get local(): Endpoint {
    const socket = this.#route === 'relay' ? this.#relay?.socket : this.#direct?.socket;
    return socket?.local ?? ZERO;
  }

  get hasRelay(): boolean {
    return this.#relay !== undefined;
  }

  get hasDirect(): boolean {
    return this.#direct !== undefined;
  }

  /** Issue 21: the direct pair's transport, `tcp` for a framed TCP connection; undefined without one. */
  get directTransport(): 'udp' | 'tcp' | undefined {
    if (!this.#direct) return undefined;
    return this.#direct.socket instanceof FramedSocket ? 'tcp' : 'udp';
  }

  /**
   * A (new) direct pair: after the first punch, or a background re-punch. A re-punch's offer and
   * answer carried new credentials, which the peer's puncher on the new pair answers checks with:
   * consent on that pair asks with them (`credentials`), or it would lapse 30 s later.
   */
  setDirect(socket: UdpSocket, remote: Endpoint, credentials?: ConsentCredentials): void {
    this.#direct?.off();
    const off = socket.on('message', (data, from) => {
      if (from.address !== remote.address || from.port !== remote.port) {
        // Punch checks from other candidates still reach the puncher on the raw socket.
        return;
      }
      if (this.#directConsent?.handle(data)) return;
      this.#received('direct', data, from);
    });
    this.#direct = { socket, remote, off };
    const init = this.#consentInit;
    if (init && !this.#closed) {
      // The punch just confirmed this pair; consent keeps it confirmed. The puncher on the same
      // socket answers the peer's checks, so this one only asks.
      const send = (data: Uint8Array): void => socket.send(data, remote);
      if (this.#directConsent && !credentials) this.#directConsent.restart(send, true);
      else {
        this.#directConsent?.close();
        this.#directConsent = new RouteConsent(
          this.c,
          credentials ?? init,
          send,
          { ...init, confirmed: true, answer: false },
          (confirmed, why) => this.#onDirectConsent(confirmed, why),
        );
      }
    }
    this.#lastDirectAtMs = this.c.clock.now();
    this.#directHeard = 0;
    this.#directRtpHeard = 0;
    this.#gapMs = 0;
  }

  /** The peer's relayed address as we last heard it. */
  get peerRelayed(): Endpoint | undefined {
    return this.#relay?.peerRelayed;
  }

  /** A (new) relay leg: at call set-up, or after re-allocating. */
  setRelay(relay: RelayLeg): void {
    this.#relay?.off();
    const off = relay.inbound.on('data', (data, from) => this.#received('relay', data, from));
    this.#relay = { ...relay, off };
    const send = (data: Uint8Array): void => relay.socket.send(data, relay.peerRelayed);
    const init = this.#consentInit;
    if (!init || this.#closed) return;
    if (this.#consent) this.#consent.restart(send);
    else
      this.#consent = new RouteConsent(this.c, init, send, init, (confirmed, why) =>
        this.emit('consent', confirmed, why),
      );
  }

  /** The direct route lost consent: media leaves it, for the relay when the relay may carry it. */
  #onDirectConsent(confirmed: boolean, why: string): void {
    this.emit('consent', confirmed, `direct: ${why}`);
    if (!confirmed && this.#route === 'direct' && this.#relay && this.relayConfirmed)
      this.use('relay', `${why} on the direct path`);
  }

  /** May media go over the relay leg: no consent needed (none configured), or consent given. */
  get relayConfirmed(): boolean {
    return !this.#consentInit || this.#consent?.confirmed === true;
  }

  /** The relay leg's consent checks: sent, answered, rejected. */
  get consentCounters(): RouteConsent['counters'] | undefined {
    return this.#consent?.counters;
  }

  /** Moves media to `route`; a no-op when already there or when that route has no leg. */
  use(route: Route, why: string): void {
    if (this.#closed || route === this.#route) return;
    if (route === 'relay' && !this.#relay) return;
    if (route === 'direct' && !this.#direct) return;
    this.#route = route;
    this.#switchedAtMs = this.c.clock.now();
    this.switches++;
    if (route === 'direct') this.#lastDirectAtMs = this.c.clock.now();
    this.emit('route', route, why);
  }

  send(data: Uint8Array): void {
    if (this.#closed) return;
    const route = this.#route;
    if (route === 'relay' && this.#relay) {
      // Media only to a confirmed address: an INVITE's relay candidate is a claim until it answers.
      if (!this.relayConfirmed) {
        this.drops.unconfirmedRelay++;
        return;
      }
      this.#relay.socket.send(data, this.#relay.peerRelayed);
    } else if (this.#direct) {
      if (this.#directConsent && !this.#directConsent.confirmed) {
        this.drops.unconfirmedDirect++;
        return;
      }
      this.#direct.socket.send(data, this.#direct.remote);
    } else return;
    const counters = this.counters[route];
    counters.packetsSent++;
    counters.bytesSent += data.byteLength;
  }

  /** Stops listening; the sockets belong to the gateway. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch.clear();
    this.#consent?.close();
    this.#directConsent?.close();
    this.#direct?.off();
    this.#relay?.off();
    this.#facade.emit('close');
  }

  /**
   * Tells the peer in band that our relayed address changed (our NAT dropped its mappings, so the
   * allocation was made again): a few RTCP APP `SC2R` packets over the relay.
   */
  announceRelay(relayed: Endpoint): void {
    if (!this.#consentInit) return;
    const packet = encodeRelayMoved(0, relayed, new TextEncoder().encode(this.#consentInit.localPwd));
    for (let i = 0; i < 3; i++) this.c.clock.setTimeout(() => this.#sendControl(packet), i * 100);
  }

  /**
   * A control packet on the current route, counted as media. Over the relay it does not wait for
   * consent: it is what lets the peer follow us to a new relayed address, and is signed.
   */
  #sendControl(packet: Uint8Array): void {
    if (this.#closed) return;
    if (this.#route === 'relay' && this.#relay) this.#relay.socket.send(packet, this.#relay.peerRelayed);
    else this.send(packet);
  }

  #received(route: Route, data: Uint8Array, from: Endpoint): void {
    if (this.#closed) return;
    if (route === 'relay' && this.#consent?.handle(data)) return;
    // DTLS travels with the media (RFC 7983): the call's one handshake follows the route.
    const media = isRtp(data) || isRtcp(data) || isDtls(data);
    if (!media) return;
    if (isRtcp(data) && isRelayMoved(data)) {
      const moved = this.#consentInit
        ? decodeRelayMoved(data, new TextEncoder().encode(this.#consentInit.remotePwd))
        : undefined;
      if (!moved) {
        this.drops.forgedRouteChanges++;
        return;
      }
      if (
        this.#relay &&
        (moved.address !== this.#relay.peerRelayed.address || moved.port !== this.#relay.peerRelayed.port)
      )
        this.setRelay({ inbound: this.#relay.inbound, socket: this.#relay.socket, peerRelayed: moved });
      if (route === 'relay' && this.#route !== 'relay' && this.#settled())
        this.use('relay', 'the peer moved to the relay');
      return;
    }
    const counters = this.counters[route];
    counters.packetsReceived++;
    counters.bytesReceived += data.byteLength;
    // The handshake's flights come in bursts before any media: timing the path by them would make a
    // side that then hears only RTCP (once a second) think the path died half a second later.
    if (route === 'direct' && !isDtls(data)) {
      const now = this.c.clock.now();
      const gap = now - (this.#lastDirectAtMs ?? now);
      this.#gapMs = this.#directHeard <= 1 ? gap : 0.9 * this.#gapMs + 0.1 * gap;
      this.#directHeard++;
      if (isRtp(data)) this.#directRtpHeard++;
      this.#lastDirectAtMs = now;
    }
    // Media on the other route: the peer moved, so follow it. Not right after a switch: packets
    // already on their way over the old route would bounce us back.
    if (route !== this.#route && this.#settled())
      this.use(
        route,
        route === 'relay' ? 'the peer moved to the relay' : 'the peer is back on the direct path',
      );
    this.#facade.receive(data, from);
  }

  /** Long enough since the last switch that traffic on the other route means a move, not stragglers. */
  #settled(): boolean {
    return this.c.clock.now() - this.#switchedAtMs > HOLD_MS;
  }

  #checkDirect(deadAfterMs: number): void {
    // Armed once the direct leg has carried media: a side that only sends hears nothing to time,
    // and follows its peer instead.
    if (this.#route !== 'direct' || !this.#relay || this.#lastDirectAtMs === null || this.#directHeard < 3)
      return;
    const silentMs = this.c.clock.now() - this.#lastDirectAtMs;
    // A send-only side hears RTCP once a second: its usual gap is long, so is its patience. Its
    // first gaps can be short (keyframe requests come in bursts), so it waits some report
    // intervals whatever they measured: its peer, hearing the media stop, moves within
    // `deadAfterMs`, and this side follows the media it then hears over the relay.
    const limit = Math.max(
      deadAfterMs,
      4 * this.#gapMs,
      this.#directRtpHeard < 3 ? RTCP_ONLY_PATIENCE_MS : 0,
    );
    if (silentMs > limit) this.use('relay', `nothing on the direct path for ${Math.round(silentMs)} ms`);
  }
}

const ZERO: Endpoint = { address: '0.0.0.0', port: 0 };
/** Silence that counts as a dead direct path for a side that hears only RTCP: four report intervals. */
const RTCP_ONLY_PATIENCE_MS = 4000;
/** After a switch, how long packets on the old route are taken for stragglers. */
const HOLD_MS = 500;

/** What media code holds: sends go by the current route, messages come from both. */
class FacadeSocket extends LayeredUdpSocket implements UdpSocket {
  constructor(private readonly path: RoutedPath) {
    super();
  }

  get local(): Endpoint {
    return this.path.local;
  }

  send(data: Uint8Array, _to: Endpoint): void {
    this.path.send(data);
  }

  setTTL(): void {
    // The route decides; TTL tricks belong to the puncher's raw socket.
  }

  sendWithTtl(): Promise<void> {
    return Promise.reject(new Error('a routed path carries media, not low-TTL primers'));
  }

  close(): void {
    this.path.close();
  }

  /** A datagram from either route, for media code. */
  receive(data: Uint8Array, from: Endpoint): void {
    this.deliver(data, from);
  }
}
