/**
 * How far our own NAT's port counter moved between the prediction and the punch (issue 19, item 1:
 * fresh predictions at the last moment, a window sized from the measured background rate).
 *
 * A side whose predicted port faces a pinned peer (traversal/pin.ts) waits for the server's go, up
 * to a few round trips, while other hosts behind a busy NAT take ports. Instead of guessing, it
 * keeps sampling while it waits: one STUN Binding from a fresh socket every `intervalMs` (each takes
 * the counter's next port, so it is one of ours and counted). At the go:
 * - the newest answered sample fixes a floor: the counter moved at least that far, plus one step
 *   for each sample sent after it;
 * - the samples' own spacing measures the background rate (ports beyond our own samples, per
 *   second), and that rate times the time since the newest answered sample is what more to expect.
 * The peer's rungs cover far more ports than a handful of checks, so the checks go where the
 * counter most likely is now instead of starting at the prediction (`checkPlan`).
 */
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { Network, UdpSocket } from '../net/types.ts';
import { stunBinding } from './stun-client.ts';

/** The shortest time between the prediction's sample and a later one that gives a rate. */
export const MIN_RATE_SPAN_MS = 50;

/** One sample of our NAT's counter: when its request left, and the port it got (once answered). */
export interface DriftSample {
  readonly sentAtMs: number;
  readonly port?: number;
}

export interface DriftEstimate {
  /** Steps the counter surely moved since the prediction's sample (the first check's port is `predicted + atLeast·step` or later). */
  readonly atLeast: number;
  /** Steps it most likely moved by now. */
  readonly expected: number;
  /** Other sessions per second through our NAT, from the samples; null without an answered one. */
  readonly ratePerSecond: number | null;
  readonly samples: number;
  readonly answered: number;
}

/**
 * The estimate at `nowMs` from the prediction's own sample (`base`, its port read and the time it
 * was taken) and the samples since, in the order they were sent. A sample whose port is below the
 * base (the counter wrapped) or off the step's grid counts as unanswered. Pure.
 */
export function estimateDrift(
  base: { readonly atMs: number; readonly port: number },
  samples: readonly DriftSample[],
  step: number,
  nowMs: number,
): DriftEstimate {
  let newest = -1;
  samples.forEach((sample, i) => {
    if (sample.port === undefined) return;
    const moved = sample.port - base.port;
    if (moved > 0 && moved % step === 0) newest = i;
  });
  const answered = samples.filter((s) => s.port !== undefined).length;
  const after = samples.length - newest - 1;
  if (newest < 0) {
    return {
      atLeast: samples.length,
      expected: samples.length,
      ratePerSecond: null,
      samples: samples.length,
      answered,
    };
  }
  const sample = samples[newest]!;
  const moved = (sample.port! - base.port) / step;
  // Samples 0..newest took one port each; anything beyond that was another host's.
  const others = Math.max(0, moved - (newest + 1));
  const spanMs = sample.sentAtMs - base.atMs;
  // Too short a span says nothing about a rate (one session in 5 ms is not 200/s).
  if (spanMs < MIN_RATE_SPAN_MS) {
    return {
      atLeast: moved + after,
      expected: moved + after,
      ratePerSecond: null,
      samples: samples.length,
      answered,
    };
  }
  const ratePerSecond = (others * 1000) / spanMs;
  const atLeast = moved + after;
  const expected = atLeast + (ratePerSecond * Math.max(0, nowMs - sample.sentAtMs)) / 1000;
  return { atLeast, expected, ratePerSecond, samples: samples.length, answered };
}

/**
 * Which steps past the prediction a peer facing `rungs` pinned mappings covers, given what it knows
 * of its own drift: check i goes to rung `first + 2i`, and lands when the counter moved `first + i`
 * steps (pin.ts). `checks` is how many it sends when it has a rate; without one it sends as many as
 * the rungs allow from the floor. Pure.
 */
