/**
 * A camera or phone gateway: registers (paper steps 1-4), probes its NAT (steps 5-8), places and
 * answers calls with predicted endpoints in SDP (steps 9-16), and punches (steps 20-21) when the
 * mode says so:
 * - `sc2c`: both wait for the server's go, which the server times to arrive together (steps 17-19);
 * - `sc2c-naive`: the same, but the server sends both go messages at once, as the paper does;
 * - `c2c`: no synchronization: the callee punches as soon as it has answered, the caller when the
 *   answer arrives (the paper's C2C baseline);
 * - `stun`: classic hole punching to the STUN-observed port of the media socket, no prediction.
 */
import { randomBytes } from 'node:crypto';
import { offerFor } from '../media/negotiate.ts';
import type { Endpoint } from '../net/address.ts';
import type { Timer } from '../net/clock.ts';
import {
  type CallDescription,
  decodeSdp,
  encodeSdp,
  type MediaLine,
  type TraversalMode,
} from '../protocol/sdp.ts';
import { parseNameAddr } from '../protocol/sip/headers.ts';
import { header, type SipRequest } from '../protocol/sip/message.ts';
import { SignalingClient } from '../signaling/client.ts';
import { assertedCaller } from '../signaling/identity.ts';
import { SC2C_CONTENT_TYPE } from '../signaling/server.ts';
import { quoteWire } from '../signaling/sip-connection.ts';
import { FreshPortNetwork } from '../traversal/fresh-ports.ts';
import { DEFAULT_PIN_TTL } from '../traversal/pin.ts';
import type { PortMappingStatus } from '../traversal/port-mapper.ts';
import { findPrimeTtl, type PrimeTtlResult } from '../traversal/prime-ttl.ts';
import { describeProbe, type NatProbe, probeNat } from '../traversal/probe.ts';
import { prepareTcpCandidate, probeTcp, type TcpProbe } from '../traversal/tcp-predict.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { ActiveCall } from './active-call.ts';
import { type AnswerHost, answerCall } from './answer.ts';
import { type CallRelay, describeWithRelay } from './call-relay.ts';
import { CallRoutes } from './call-routes.ts';
import { connectAny, onNode, startProbe } from './connect.ts';
import { type MediaSetup, type RtcpPlan, setUpMedia } from './media-setup.ts';
import { punchPair } from './pair-punch.ts';
import {
  countedDirect,
  directTransport,
  settlePath,
  straightReason,
  straightToRelay,
} from './path-policy.ts';
import { readGoFields } from './pin-call.ts';
import {
  abandonDetection,
  beginDetection,
  type DetectionStart,
  PortMappingDetection,
} from './port-mapping-detection.ts';
import { encryptionMismatch, secureOutcome, startEarlyDtls, withDtls } from './secure-call.ts';
import { StatusReporter } from './status-report.ts';
import { synchronizeCaller } from './synchronize.ts';
import { closeTcp, punchTcpCall } from './tcp-punch.ts';
import type { CallOutcome, GatewayComponents, GatewayEvents, GatewayInit } from './types.ts';

export { onNode } from './connect.ts';
export type { CallOutcome, GatewayComponents, GatewayEvents, GatewayInit } from './types.ts';

/**
 * sc2c-ttl's wait between the low-TTL primes and the first full checks (issue 21). The peer's full
 * checks come after the answer or INVITE reached it, over a path about as long as the media's, so
 * our primes only need to leave first; the margin covers each side's processing.
 */
const DEFAULT_PRIME_WAIT_MS = 100;

export class Gateway extends TypedEmitter<GatewayEvents> {
  readonly #calls = new Map<string, ActiveCall>();
  readonly #routes: CallRoutes;
  readonly #answerHost: AnswerHost;
  /** INVITEs received per call (the callee's attempt count); dropped when the call ends. */
  readonly #attempts = new Map<string, number>();
  #signaling: SignalingClient;
  #closed = false;
  #reconnectTimer?: Timer;
  /** Which of `#servers` the connection is (or is being made) to. */
  #serverIndex = 0;
  #init: GatewayInit;
  #probeTimer?: Timer;
  readonly #status: StatusReporter;
  /** Issue 21: the priming TTL read at start (`findPrimeTtl`), for a gateway whose mode is sc2c-ttl. */
  primeTtl?: PrimeTtlResult;
  /** Asking our router for port mappings (issue 20). */
  readonly #mapping: PortMappingDetection;

