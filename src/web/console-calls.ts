/**
 * The calls an operator console places (issue 22): one SC2C call per open tile, its media received
 * and remuxed for the browser (fMP4, no transcoding) or decoded to MJPEG for a browser without
 * Media Source Extensions, and a live panel of its route and quality. Closing a tile hangs up.
 * Every call ends in a call record (`sc2c report`), however it ends. Bounded by `maxCalls`.
 */

import type { GatewayAccounting } from '../cli/accounting.ts';
import { finalPath, routeBytes } from '../cli/call-summary.ts';
import { type MediaComponents, type MediaConfig, startCallMedia, summarizeMedia } from '../cli/media.ts';
import type { CallOutcome, Gateway } from '../gateway/gateway.ts';
import { LiveFmp4 as Fmp4Stream, type LiveFmp4 } from '../media/live-fmp4.ts';
import { MjpegFeed } from '../media/mjpeg-feed.ts';
import type { MediaSession } from '../media/session.ts';
import { every, type Timer } from '../net/clock.ts';
import type { Route } from '../path/routed-path.ts';

export type ViewKind = 'mse' | 'mjpeg';

/** A SIP user name as the console accepts it from a browser: what our configs allow. */
export const CAMERA_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface ConsoleCall {
  readonly id: string;
  readonly camera: string;
  readonly view: ViewKind;
  readonly startedAtMs: number;
  readonly outcome: CallOutcome;
  readonly live: LiveFmp4;
  readonly mjpeg?: MjpegFeed;
  session?: MediaSession;
  readonly routes: { atMs: number; route: Route; why: string }[];
  /** When a browser last had this call's video open (or the call started). */
  watchedAtMs: number;
  state: 'up' | 'ended';
  endedReason?: string;
}

export interface ConsoleCallsInit {
  readonly media: MediaConfig;
  /** Tiles at once. Default 9 (a 3x3 grid); the gateway's maxCalls bounds it too. */
  readonly maxCalls?: number;
  /** Ended calls kept for their panel. Default 20. */
  readonly keepEnded?: number;
  /**
   * A call nobody has watched for this long is hung up: a browser that went away without closing
   * its tile must not hold a camera for good. Default 300 s; 0 never hangs up.
   */
  readonly idleHangupS?: number;
}

export class CallRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'CallRefused';
  }
}

export class ConsoleCalls {
  readonly #calls = new Map<string, ConsoleCall>();
  readonly #sweep?: Timer;
  #closed = false;

  constructor(
    private readonly c: MediaComponents,
    private readonly gateway: Gateway,
    private readonly accounting: GatewayAccounting,
    private readonly init: ConsoleCallsInit,
  ) {
    gateway.on('route', (callId, route, why) => {
      const call = this.#calls.get(callId);
      call?.routes.push({ atMs: Math.round(c.clock.now() - call.startedAtMs), route, why });
    });
    gateway.on('ended', (callId, reason) => void this.#end(callId, reason, false));
    const idleS = init.idleHangupS ?? 300;
    if (idleS > 0) this.#sweep = every(c.clock, 5000, () => this.#hangUpUnwatched(idleS * 1000));
  }

  #hangUpUnwatched(idleMs: number): void {
    const now = this.c.clock.now();
    for (const call of this.#calls.values()) {
      if (call.state !== 'up') continue;
      if (call.live.stats().watchers > 0 || (call.mjpeg?.watchers ?? 0) > 0) call.watchedAtMs = now;
      else if (now - call.watchedAtMs > idleMs)
        void this.#end(call.id, `nobody watched for ${Math.round(idleMs / 1000)} s`, true);
    }
  }

  get(id: string): ConsoleCall | undefined {
    return this.#calls.get(id);
  }

