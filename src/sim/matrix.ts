/**
 * `sc2c sim matrix`: the real server and gateway code on the virtual network, for every calling x
 * called NAT pair and traversal mode. Per cell: successes, setup time (INVITE sent to both
 * directions confirmed) and punch skew, measured at the NAT boxes as the gap between the first
 * packets each side sent toward the other.
 *
 *   caller 10.0.1.2 ─1 ms─ NAT A 198.18.1.1 ─a ms─┐
 *                                                internet ── server 198.18.0.10 (SIP 5060, STUN 3478), .11
 *   callee 10.0.2.2 ─1 ms─ NAT B 198.18.2.1 ─b ms─┘
 * a = b = RTT/4 (so caller-callee RTT is the given RTT), or a, b from --asymmetric.
 */

import { type CallOutcome, Gateway } from '../gateway/gateway.ts';
import type { NatBehaviour } from '../nat/behaviour.ts';
import { VirtualClock } from '../net/clock.ts';
import { BackgroundTraffic } from '../net/virtual/background.ts';
import { VirtualNetwork } from '../net/virtual/network.ts';
import type { TraceRecord } from '../net/virtual/trace.ts';
import type { TraversalMode } from '../protocol/sdp.ts';
import { SignalingServer } from '../signaling/server.ts';
import { type NatProbe, probeNat } from '../traversal/probe.ts';
import { RecentBindings } from '../traversal/recent-bindings.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { StunTcpResponder } from '../traversal/stun-tcp.ts';
import { hashString } from '../util/rng.ts';
import { percentile } from '../util/stats.ts';

const SERVER = { address: '198.18.0.10', sip: 5060, stun: 3478 };
const ALTERNATE = { address: '198.18.0.11', port: 3479 };
const NAT_A = '198.18.1.1';
const NAT_B = '198.18.2.1';
const USERS = { caller: 'caller-secret-1', callee: 'callee-secret-1' };
/** Virtual time between trials, so retransmissions of one call never overlap the next. */
const TRIAL_GAP_MS = 5000;

export interface MatrixCellInit {
  readonly calling: { readonly name: string; readonly behaviour: NatBehaviour };
  readonly called: { readonly name: string; readonly behaviour: NatBehaviour };
  readonly mode: TraversalMode;
  readonly trials: number;
  /** One-way delay of each NAT's uplink to the core where the server sits. */
  readonly oneWayMs: readonly [number, number];
  /** New sessions per second opened by another host behind each NAT; 0 for none. */
  readonly backgroundPerSecond: number;
  /** Candidates each gateway may cover on the peer's predicted port (see `windowSize`). Default 3. */
  readonly window?: number;
  /** Let a side pin its mapping before the punch (issue 19). Default true. */
  readonly pin?: boolean;
  /** Birthday punching for random-port NATs (issue 19). Default true. */
  readonly birthday?: boolean;
  /** Track our NAT's drift while waiting for the go toward a pinned peer (issue 19). Default true. */
  readonly drift?: boolean;
  /** Crossed ladders between two predicting per-destination NATs (issue 19); 1 turns them off. */
  readonly crossWindow?: number;
  /**
   * Gateways ask their router for the media port (issue 20): PCP or NAT-PMP where the NAT profile
   * answers them (`+pcp`, `+natpmp`). Default true; false keeps prediction alone.
   */
  readonly portMapping?: boolean;
  /**
   * Issue 21: `tcp` punches a TCP simultaneous open instead of UDP (both gateways `transport: tcp`;
   * the server answers STUN Binding over TCP too). Default `udp`.
   */
  readonly transport?: 'udp' | 'tcp';
  readonly seed: number;
  /** Also receives every trace record (for diagnosis). */
  readonly trace?: (record: TraceRecord) => void;
  /** Return every successful trial's setup time too (`setupsMs`). Default false. */
  readonly keepSetups?: boolean;
  /** Called with both outcomes of every failed trial (for diagnosis). */
  readonly onFailure?: (trial: number, caller: CallOutcome, callee: CallOutcome | undefined) => void;
}

/** A cell as plain data: what a worker thread can be sent (no callbacks). */
export type CellJob = Omit<MatrixCellInit, 'trace' | 'onFailure'>;

export interface MatrixCell {
  readonly calling: string;
  readonly called: string;
  readonly mode: TraversalMode;
  readonly successes: number;
  readonly trials: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
  readonly skewMsP95: number | null;
  /** Why trials failed, with counts. */
  readonly failures: Readonly<Record<string, number>>;
  /**
   * Punch checks both gateways sent, over all trials (the probe budget: what a call costs on the
   * wire before media; the last attempt of a retried call, and up to the relay's budget where media
   * went there first).
   */
  readonly checksSent: number;
  /** Every successful trial's setup time, when `keepSetups` asked for them. */
  readonly setupsMs?: readonly number[];
  /**
   * Age of each predicted port at the punch, both sides, every trial (see
   * `CallOutcome.predictionAgeMs`), when `keepSetups` asked for them.
   */
  readonly predictionAgesMs?: readonly number[];
}

