/**
 * The relay side of the gateway's calls (issue 6): allocating each call's relay leg, turning a
 * settled path into an established call, and keeping its route: renewing the allocation when media
 * fails over, telling the peer a new relayed address, and trying a fresh direct path in the
 * background while media is on the relay.
 */
import type { Endpoint } from '../net/address.ts';
import { isIpv4, isValidPort } from '../net/address.ts';
import { sleep } from '../net/clock.ts';
import type { Route } from '../path/routed-path.ts';
import type { CallDescription, TraversalMode } from '../protocol/sdp.ts';
import type { ShortLivedCredentials } from '../relay/credentials.ts';
import type { SignalingClient } from '../signaling/client.ts';
import { SC2C_CONTENT_TYPE } from '../signaling/server.ts';
import type { ActiveCall } from './active-call.ts';
import { CallRelay, pickCredential, type TurnCredential } from './call-relay.ts';
import { consentCredentials, type Settled, type SettleInit } from './path-policy.ts';
import type { CallOutcome, GatewayComponents, GatewayEvents, GatewayInit } from './types.ts';

type Offered =
  | { active: ActiveCall; description: CallDescription; remote: CallDescription; toTag?: string }
  | { failure: unknown };

/** What the route keeper needs from its gateway. */
export interface RoutesHost {
  readonly c: GatewayComponents;
  readonly init: GatewayInit;
  signaling(): SignalingClient;
  active(callId: string): ActiveCall | undefined;
  emit<K extends keyof GatewayEvents>(event: K, ...args: GatewayEvents[K]): boolean;
  offer(
    callId: string,
    user: string,
    mode: TraversalMode,
    toTag: string | undefined,
    relay: Promise<CallRelay | undefined>,
  ): Promise<Offered>;
  synchronize(
    callId: string,
    user: string,
    mode: TraversalMode,
    toTag: string | undefined,
    active: ActiveCall,
    local: CallDescription,
    remote: CallDescription,
  ): Promise<CallDescription>;
  punch(
    callId: string,
    local: CallDescription,
    remote: CallDescription,
    base: Omit<CallOutcome, 'ok' | 'checksSent'>,
  ): Promise<CallOutcome>;
}

export class CallRoutes {
  constructor(private readonly host: RoutesHost) {}

  settleInit(active: ActiveCall, local: CallDescription, remote: CallDescription): SettleInit {
    return {
      relay: active.relay,
      local,
      remote,
      budgetMs: this.host.init.relay?.budgetMs ?? 1000,
      deadAfterMs: this.host.init.relay?.deadAfterMs ?? 500,
    };
  }

  /**
   * The relay leg for a new call, or undefined (no relay configured, or the allocation failed).
   * `issued`: the TURN credential the server put in this call's INVITE, if any.
   */
  allocateRelay(issued?: ShortLivedCredentials): Promise<CallRelay | undefined> {
    const relay = this.host.init.relay;
    if (!relay || this.host.init.rtcpMux === false) return Promise.resolve(undefined);
    const credential = (): TurnCredential =>
      pickCredential(relay, [issued, this.host.signaling().turnCredential], this.host.c.clock.epochMs());
    return CallRelay.allocate(this.host.c, relay, credential).catch((error: Error) => {
      this.host.emit('relay-error', `no relay for this call: ${error.message}`);
      return undefined;
    });
  }

