/**
 * The punch of a call attempt that needs birthday punching (issue 19, traversal/birthday.ts): the
 * hard side waits for a probe to land on one of its mappings and keeps that socket; the easy side
 * probes random ports on the hard side's address, paced, while it answers like any pinned side.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import type { UdpSocket } from '../net/types.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import { DEFAULT_BIRTHDAY_PROBES, probeHardSide, probePorts } from '../traversal/birthday.ts';
import { Puncher, type PunchInit } from '../traversal/punch.ts';
import type { MediaPair, PairResult } from './pair-punch.ts';

type Components = { readonly clock: Clock; readonly transactionId?: () => Uint8Array };

/** Uniform in [0, 1) from the injected transaction-ID source (seeded on the virtual network). */
function randomFrom(c: Components): () => number {
  return () => {
    const bytes = c.transactionId?.() ?? new Uint8Array(randomBytes(4));
    return (((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0) / 2 ** 32;
  };
}

/** Hard side: the first socket a valid check reaches wins and becomes the media socket. */
export async function punchHard(
  c: Components,
  pair: MediaPair,
  local: CallDescription,
  remote: CallDescription,
  init: Pick<PunchInit, 'intervalMs' | 'timeoutMs' | 'keepaliveMs'>,
): Promise<PairResult> {
  const sockets = [pair.socket, ...(pair.birthday ?? [])];
  pair.birthday = undefined;
  const punchers = sockets.map(
    (socket) =>
      new Puncher({ socket, clock: c.clock, transactionId: c.transactionId }, { local, remote, ...init }),
  );
  pair.puncher = punchers[0];
  const checks = (): number => punchers.reduce((sum, p) => sum + p.counters.checksSent, 0);
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  const won = await new Promise<{ index: number; from: Endpoint } | undefined>((resolve) => {
    punchers.forEach((puncher, index) => {
      puncher.onVerified = (from) => resolve({ index, from });
    });
    timer = c.clock.setTimeout(() => resolve(undefined), init.timeoutMs ?? 3000);
  });
  timer?.clear();
  for (const [index, puncher] of punchers.entries()) {
    puncher.onVerified = undefined;
    if (index === won?.index) continue;
    puncher.close();
    // The primary stays open until a winner replaces it: the gateway closes it with the call.
    if (index > 0 || won) sockets[index]!.close();
  }
  if (!won) {
    return {
      ok: false,
      reason: `no direct path: no birthday probe reached any of ${sockets.length} ports`,
      checksSent: checks(),
    };
  }
  const winner = punchers[won.index]!;
  pair.socket = sockets[won.index]!;
  pair.puncher = winner;
  try {
    const success = await winner.punch([won.from]);
    return { ok: true, path: { socket: pair.socket, remote: success.remote }, checksSent: checks() };
  } catch (error) {
    winner.close();
    return { ok: false, reason: `no direct path: ${(error as Error).message}`, checksSent: checks() };
  }
}

/** Easy side: probes the hard side's address while answering (a landed probe's answer ends it). */
export async function punchEasy(
  c: Components,
  puncher: Puncher,
  socketFor: UdpSocket,
  remote: CallDescription,
  candidates: readonly Endpoint[],
  probes = DEFAULT_BIRTHDAY_PROBES,
  ratePerSecond?: number,
): Promise<PairResult> {
  let done = false;
  const ports = probePorts(probes, randomFrom(c));
  const punching = puncher.punch(candidates);
  void probeHardSide(c, puncher, remote.publicEndpoint.address, ports, { ratePerSecond, done: () => done });
  try {
    const success = await punching;
    return {
      ok: true,
      path: { socket: socketFor, remote: success.remote },
      checksSent: puncher.counters.checksSent,
    };
  } catch (error) {
    puncher.close();
    return {
      ok: false,
      reason: `no direct path: ${(error as Error).message}`,
      checksSent: puncher.counters.checksSent,
    };
  } finally {
    done = true;
  }
}