/**
 * Probes each NAT behaviour once with the real probe code, under the cell's background load (a
 * gateway on a busy NAT probes it busy); gateways cache the result, as they would.
 */
const probeCache = new Map<string, NatProbe>();

async function measuredProbe(
  name: string,
  behaviour: NatBehaviour,
  publicAddress: string,
  seed: number,
  backgroundPerSecond: number,
): Promise<NatProbe> {
  const key = `${name}|${publicAddress}|${backgroundPerSecond}`;
  const cached = probeCache.get(key);
  if (cached) return cached;
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const server = net.addHost('server', { addresses: [SERVER.address, ALTERNATE.address] });
  const nat = net.addNat('nat', { publicAddress, insideAddress: '10.0.1.1', behaviour });
  const host = net.addHost('host', { addresses: ['10.0.1.2'] });
  net.connect(server, internet, {});
  net.connect(nat, internet, { latencyMs: 10 });
  net.connect(host, nat, { latencyMs: 1 });
  let background: BackgroundTraffic | undefined;
  if (backgroundPerSecond > 0) {
    await server.bindUdp({ port: 7 });
    const other = net.addHost('bg', { addresses: ['10.0.1.9'] });
    net.connect(other, nat, { latencyMs: 1 });
    background = new BackgroundTraffic(
      { network: other, clock, rng: net.rng('bg') },
      { sessionsPerSecond: backgroundPerSecond, target: { address: SERVER.address, port: 7 } },
    );
  }
  const responder = await StunResponder.start(server, {
    primary: { address: SERVER.address, port: SERVER.stun },
    alternate: ALTERNATE,
  });
  try {
    const probe = await clock.run(
      probeNat(
        { network: host, clock },
        { server: { address: SERVER.address, port: SERVER.stun }, rtoMs: 100 },
      ),
    );
    probeCache.set(key, probe);
    return probe;
  } finally {
    background?.stop();
    responder.close();
  }
}