  /** A call whose media may now flow, directly or relayed: watch its route from here on. */
  established(
    callId: string,
    active: ActiveCall,
    settled: Exclude<Settled, { kind: 'plain' }>,
    base: Omit<CallOutcome, 'ok' | 'checksSent'>,
    straight: boolean,
    /** Why the pair went straight to the relay (`straightReason`). */
    straightWhy?: string,
  ): CallOutcome {
    const routed = settled.routed;
    active.routed = routed;
    active.relayOnly = straight;
    routed.on('route', (route, why) => this.#onRoute(callId, route, why));
    // An allocation that dies on its own (relay restart, TCP connection lost) is renewed at once,
    // whichever route media is on: a relay-only call has no direct path whose death would ask.
    active.relay?.watch((why) => {
      if (active.ended) return;
      this.host.emit('relay-error', `${why}; allocating again`);
      void this.#renewRelay(callId, active);
    });
    const budgetMs = this.host.init.relay?.budgetMs ?? 1000;
    const punched = settled.punched;
    return {
      ...base,
      ok: true,
      confirmedAtMs: settled.kind === 'direct' ? settled.punched.confirmedAtMs : this.host.c.clock.now(),
      path: routed,
      routed,
      route: routed.route,
      ...(active.relay ? { relayPath: active.relay.path } : {}),
      predictionAgeMs: punched?.predictionAgeMs ?? predictionAge(this.host.c.clock.now(), active),
      // Issue 19's figures of the punch, when it ran: who pinned, and our tracked drift.
      ...(punched?.pinned ? { pinned: punched.pinned } : {}),
      ...(punched?.pinVerified !== undefined ? { pinVerified: punched.pinVerified } : {}),
      ...(punched?.drift ? { drift: punched.drift } : {}),
      // Issue 21: the direct path is (or, from the relay, will be) a TCP connection.
      ...(punched?.transport || active.tcp ? { transport: 'tcp' as const } : {}),
      ...(punched?.tcpConnects !== undefined ? { tcpConnects: punched.tcpConnects } : {}),
      // A punch still running when media went to the relay: the checks it had sent by then.
      checksSent:
        punched?.checksSent ??
        (active.puncher?.counters.checksSent ?? 0) + (active.rtcpPuncher?.counters.checksSent ?? 0),
      directReason:
        settled.kind === 'direct'
          ? undefined
          : straight
            ? (straightWhy ?? 'both NATs allocate ports at random: there is no port to predict')
            : (settled.punched?.reason ?? `no direct path confirmed within ${budgetMs} ms`),
    };
  }

  /** The peer re-allocated (its NAT dropped its mappings): relayed media now goes to its new address. */
  peerRelayMoved(callId: string, body: string): void {
    const active = this.host.active(callId);
    let moved: { address?: unknown; port?: unknown };
    try {
      moved = JSON.parse(body) as typeof moved;
    } catch {
      return;
    }
    if (!active?.relay || typeof moved.address !== 'string' || !isIpv4(moved.address)) return;
    if (typeof moved.port !== 'number' || !isValidPort(moved.port) || moved.port === 0) return;
    const peerRelayed: Endpoint = { address: moved.address, port: moved.port };
    active.peerRelayed = peerRelayed;
    active.routed?.setRelay(active.relay.leg(peerRelayed));
  }

  /**
   * While media is on the relay, tries a fresh direct path now and then (a re-INVITE with a new
   * prediction, synchronized by the server); media moves back when one confirms. Callers only.
   */
  retryDirect(
    callId: string,
    user: string,
    mode: TraversalMode,
    toTag: string | undefined,
    /** Wait before the first retry instead of `retryDirectMs` (issue 21: at once, to offer TCP). */
    firstGapMs?: number,
  ): void {
    const first = this.host.active(callId);
    if (!first || first.retrying) return;
    first.retrying = true;
    const attempts = this.host.init.relay?.retryDirectAttempts ?? 5;
    const gapMs = this.host.init.relay?.retryDirectMs ?? 3000;
    const { clock } = this.host.c;
    // A failed attempt leaves the call on the relay: never a rejection the event loop would see.
    void (async () => {
      for (let i = 0; i < attempts; i++) {
        await sleep(clock, i === 0 && firstGapMs !== undefined ? firstGapMs : gapMs);
        const current = this.host.active(callId);
        if (!current || current.ended || current.routed?.route !== 'relay') break;
        const offered = await this.host.offer(callId, user, mode, toTag, Promise.resolve(current.relay));
        if ('failure' in offered) break;
        const { active, remote } = offered;
        const description =
          mode === 'sc2c' || mode === 'sc2c-naive'
            ? await this.host
                .synchronize(callId, user, mode, toTag, active, offered.description, remote)
                .catch(() => offered.description)
            : offered.description;
        const base = { callId, role: 'caller' as const, peer: user, mode, startedAtMs: clock.now() };
        const result = await this.host.punch(callId, description, remote, base);
        if (result.ok && result.path && active.routed && !active.ended) {
          active.routed.setDirect(
            result.path.socket,
            result.path.remote,
            consentCredentials(offered.description, remote),
          );
          active.routed.use('direct', 'a fresh direct path confirmed');
          break;
        }
      }
    })()
      .catch((error: Error) => this.host.emit('relay-error', `a direct retry failed: ${error.message}`))
      .finally(() => {
        const current = this.host.active(callId);
        if (current) current.retrying = false;
      });
  }

  /** Media moved: tell listeners; on a move to the relay, make sure our allocation survived. */
  #onRoute(callId: string, route: Route, why: string): void {
    const active = this.host.active(callId);
    if (!active || active.ended) return;
    this.host.emit('route', callId, route, why);
    if (route !== 'relay' || !active.relay) return;
    void this.#renewRelay(callId, active).then(() => {
      const dialog = active.dialog;
      if (dialog?.toTag !== undefined && !active.relayOnly)
        this.retryDirect(callId, dialog.user, this.host.init.mode ?? 'sc2c', dialog.toTag);
    });
  }

  /**
   * Renews our allocation if it died; when that gives a new relayed address the peer must learn it:
   * in band first (the relay path works; our signaling connection may have died with the
   * mappings), and over signaling too.
   */
  async #renewRelay(callId: string, active: ActiveCall): Promise<void> {
    const relay = active.relay;
    if (!relay) return;
    try {
      if (!(await relay.ensureAlive()) || active.ended) return;
      const peerRelayed = active.routed?.peerRelayed ?? active.peerRelayed;
      if (peerRelayed) active.routed?.setRelay(relay.leg(peerRelayed));
      active.routed?.announceRelay(relay.relayed);
      const to = active.dialog?.user;
      const signaling = this.host.signaling();
      if (to)
        void signaling
          .request('INFO', signaling.uri(to), [['Content-Type', SC2C_CONTENT_TYPE]], {
            callId,
            toTag: active.dialog?.toTag,
            body: JSON.stringify({
              type: 'relay',
              address: relay.relayed.address,
              port: relay.relayed.port,
            }),
          })
          .catch(() => undefined);
    } catch (error) {
      this.host.emit('relay-error', `the relay could not be renewed: ${(error as Error).message}`);
    }
  }
}

/** Without a punch result yet: how old our prediction is now (an upper bound of its age at the punch). */
function predictionAge(now: number, active: ActiveCall): number | undefined {
  return active.sampledAtMs === undefined ? undefined : now - active.sampledAtMs;
}