  private constructor(
    private readonly c: GatewayComponents,
    /** What the gateway was started with; `init` is it as seen from the node now in use. */
    readonly configured: GatewayInit,
    signaling: SignalingClient,
    public probe: NatProbe,
    detection?: DetectionStart,
    /** Issue 21: our NAT's TCP allocation, when `transport` is not `udp` and the server answered over TCP. */
    public tcpProbe?: TcpProbe,
  ) {
    super();
    this.#init = configured;
    const self = this;
    this.#routes = new CallRoutes({
      c,
      get init() {
        return self.init;
      },
      signaling: () => this.signaling,
      active: (callId) => this.#calls.get(callId),
      emit: (event, ...args) => this.emit(event, ...args),
      offer: (callId, user, mode, toTag, relay) => this.#offer(callId, user, mode, toTag, relay),
      synchronize: (callId, user, mode, toTag, active, local, remote) =>
        this.#synchronize(callId, user, mode, toTag, active, local, remote, false),
      punch: (callId, local, remote, base) => this.#punch(callId, local, remote, base),
    });
    this.#answerHost = {
      c,
      get init() {
        return self.init;
      },
      routes: this.#routes,
      udpBlocked: () => this.probe.udpBlocked === true,
      emit: (event, ...args) => this.emit(event, ...args),
      punch: (callId, local, remote, base) => this.#punch(callId, local, remote, base),
      prepare: (mode, rtcp, media, mapPorts, remote) =>
        this.prepare(mode, rtcp, media, false, mapPorts, remote),
      register: (callId, active) => this.#register(callId, active),
      attempts: (callId) => this.#attempts.get(callId) ?? 1,
      counted: (active, outcome) => this.#counted(active, outcome),
      secure: (callId, active, outcome) => this.#secure(callId, active, outcome),
    };
    this.#signaling = signaling;
    this.#attach(signaling);
    // Issue 22: the server's admin page shows each call's route and bytes from these reports.
    this.#status = new StatusReporter(
      c,
      () => this.signaling,
      () => this.#calls,
      {
        intervalMs: configured.statusIntervalMs,
      },
    );
    this.on('route', (callId) => this.#status.report(callId));
    this.#scheduleProbeRefresh();
    this.#mapping = new PortMappingDetection(
      detection,
      probe,
      this.signaling.connection.stream.local.address,
      (event, ...args) => this.emit(event, ...args),
    );
  }

  /** What asking our router found (issue 20); undefined while detection runs or when not asked. */
  get portMapping(): PortMappingStatus | undefined {
    return this.#mapping.status;
  }

  /** Resolves when port-mapping detection has finished (at once when it was not asked for). */
  portMappingDetected(): Promise<void> {
    return this.#mapping.detected();
  }

  /** Resolves once `close()` has deleted our leases on the router (at once when there were none). */
  released(): Promise<void> {
    return this.#mapping.released();
  }

  get signaling(): SignalingClient {
    return this.#signaling;
  }

  #attach(signaling: SignalingClient): void {
    signaling.on('request', (request, respond) => this.#onRequest(request, respond));
    signaling.on('close', (reason) => {
      if (!this.#closed && signaling === this.#signaling)
        this.#reconnect(reason ?? 'connection closed', this.init.reconnect?.initialMs ?? 1000);
    });
  }

  /**
   * The gateway's settings as they stand: after a failover (issue 24), STUN and the relay configured
   * on the first server's host are those on the host of the node now in use (same ports): each
   * node runs its own, and the first one's may have died with it.
   */
  get init(): GatewayInit {
    return this.#init;
  }

  /** The signaling servers in order: the configured one, then the other nodes (issue 24). */
  get #servers(): readonly Endpoint[] {
    return [this.configured.sip.server, ...(this.configured.failover ?? [])];
  }

  /**
   * Reconnects and re-registers, doubling the delay after each failure (bounded by `maxMs`). With
   * other nodes to go to, each attempt takes the next server, and the first goes at once: the node
   * that dropped us is likely down.
   */
  #reconnect(reason: string, delayMs: number, first = true): void {
    const servers = this.#servers;
    if (servers.length > 1) this.#serverIndex = (this.#serverIndex + 1) % servers.length;
    const server = servers[this.#serverIndex]!;
    const waitMs = first && servers.length > 1 ? 0 : delayMs;
    this.emit('disconnected', reason, waitMs);
    this.#reconnectTimer = this.c.clock.setTimeout(async () => {
      if (this.#closed) return;
      try {
        const signaling = await SignalingClient.connect(this.c, { ...this.configured.sip, server });
        signaling.nat = describeProbe(this.probe);
        try {
          await signaling.register();
        } catch (error) {
          signaling.close();
          throw error;
        }
        if (this.#closed) {
          signaling.close();
          return;
        }
        this.#signaling = signaling;
        this.#init = onNode(this.configured, server);
        this.#attach(signaling);
        this.emit('reconnected', server);
      } catch (error) {
        this.#reconnect(
          `${server.address}:${server.port}: ${(error as Error).message}`,
          // The immediate first try to another node did not count: the backoff starts after it.
          first && servers.length > 1 ? delayMs : Math.min(delayMs * 2, this.init.reconnect?.maxMs ?? 30_000),
          false,
        );
      }
    }, waitMs);
  }

  #scheduleProbeRefresh(): void {
    const every = this.init.probeRefreshMs ?? 600_000;
    if (every <= 0) return;
    this.#probeTimer = this.c.clock.setTimeout(async () => {
      if (this.#closed) return;
      try {
        this.probe = await probeNat(this.c, {
          server: this.init.stunServer,
          rtoMs: this.init.stunRtoMs ?? 200,
        });
        // The next REGISTER refresh tells the server (issue 22).
        this.#signaling.nat = describeProbe(this.probe);
      } catch {
        // Keep the last good probe; try again next period.
      }
      this.#scheduleProbeRefresh();
    }, every);
  }

  static async start(given: GatewayComponents, init: GatewayInit, signal?: AbortSignal): Promise<Gateway> {
    // Every probe and media socket must open a new NAT session: never reuse a recently used port.
    // Gateways on one host (a camera each) may share one tracker: they share the host's ports.
    const network =
      given.network instanceof FreshPortNetwork
        ? given.network
        : new FreshPortNetwork(given.network, given.clock);
    const components = { ...given, network };
    const { signaling, index } = await connectAny(components, init, signal);
    // Probed against the STUN server of the node that answered (issue 24).
    const here = onNode(init, [init.sip.server, ...(init.failover ?? [])][index]!);
    let detection: DetectionStart | undefined;
    try {
      await signaling.register();
      // Beside the probe: the router's answer (a few ms on a LAN) is in before the first call.
      detection = beginDetection(components, init, signaling.connection.stream.local.address);
      // The TCP probe first: its sessions would move a shared port counter under the UDP probe's
      // newest port, which a first offer predicts from.
      const tcpProbe =
        (init.transport ?? 'udp') === 'udp'
          ? undefined
          : await probeTcp(components, { server: here.stunServer, signal });
      const probe = init.probe ?? (await startProbe(components, here, signal));
      // Issue 21: a gateway that primes reads how far its NAT is, once, before any call.
      const primeTtl =
        init.mode === 'sc2c-ttl' &&
        init.punch?.primeTtl === undefined &&
        probe.allocation === 'sequential' &&
        probe.delta !== null
          ? await findPrimeTtl(components, {
              server: here.stunServer,
              delta: probe.delta,
              rtoMs: init.stunRtoMs ?? 200,
            })
          : undefined;
      // Issue 22: the server lists our NAT class; the first REGISTER went before the probe.
      signaling.nat = describeProbe(probe);
      if (init.reportNat !== false) await signaling.register();
      const gateway = new Gateway(components, init, signaling, probe, detection, tcpProbe);
      gateway.primeTtl = primeTtl;
      gateway.#serverIndex = index;
      gateway.#init = here;
      return gateway;
    } catch (error) {
      abandonDetection(detection);
      signaling.close();
      throw error;
    }
  }

  /**
   * Places a call; resolves when the direct path is confirmed or has failed. In the SC2C modes a
   * failed punch is retried with a fresh prediction in a re-INVITE (up to `maxAttempts`): ports that
   * moved since the prediction (another host's traffic on the NAT) get a new chance. C2C and STUN
   * keep one attempt, as the baselines they stand for.
   */
  async call(user: string, options: { mode?: TraversalMode } = {}): Promise<CallOutcome> {
    const mode = options.mode ?? this.init.mode ?? 'sc2c';
    const startedAtMs = this.c.clock.now();
    const callId = `${randomBytes(8).toString('hex')}@sc2c`;
    const base = { callId, role: 'caller' as const, peer: user, mode, startedAtMs };
    const synchronized = mode === 'sc2c' || mode === 'sc2c-naive';
    const maxAttempts = synchronized ? (this.init.maxAttempts ?? 3) : 1;
    let toTag: string | undefined;
    let outcome: CallOutcome | undefined;
    const relayReady = this.#routes.allocateRelay();
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const offered = await this.#offer(callId, user, mode, toTag, relayReady);
      if ('failure' in offered)
        return { ...base, ...offered.failure, attempts: attempt, checksSent: outcome?.checksSent ?? 0 };
      const { active, remote } = offered;
      toTag = offered.toTag;
      const straight = straightToRelay(offered.description, remote);
      // Our description as punched: with the pinned port when we pinned (issue 19).
      const description =
        synchronized && !straight
          ? await this.#synchronize(
              callId,
              user,
              mode,
              toTag,
              active,
              offered.description,
              remote,
              attempt === 1,
            )
          : offered.description;
      const punched = straight ? undefined : this.#punch(callId, description, remote, base);
      const settled = await settlePath(this.c, punched, this.#routes.settleInit(active, description, remote));
      if (settled.kind !== 'plain') {
        const established = this.#routes.established(
          callId,
          active,
          settled,
          base,
          straight,
          straight ? straightReason(offered.description, remote) : undefined,
        );
        // Issue 21: the answer said the peer's UDP is blocked and our offer had no TCP candidate
        // (we could not know): the first retry offers one, at once.
        const tcpLater =
          active.peerWantsTcp === true &&
          !offered.description.tcp &&
          this.tcpProbe !== undefined &&
          this.tcpProbe.allocation !== 'random';
        if (settled.kind === 'relay' && (!straight || tcpLater))
          this.#routes.retryDirect(callId, user, mode, toTag, tcpLater ? 0 : undefined);
        return this.#secure(callId, active, {
          ...established,
          local: description,
          remote,
          attempts: attempt,
        });
      }
      outcome = { ...this.#counted(active, await punched!), local: description, remote, attempts: attempt };
      if (outcome.ok) return this.#secure(callId, active, outcome);
      if (active.ended) return outcome;
    }
    return outcome!;
  }

  /** Paper step 17 and issue 19's pin before it: see `synchronizeCaller`. */
  #synchronize(
    callId: string,
    user: string,
    mode: TraversalMode,
    toTag: string | undefined,
    active: ActiveCall,
    local: CallDescription,
    remote: CallDescription,
    first: boolean,
  ): Promise<CallDescription> {
    return synchronizeCaller(
      {
        c: this.c,
        init: this.init,
        probe: this.probe,
        signaling: this.signaling,
        report: (message) => this.emit('relay-error', message),
      },
      { callId, user, mode, toTag, active, local, remote, first },
    );
  }

  /**
   * Opens fresh media sockets with a fresh prediction and sends the offer: an INVITE, or a
   * re-INVITE in the same dialog when `toTag` is known. Then ACK.
   */
  async #offer(
    callId: string,
    user: string,
    mode: TraversalMode,
    toTag: string | undefined,
    relayReady: Promise<CallRelay | undefined>,
  ): Promise<
    | { active: ActiveCall; description: CallDescription; remote: CallDescription; toTag?: string }
    | { failure: { ok: false; reason: string; local?: CallDescription } }
  > {
    const previous = this.#calls.get(callId);
    if (previous) this.#closeMedia(previous);
    // A background attempt on an established call fails alone; the call goes on over the relay.
    const fail = (): void => {
      const current = this.#calls.get(callId);
      if (!previous?.routed) this.#end(callId);
      else if (current && current !== previous) this.#closeMedia(current);
    };
    let prepared: Awaited<ReturnType<Gateway['prepare']>>;
    let relay: CallRelay | undefined;
    try {
      // The allocation first: its packets open a NAT session, which must not take the port the
      // prediction below hands to the media socket.
      relay = await relayReady;
      prepared = await this.prepare(
        mode,
        this.init.rtcpMux === false ? 'separate' : 'offer-both',
        this.init.media ? offerFor(this.init.media) : undefined,
        // A first attempt that will pin needs no fresh sample before the INVITE; a retry takes one.
        previous === undefined,
        // A first attempt asks our router for the port (issue 20); a retry predicts instead.
        previous === undefined,
        // Issue 21: a peer whose answer said its UDP is blocked gets a TCP candidate on the retry.
        previous?.peerWantsTcp ? { udpBlocked: true } : undefined,
      );
    } catch (error) {
      if (!previous?.relay) void (await relayReady)?.close();
      fail();
      return { failure: { ok: false, reason: `could not prepare media: ${(error as Error).message}` } };
    }
    const { socket } = prepared;
    const description = withDtls(
      relay ? describeWithRelay(prepared.description, relay, this.probe.udpBlocked) : prepared.description,
      this.init.dtls,
    );
    const active: ActiveCall = {
      socket,
      rtcpSocket: prepared.rtcpSocket,
      sampledAtMs: prepared.sampledAtMs,
      sample: prepared.sample,
      late: prepared.late,
      leases: prepared.leases,
      ...(prepared.tcp ? { tcp: { localPort: prepared.tcp.localPort } } : {}),
      ended: false,
      dialog: previous?.dialog,
      relay,
      peerRelayed: previous?.peerRelayed,
      routed: previous?.routed,
      relayOnly: previous?.relayOnly,
      retrying: previous?.retrying,
      // An established call keeps its DTLS association and SRTP session across direct attempts.
      ...(previous?.routed ? { dtls: previous.dtls, secure: previous.secure } : {}),
    };
    this.#register(callId, active);
    if (active.ended) {
      return {
        failure: {
          ok: false,
          reason: 'the gateway closed while the call was being set up',
          local: description,
        },
      };
    }
    const answer = await this.signaling
      .request('INVITE', this.signaling.uri(user), [['Content-Type', 'application/sdp']], {
        callId,
        toTag,
        body: encodeSdp(description, Math.floor(this.c.clock.now())),
      })
      .catch((error: Error) => error);
    if (answer instanceof Error || answer.status !== 200) {
      fail();
      const warning =
        answer instanceof Error ? undefined : /"(.*)"/.exec(header(answer, 'Warning') ?? '')?.[1];
      // Text from the wire reaches the user's terminal and logs: control characters escaped, capped.
      const reason =
        answer instanceof Error
          ? answer.message
          : `${answer.status} ${quoteWire(answer.reason, 64)}${warning ? ` (${quoteWire(warning)})` : ''}`;
      return { failure: { ok: false, reason: `call refused: ${reason}`, local: description } };
    }
    let remote: CallDescription;
    try {
      remote = decodeSdp(answer.body);
    } catch (error) {
      fail();
      return {
        failure: { ok: false, reason: `bad SDP answer: ${(error as Error).message}`, local: description },
      };
    }
    if (remote.udpBlocked || remote.transport === 'tcp') active.peerWantsTcp = true;
    const tag = toTag ?? parseNameAddr(header(answer, 'To') ?? '').params.tag;
    active.dialog = { user, toTag: tag };
    const mismatch = encryptionMismatch(this.init.dtls, remote, false);
    if (mismatch) {
      // The dialog exists: ACK it, then end it with the reason, so the peer sees why too.
      await this.signaling
        .request('ACK', this.signaling.uri(user), [], { callId, toTag: tag })
        .catch(() => {});
      this.hangup(callId, mismatch);
      return { failure: { ok: false, reason: mismatch, local: description } };
    }
    if (relay && remote.relayEndpoint) {
      active.peerRelayed = remote.relayEndpoint;
      // Before the ACK: the callee may start relayed media as soon as it has it.
      await relay
        .permit([remote.publicEndpoint.address, remote.relayEndpoint.address])
        .catch((error: Error) => {
          this.emit('relay-error', `no permission for the peer on the relay: ${error.message}`);
        });
    }
    await this.signaling.request('ACK', this.signaling.uri(user), [], { callId, toTag: tag });
    return { active, description, remote, toTag: tag };
  }

  /** Ends a call: on a call we placed, sends BYE; either way stops checks and closes the media socket. */
  hangup(callId: string, reason?: string): void {
    const dialog = this.#calls.get(callId)?.dialog;
    this.#end(callId, reason);
    // RFC 3326: the Reason header tells the peer why (a failed encoder, a silent path).
    const extra: [string, string][] = reason
      ? [['Reason', `SIP;cause=500;text="${reason.replace(/["\r\n]/g, "'").slice(0, 200)}"`]]
      : [];
    if (dialog)
      void this.signaling
        .request('BYE', this.signaling.uri(dialog.user), extra, { callId, toTag: dialog.toTag })
        .catch(() => {});
  }

  /** Idempotent: ends every call, stops timers and closes the signaling connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reconnectTimer?.clear();
    this.#probeTimer?.clear();
    this.#status.close();
    for (const callId of [...this.#calls.keys()]) this.#end(callId);
    this.#signaling.close();
    void this.#mapping.close();
  }

  /**
   * Opens one attempt's media sockets and works out what to advertise (see `setUpMedia`), with a
   * TCP candidate when the direct path will be TCP (issue 21; `remote` is the offer we answer).
   */
  async prepare(
    mode: TraversalMode,
    rtcp: RtcpPlan = 'mux',
    media?: readonly MediaLine[],
    pinLater = false,
    mapPorts = false,
    remote?: Pick<CallDescription, 'udpBlocked' | 'transport'>,
  ): Promise<MediaSetup & { readonly tcp?: { readonly localPort: number } }> {
    if (mapPorts) await this.#mapping.settled();
    const transport = this.init.transport ?? 'udp';
    const tcp =
      transport !== 'udp' &&
      (transport === 'tcp' ||
        this.probe.udpBlocked === true ||
        remote?.udpBlocked === true ||
        remote?.transport === 'tcp');
    const setup = await setUpMedia(this.c, {
      stunServer: this.init.stunServer,
      stunRtoMs: this.init.stunRtoMs ?? 200,
      probe: this.probe,
      hostAddress: this.signaling.connection.stream.local.address,
      mode,
      rtcp,
      media,
      // A TCP call pins nothing: the rungs are UDP.
      pin: tcp ? false : this.init.punch?.pin,
      pinLater,
      mapper: mapPorts && !tcp ? this.#mapping.mapper : undefined,
    });
    if (!tcp) return setup;
    // After the UDP sample, which would otherwise take the port predicted here: a TCP call's
    // direct path is TCP, so only this prediction has to hold until the go.
    let candidate: Awaited<ReturnType<typeof prepareTcpCandidate>>;
    try {
      candidate = this.tcpProbe
        ? await prepareTcpCandidate(this.c, this.tcpProbe, { server: this.init.stunServer })
        : undefined;
    } catch (error) {
      setup.socket.close();
      setup.rtcpSocket?.close();
      throw error;
    }
    return {
      ...setup,
      description: {
        ...setup.description,
        ...(candidate ? { tcp: { endpoint: candidate.endpoint, source: candidate.source } } : {}),
        ...(this.probe.udpBlocked ? { udpBlocked: true } : {}),
        ...(transport === 'tcp' ? { transport: 'tcp' as const } : {}),
      },
      ...(candidate ? { tcp: { localPort: candidate.localPort } } : {}),
    };
  }

  async #punch(
    callId: string,
    local: CallDescription,
    remote: CallDescription,
    base: Omit<CallOutcome, 'ok' | 'checksSent'>,
  ): Promise<CallOutcome> {
    const active = this.#calls.get(callId);
    if (!active || active.ended)
      return { ...base, ok: false, reason: 'call ended before the punch', checksSent: 0 };
    if (directTransport(local, remote) === 'tcp') return this.#punchTcp(active, local, remote, base);
    const punching = punchPair(
      this.c,
      active,
      local,
      remote,
      // Issue 21: sc2c-ttl primes our NAT with low-TTL checks instead of waiting for a go.
      { ...this.init.punch, prime: this.#prime(local) },
      this.probe,
      // The window is ours, beyond the paper: the baselines (c2c, stun, the naive go) stay as published.
      local.mode === 'sc2c' ? (this.init.punch?.window ?? 3) : 1,
      { probes: this.init.punch?.birthdayProbes, ratePerSecond: this.init.punch?.birthdayRate },
      base.role,
    );
    // The first checks have left: the DTLS handshake starts beside them. Not on a birthday hard
    // side: which socket carries the call is known only when a probe lands.
    if (local.birthday === undefined) startEarlyDtls(this.c, this.init.dtls, active, local, remote);
    // A pinned port was read after its mapping opened: nothing could take it before the punch.
    const predictionAgeMs =
      active.pin?.side === 'local'
        ? 0
        : active.sampledAtMs === undefined
          ? undefined
          : this.c.clock.now() - active.sampledAtMs;
    const pin = active.pin
      ? {
          pinned: active.pin.side,
          ...(active.pin.verified !== undefined ? { pinVerified: active.pin.verified } : {}),
          ...(active.drift ? { drift: active.drift } : {}),
        }
      : {};
    const result = await punching;
    return result.ok
      ? {
          ...base,
          ok: true,
          confirmedAtMs: this.c.clock.now(),
          path: result.path,
          checksSent: result.checksSent,
          predictionAgeMs,
          ...pin,
        }
      : { ...base, ok: false, reason: result.reason, checksSent: result.checksSent, predictionAgeMs, ...pin };
  }

  /**
   * Issue 21: sc2c-ttl's priming, none in the other modes. The TTL is `punch.primeTtl` when set,
   * else what the sweep at start read from our NAT's counter (a gateway whose mode is sc2c-ttl),
   * else `punch.pinTtl` (2).
   */
  #prime(local: CallDescription): { readonly ttl: number; readonly waitMs: number } | undefined {
    if (local.mode !== 'sc2c-ttl') return undefined;
    return {
      ttl: this.init.punch?.primeTtl ?? this.primeTtl?.ttl ?? this.init.punch?.pinTtl ?? DEFAULT_PIN_TTL,
      waitMs: this.init.punch?.primeWaitMs ?? DEFAULT_PRIME_WAIT_MS,
    };
  }

  /** Issue 21: the TCP simultaneous open, then the call's credentials over it (gateway/tcp-punch.ts). */
  #punchTcp(
    active: ActiveCall,
    local: CallDescription,
    remote: CallDescription,
    base: Omit<CallOutcome, 'ok' | 'checksSent'>,
  ): Promise<CallOutcome> {
    return punchTcpCall(this.c, active, local, remote, base, {
      transport: this.init.transport ?? 'udp',
      tcpProbe: this.tcpProbe,
      timeoutMs: Math.max(this.init.punch?.timeoutMs ?? 3000, 3000),
      keepaliveMs: this.init.punch?.keepaliveMs,
      // sc2c-ttl: a priming SYN instead of the go (only the virtual network can set a SYN's TTL).
      prime: this.#prime(local),
    });
  }

  #onRequest(
    request: SipRequest,
    respond: (status: number, extra?: [string, string][], body?: string) => void,
  ): void {
    const callId = header(request, 'Call-ID') ?? '';
    switch (request.method) {
      case 'INVITE':
        // A re-INVITE brings a fresh prediction after a failed punch: new media, same call.
        {
          const previous = this.#calls.get(callId);
          if (!previous && !this.#admit(request, callId, respond)) return;
          if (previous) this.#closeMedia(previous);
          this.#attempts.set(callId, (this.#attempts.get(callId) ?? 0) + 1);
          void answerCall(this.#answerHost, request, callId, respond, previous).catch((error: Error) => {
            // Answering failed past its own handling: end the call rather than leave a rejection.
            this.hangup(callId, `answering failed: ${error.message}`);
            this.emit('call', {
              callId,
              role: 'callee',
              peer: assertedCaller(request),
              mode: 'sc2c',
              ok: false,
              reason: `answering failed: ${error.message}`,
              startedAtMs: this.c.clock.now(),
              checksSent: 0,
            });
          });
        }
        return;
      case 'INFO': {
        respond(200);
        if (header(request, 'Content-Type') !== SC2C_CONTENT_TYPE) return;
        if (/"go"/.test(request.body)) this.#calls.get(callId)?.go?.(readGoFields(request.body));
        else if (/"relay"/.test(request.body)) this.#routes.peerRelayMoved(callId, request.body);
        return;
      }
      case 'BYE':
      case 'CANCEL':
        respond(200);
        if (this.#calls.has(callId)) {
          const reason = /text="([^"]*)"/.exec(header(request, 'Reason') ?? '')?.[1];
          const why = reason === undefined ? undefined : quoteWire(reason);
          this.#end(callId, why && `the peer ended the call: ${why}`);
          this.emit(
            'ended',
            callId,
            request.method === 'CANCEL'
              ? 'the peer cancelled'
              : why
                ? `the peer ended the call: ${why}`
                : 'the peer hung up',
          );
        }
        return;
      case 'ACK':
        this.#calls.get(callId)?.acked?.();
        return;
      default:
        respond(405);
    }
  }

  /**
   * A new call passes our own access list and call cap before anything is set up for it: a refused
   * caller starts no ffmpeg and opens no socket.
   */
  #admit(
    request: SipRequest,
    callId: string,
    respond: (status: number, extra?: [string, string][], body?: string) => void,
  ): boolean {
    const peer = assertedCaller(request);
    const refuse = (status: number, reason: string): false => {
      respond(status, [['Warning', `399 sc2c "${reason}"`]]);
      this.emit('call', {
        callId,
        role: 'callee',
        peer,
        mode: 'sc2c',
        ok: false,
        reason,
        startedAtMs: this.c.clock.now(),
        checksSent: 0,
      });
      return false;
    };
    const allowed = this.init.allowedCallers;
    if (allowed && !allowed.includes(peer))
      return refuse(403, `${peer} is not on this gateway's access list`);
    if (this.#calls.size >= (this.init.maxCalls ?? 16))
      return refuse(486, `busy: ${this.#calls.size} calls already`);
    return true;
  }

  /**
   * DTLS-SRTP on an established call's path. A failed handshake (a certificate that does not match
   * the SDP, a timeout) ends the call with the reason in the BYE, so both ends know why.
   */
  async #secure(callId: string, active: ActiveCall, outcome: CallOutcome): Promise<CallOutcome> {
    const secured = await secureOutcome(this.c, outcome, this.init.dtls, active);
    if (!secured.ok && outcome.ok && !active.ended) this.hangup(callId, secured.reason);
    return secured;
  }

  /** A direct call with no relay in play: counted through a `RoutedPath` all the same. */
  #counted(active: ActiveCall, outcome: CallOutcome): CallOutcome {
    const counted = countedDirect(this.c, outcome);
    if (counted.routed && !active.ended) active.routed = counted.routed;
    else if (counted.routed) counted.routed.close();
    return counted;
  }

  /** Closes one attempt's media (sockets and checks) and releases anyone waiting for its go. */
  #closeMedia(active: ActiveCall): void {
    active.earlyOff?.();
    // An attempt that never carried media takes its half-done handshake with it.
    if (!active.routed) active.dtls?.close();
    active.puncher?.close();
    active.rtcpPuncher?.close();
    active.socket.close();
    active.rtcpSocket?.close();
    for (const lease of active.leases ?? []) void lease.release();
    for (const socket of active.birthday ?? []) socket.close();
    closeTcp(active);
    active.go?.({});
  }

  /**
   * Makes `active` the call's current attempt. After `close()` there are no calls: an attempt that
   * finished setting up after that (its sockets and allocation were in flight) is ended at once.
   */
  #register(callId: string, active: ActiveCall): void {
    if (!this.#closed) {
      this.#calls.set(callId, active);
      return;
    }
    this.#dispose(active);
  }

  #end(callId: string, failure?: string): void {
    this.#attempts.delete(callId);
    const active = this.#calls.get(callId);
    if (!active || active.ended) return;
    this.#dispose(active);
    this.#calls.delete(callId);
    this.emit('closed', callId, failure);
  }

  /** Everything one attempt holds: checks, sockets, the handshake, the path and the allocation. */
  #dispose(active: ActiveCall): void {
    if (active.ended) return;
    active.ended = true;
    active.earlyOff?.();
    active.puncher?.close();
    active.socket.close();
    active.rtcpPuncher?.close();
    active.rtcpSocket?.close();
    for (const lease of active.leases ?? []) void lease.release();
    for (const socket of active.birthday ?? []) socket.close();
    closeTcp(active);
    active.go?.({});
    active.acked?.();
    active.dtls?.close();
    active.secure?.close();
    active.routed?.close();
    void active.relay?.close();
  }
}