export async function runMatrixCell(init: MatrixCellInit): Promise<MatrixCell> {
  const clock = new VirtualClock();
  const firstOut = new Map<string, number>();
  let trialStart = 0;
  const trace = (record: TraceRecord): void => {
    init.trace?.(record);
    // The first packet of this trial each NAT lets out toward the other NAT: the punch leaving.
    if (record.event !== 'nat-out' || record.packet.kind !== 'udp' || clock.now() < trialStart) return;
    const toward = record.packet.dst.address;
    if ((record.node === 'nat-a' && toward === NAT_B) || (record.node === 'nat-b' && toward === NAT_A)) {
      if (!firstOut.has(record.node)) firstOut.set(record.node, record.timeMs);
    }
  };
  const net = new VirtualNetwork({ clock, seed: init.seed, trace });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: [SERVER.address, ALTERNATE.address] });
  const natA = net.addNat('nat-a', {
    publicAddress: NAT_A,
    insideAddress: '10.0.1.1',
    behaviour: init.calling.behaviour,
  });
  const natB = net.addNat('nat-b', {
    publicAddress: NAT_B,
    insideAddress: '10.0.2.1',
    behaviour: init.called.behaviour,
  });
  const a = net.addHost('caller', { addresses: ['10.0.1.2'] });
  const b = net.addHost('callee', { addresses: ['10.0.2.2'] });
  net.connect(serverHost, internet, {});
  net.connect(natA, internet, { latencyMs: init.oneWayMs[0] });
  net.connect(natB, internet, { latencyMs: init.oneWayMs[1] });
  net.connect(a, natA, { latencyMs: 1 });
  net.connect(b, natB, { latencyMs: 1 });
  const background: BackgroundTraffic[] = [];
  if (init.backgroundPerSecond > 0) {
    await serverHost.bindUdp({ port: 7 });
    for (const [i, nat] of [natA, natB].entries()) {
      const other = net.addHost(`bg-${i}`, { addresses: [`10.0.${i + 1}.9`] });
      net.connect(other, nat, { latencyMs: 1 });
      background.push(
        new BackgroundTraffic(
          { network: other, clock, rng: net.rng(`bg-${i}`) },
          { sessionsPerSecond: init.backgroundPerSecond, target: { address: SERVER.address, port: 7 } },
        ),
      );
    }
  }
  const stun = await StunResponder.start(serverHost, {
    primary: { address: SERVER.address, port: SERVER.stun },
    alternate: ALTERNATE,
  });
  stun.bindings = new RecentBindings(clock);
  const tcpStun =
    init.transport === 'tcp'
      ? await StunTcpResponder.start(
          { network: serverHost, clock },
          { listen: { address: SERVER.address, port: SERVER.stun } },
        )
      : undefined;
  const server = await SignalingServer.start(
    { network: serverHost, clock },
    { listen: { port: SERVER.sip }, realm: 'sc2c.lab', users: USERS, bindings: stun.bindings },
  );
  const rng = net.rng('ids');
  const transactionId = (): Uint8Array => Uint8Array.from({ length: 12 }, () => rng.int(0, 255));
  const gateway = async (
    network: typeof a,
    user: keyof typeof USERS,
    probe: NatProbe,
    router: string,
  ): Promise<Gateway> => {
    const started = await clock.run(
      Gateway.start(
        { network, clock, transactionId },
        {
          sip: {
            server: { address: SERVER.address, port: SERVER.sip },
            domain: 'sc2c.lab',
            user,
            password: USERS[user],
          },
          stunServer: { address: SERVER.address, port: SERVER.stun },
          mode: init.mode,
          probe,
          // A background re-probe would move the NAT's counter mid-trial; the cached probe is exact here.
          probeRefreshMs: 0,
          stunRtoMs: 100 + 4 * Math.max(...init.oneWayMs),
          punch: {
            timeoutMs: 2000 + 4 * Math.max(...init.oneWayMs),
            window: init.window,
            pin: init.pin,
            birthday: init.birthday,
            drift: init.drift,
            crossWindow: init.crossWindow,
          },
          ...(init.portMapping !== false ? { portMapping: { gateway: router } } : {}),
          ...(init.transport === 'tcp' ? { transport: 'tcp' as const } : {}),
        },
      ),
    );
    // Detection runs in the background; the first trial's call must find its answer.
    await clock.run(started.portMappingDetected());
    return started;
  };
  const caller = await gateway(
    a,
    'caller',
    await measuredProbe(
      init.calling.name,
      init.calling.behaviour,
      NAT_A,
      init.seed,
      init.backgroundPerSecond,
    ),
    '10.0.1.1',
  );
  const callee = await gateway(
    b,
    'callee',
    await measuredProbe(init.called.name, init.called.behaviour, NAT_B, init.seed, init.backgroundPerSecond),
    '10.0.2.1',
  );
  const setups: number[] = [];
  const skews: number[] = [];
  const failures: Record<string, number> = {};
  let successes = 0;
  let checksSent = 0;
  const ages: number[] = [];
  try {
    for (let trial = 0; trial < init.trials; trial++) {
      firstOut.clear();
      trialStart = clock.now();
      // The callee reports once per attempt; the call's result is its report for the caller's last attempt.
      const calleeOutcomes: CallOutcome[] = [];
      const off = callee.on('call', (o) => {
        calleeOutcomes.push(o);
      });
      const outcome = await clock.run(caller.call('callee', { mode: init.mode }));
      await clock.runUntil(
        () => calleeOutcomes.some((o) => (o.attempts ?? 1) >= (outcome.attempts ?? 1)),
        10_000,
      );
      off();
      const calleeOutcome = calleeOutcomes.at(-1);
      checksSent += outcome.checksSent + (calleeOutcome?.checksSent ?? 0);
      for (const age of [outcome.predictionAgeMs, calleeOutcome?.predictionAgeMs])
        if (age !== undefined) ages.push(age);
      const tA = firstOut.get('nat-a');
      const tB = firstOut.get('nat-b');
      if (tA !== undefined && tB !== undefined) skews.push(Math.abs(tA - tB));
      // Over TCP only a TCP path counts (the gateways try nothing else, but say so).
      const tcpMissing = init.transport === 'tcp' && outcome.ok && outcome.transport !== 'tcp';
      if (outcome.ok && calleeOutcome?.ok && !tcpMissing) {
        successes++;
        setups.push(Math.max(outcome.confirmedAtMs!, calleeOutcome.confirmedAtMs!) - outcome.startedAtMs);
      } else {
        init.onFailure?.(trial, outcome, calleeOutcome);
        const reason = simplify(
          tcpMissing
            ? 'a direct path that is not TCP'
            : outcome.ok
              ? (calleeOutcome?.reason ?? 'callee never finished')
              : (outcome.reason ?? 'unknown'),
        );
        failures[reason] = (failures[reason] ?? 0) + 1;
      }
      caller.hangup(outcome.callId);
      callee.hangup(outcome.callId);
      await clock.advance(TRIAL_GAP_MS);
    }
  } finally {
    for (const bg of background) bg.stop();
    caller.close();
    callee.close();
    await clock.run(Promise.all([caller.released(), callee.released()]));
    server.close();
    stun.close();
    tcpStun?.close();
  }
  const sorted = (v: number[]): number[] => [...v].sort((x, y) => x - y);
  const round = (v: number): number => Math.round(v * 10) / 10;
  return {
    calling: init.calling.name,
    called: init.called.name,
    mode: init.mode,
    successes,
    trials: init.trials,
    setupMsP50: setups.length ? round(percentile(sorted(setups), 50)) : null,
    setupMsP95: setups.length ? round(percentile(sorted(setups), 95)) : null,
    skewMsP95: skews.length ? round(percentile(sorted(skews), 95)) : null,
    failures,
    checksSent,
    ...(init.keepSetups ? { setupsMs: setups, predictionAgesMs: ages } : {}),
  };
}

/** Failure reasons without per-call details (ports, counts), so they aggregate. */
function simplify(reason: string): string {
  return reason.replace(/\d+(\.\d+)*(:\d+)?/g, 'N').slice(0, 120);
}

export function cellSeed(base: number, calling: string, called: string, mode: string): number {
  return (hashString(`${calling}|${called}|${mode}`) ^ base) >>> 0;
}