export function checkPlan(
  rungs: number,
  drift: DriftEstimate | undefined,
  checks: number,
): { readonly first: number; readonly count: number } {
  const top = Math.max(0, rungs - 1);
  // From rung `first`, checks reach rungs first, first + 2, ... up to the top one.
  const room = (first: number) => Math.floor((top - first) / 2) + 1;
  if (!drift) return { first: 0, count: room(0) };
  const floor = Math.min(Math.max(0, Math.floor(drift.atLeast)), top);
  if (drift.ratePerSecond === null) return { first: floor, count: room(floor) };
  const count = Math.max(1, Math.min(Math.floor(checks), room(0)));
  const centred = Math.round(drift.expected - (count - 1) / 2);
  const highest = top - 2 * (count - 1);
  // Never below the floor; near the top, slide down (still above the floor) or send fewer.
  if (floor > highest) return { first: floor, count: room(floor) };
  return { first: Math.min(Math.max(floor, centred), highest), count };
}

export interface DriftTrackerComponents {
  readonly network: Network;
  readonly clock: Clock;
  readonly transactionId?: () => Uint8Array;
}

export interface DriftTrackerInit {
  readonly stunServer: Endpoint;
  readonly stunRtoMs: number;
  /** The prediction's sample: our counter's port and when it was read. */
  readonly base: { readonly atMs: number; readonly port: number };
  /** Our NAT's allocation step. */
  readonly step: number;
  /** Between samples. Each takes one of our NAT's ports, so not too often. Default 100 ms. */
  readonly intervalMs?: number;
  /** Samples at most; the tracker stops by itself after them. Default 20 (2 s at the default interval). */
  readonly maxSamples?: number;
}

/** Samples our counter until `stop()` (at the go) or `maxSamples`; every socket closed by `stop()`. */
export class DriftTracker {
  readonly #c: DriftTrackerComponents;
  readonly #init: DriftTrackerInit;
  readonly #samples: { sentAtMs: number; port?: number }[] = [];
  readonly #sockets = new Set<UdpSocket>();
  #timer: { clear(): void } | undefined;
  #stopped = false;

  constructor(components: DriftTrackerComponents, init: DriftTrackerInit) {
    this.#c = components;
    this.#init = init;
  }

  start(): this {
    void this.#sample();
    return this;
  }

  /** Stops sampling and closes the sample sockets; the estimate as of now. Idempotent. */
  stop(): DriftEstimate {
    this.#stopped = true;
    this.#timer?.clear();
    for (const socket of this.#sockets) socket.close();
    this.#sockets.clear();
    return this.estimate();
  }

  estimate(): DriftEstimate {
    return estimateDrift(this.#init.base, this.#samples, this.#init.step, this.#c.clock.now());
  }

  async #sample(): Promise<void> {
    if (this.#stopped || this.#samples.length >= (this.#init.maxSamples ?? 20)) return;
    let socket: UdpSocket;
    try {
      socket = await this.#c.network.bindUdp();
    } catch {
      return; // no socket, no more samples: the estimate stands on what came back
    }
    if (this.#stopped) {
      socket.close();
      return;
    }
    this.#sockets.add(socket);
    const sample: { sentAtMs: number; port?: number } = { sentAtMs: this.#c.clock.now() };
    this.#samples.push(sample);
    this.#timer = this.#c.clock.setTimeout(() => void this.#sample(), this.#init.intervalMs ?? 100);
    const result = await stunBinding(
      socket,
      { clock: this.#c.clock, transactionId: this.#c.transactionId },
      // One try: a late answer is worth less than the next sample, and a retransmission would
      // not take a new port anyway.
      {
        server: this.#init.stunServer,
        rtoMs: Math.max(this.#init.stunRtoMs, 4 * (this.#init.intervalMs ?? 100)),
        attempts: 1,
      },
    ).catch(() => undefined);
    if (result && !this.#stopped) sample.port = result.mapped.port;
    socket.close();
    this.#sockets.delete(socket);
  }
}