  /** Places a call to `camera` and starts its media; throws `CallRefused` when it cannot. */
  async place(camera: string, view: ViewKind): Promise<ConsoleCall> {
    if (this.#closed) throw new CallRefused(503, 'the console is shutting down');
    if (!CAMERA_NAME.test(camera)) throw new CallRefused(400, 'camera names are letters, digits, . _ -');
    const live = [...this.#calls.values()].filter((call) => call.state === 'up').length;
    if (live >= (this.init.maxCalls ?? 9))
      throw new CallRefused(429, `${live} calls are open already: close a tile first`);
    const startedAtMs = this.c.clock.now();
    const outcome = await this.gateway.call(camera);
    if (!outcome.ok) {
      void this.accounting.record(outcome);
      throw new CallRefused(502, `call to ${camera} failed: ${outcome.reason ?? 'no path'}`);
    }
    const call: ConsoleCall = {
      id: outcome.callId,
      camera,
      view,
      startedAtMs,
      outcome,
      live: new Fmp4Stream({ onKeyframeWanted: () => call.session?.receiver?.requestKeyframe() }),
      mjpeg: view === 'mjpeg' ? new MjpegFeed() : undefined,
      routes: [],
      watchedAtMs: this.c.clock.now(),
      state: 'up',
    };
    this.#calls.set(call.id, call);
    try {
      call.session = await startCallMedia(this.c, outcome, this.init.media, {
        live: call.mjpeg,
        videoTap: view === 'mse' ? (packet) => call.live.writeRtp(packet) : undefined,
      });
    } catch (error) {
      await this.#end(call.id, `media failed to start: ${(error as Error).message}`, true);
      throw new CallRefused(502, `media from ${camera} failed to start: ${(error as Error).message}`);
    }
    call.session?.on('failed', (reason) => void this.#end(call.id, reason, true));
    this.#forgetOldEnded();
    return call;
  }

  /** Hangs up (closing a tile). Resolves once media stopped and the record is out. Idempotent. */
  hangup(id: string): Promise<void> {
    return this.#end(id, undefined, true);
  }

  /** One call's panel, now. */
  panel(call: ConsoleCall): ReturnType<typeof panel> {
    return panel(call, this.c.clock.now());
  }

  /** The panels of every call still up and the last few ended ones, newest first. */
  panels(): ReturnType<typeof panel>[] {
    const now = this.c.clock.now();
    return [...this.#calls.values()].reverse().map((call) => panel(call, now));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sweep?.clear();
    await Promise.all([...this.#calls.keys()].map((id) => this.#end(id, undefined, true)));
  }

  async #end(id: string, reason: string | undefined, weHangUp: boolean): Promise<void> {
    const call = this.#calls.get(id);
    if (!call || call.state === 'ended') return;
    call.state = 'ended';
    call.endedReason = reason ?? (weHangUp ? 'closed by the operator' : 'the camera hung up');
    if (weHangUp) this.gateway.hangup(id, reason);
    call.live.close();
    call.mjpeg?.close();
    await call.session?.close();
    await this.accounting.record(call.outcome, reason);
  }

  #forgetOldEnded(): void {
    const ended = [...this.#calls.values()].filter((call) => call.state === 'ended');
    for (const call of ended.slice(0, Math.max(0, ended.length - (this.init.keepEnded ?? 20))))
      this.#calls.delete(call.id);
  }
}

/** What the call panel shows, live: route and why, setup time, quality, bytes per route. */
export function panel(call: ConsoleCall, nowMs: number) {
  const { outcome } = call;
  const stats = call.session?.stats();
  const media = stats && summarizeMedia(stats);
  const bytes = routeBytes(outcome);
  const lastMove = call.routes.at(-1);
  return {
    id: call.id,
    camera: call.camera,
    state: call.state,
    endedReason: call.endedReason ?? null,
    view: call.view,
    path: finalPath(outcome),
    route: outcome.routed?.route ?? outcome.route ?? null,
    why:
      lastMove?.why ??
      outcome.directReason ??
      (outcome.route === 'direct' ? `${outcome.mode} punch opened it` : (outcome.reason ?? null)),
    mode: outcome.mode,
    setupMs:
      outcome.confirmedAtMs === undefined ? null : Math.round(outcome.confirmedAtMs - outcome.startedAtMs),
    upS: Math.round((nowMs - call.startedAtMs) / 1000),
    encryption: outcome.encryption ?? 'none',
    localNat: outcome.local?.nat ?? null,
    remoteNat: outcome.remote?.nat ?? null,
    bitrateKbps: media?.received?.bitrateKbps ?? null,
    fps: media?.received?.fps ?? null,
    lossPercent: media?.received?.lossPercent ?? null,
    jitterMs: media?.received?.jitterMs ?? null,
    rttMs: media?.received?.rttMs ?? null,
    bytes: { direct: bytes?.direct.bytes ?? 0, relay: bytes?.relay.bytes ?? 0 },
    routes: call.routes,
    live: call.live.stats(),
    mjpegFrames: call.mjpeg?.framesShown ?? null,
  };
}
