/**
 * Relay shards (issue 23, many cores). Node 20's `dgram` has no SO_REUSEPORT, so one process's
 * event loop relays with one core. Here each shard is a child process running a TURN server on a
 * port of its own; the front server on the STUN port answers each UDP client's authenticated
 * Allocate with a signed 300 (Try Alternate, RFC 8489 §10) naming the least-loaded shard, and the
 * client allocates there. TCP and TLS clients stay on the front.
 *
 * The shards report their counters and allocations every second over IPC: the front sums the
 * counters into its own for /metrics, lists the allocations in /allocations, and holds each user's
 * quota across all shards (the reports plus the redirections since the last one). A shard that
 * dies is started again, a few times; its clients' refreshes fail and they allocate anew, on a
 * shard that is up. A shard whose parent is gone exits.
 */

import { type ChildProcess, fork } from 'node:child_process';
import type { Endpoint } from '../net/address.ts';
import { quotaUser } from '../relay/credentials.ts';
import type { KernelPathChoice } from '../relay/kernel-offload.ts';
import {
  emptyTurnCounters,
  type TurnCounters,
  type TurnServerInit,
  type TurnShardPicker,
} from '../relay/turn-types.ts';
import type { DataPlaneMode } from './relay-plane.ts';

/** What a shard reports of one allocation, as `TurnServer.allocations()` lists it. */
export interface ShardAllocation {
  readonly client: string;
  readonly user: string;
  readonly relayed: string;
  readonly expiresInS: number;
  readonly channels: number;
  readonly bytes: number;
}

/** Everything a shard's TURN server needs but where it listens: sent to it over IPC. */
export type ShardServerInit = Omit<TurnServerInit, 'listen' | 'offload' | 'shards' | 'channelPlane'>;

export interface TurnShardsInit {
  readonly count: number;
  /** The address shards listen on (the STUN primary address), from `firstPort` up. */
  readonly address: string;
  readonly firstPort: number;
  readonly server: ShardServerInit;
  readonly kernelForwarding: 'auto' | 'on' | 'off';
  /** Which kernel path a shard tries (`turn.kernelPath`). Default auto. */
  readonly kernelPath?: KernelPathChoice;
  /** Each shard's data plane (`turn.dataPlane`). Default auto. */
  readonly dataPlane?: DataPlaneMode;
  readonly log: (line: string, level?: 'info' | 'warn') => void;
  /** How long a shard may take to come up. Default 15 000 ms. */
  readonly startTimeoutMs?: number;
}

/** From a shard to the front. */
export type ShardReport =
  | { readonly type: 'ready'; readonly kernel: string }
  | { readonly type: 'failed'; readonly why: string }
  | {
      readonly type: 'stats';
      readonly counters: TurnCounters;
      readonly allocations: readonly ShardAllocation[];
    };

/** From the front to a shard. */
export interface ShardStart {
  readonly type: 'start';
  readonly listen: Endpoint;
  readonly server: ShardServerInit;
  readonly kernelForwarding: 'auto' | 'on' | 'off';
  readonly kernelPath: KernelPathChoice;
  readonly dataPlane: DataPlaneMode;
}

/** Restarts of one shard before it is left down. */
const MAX_RESTARTS = 5;
const RESTART_DELAY_MS = 1000;
const ENTRY = new URL('./relay-shard-entry.js', import.meta.url).pathname;

class Shard {
  child?: ChildProcess;
  up = false;
  kernel = '';
  restarts = 0;
  counters: TurnCounters = emptyTurnCounters();
  /** What its earlier lives counted. */
  readonly before: TurnCounters = emptyTurnCounters();
  allocations: readonly ShardAllocation[] = [];
  /** Redirections since the last report, by quota user. */
  readonly pending = new Map<string, number>();
  pendingTotal = 0;

  constructor(readonly listen: Endpoint) {}

  get load(): number {
    return this.allocations.length + this.pendingTotal;
  }
}

export class TurnShards implements TurnShardPicker {
  readonly #shards: Shard[];
  #closed = false;

  private constructor(private readonly init: TurnShardsInit) {
    this.#shards = Array.from(
      { length: init.count },
      (_, i) => new Shard({ address: init.address, port: init.firstPort + i }),
    );
  }

  /** Starts every shard; rejects, with every shard stopped, when one cannot come up. */
  static async start(init: TurnShardsInit): Promise<TurnShards> {
    const shards = new TurnShards(init);
    try {
      await Promise.all(shards.#shards.map((shard) => shards.#spawn(shard)));
    } catch (error) {
      shards.close();
      throw error;
    }
    return shards;
  }

  /** Where the shards listen. */
  get endpoints(): Endpoint[] {
    return this.#shards.map((s) => s.listen);
  }

  /** How each shard forwards (its kernel path, or why not), as it said when it came up. */
  get kernel(): string {
    return this.#shards[0]?.kernel ?? '';
  }

  pick(user: string): Endpoint | { code: 486 | 508; why: string } {
    const up = this.#shards.filter((s) => s.up);
    if (up.length === 0) return { code: 508, why: 'no relay shard is up' };
    const who = quotaUser(user);
    let held = 0;
    for (const shard of this.#shards) {
      held += shard.pending.get(who) ?? 0;
      for (const a of shard.allocations) if (quotaUser(a.user) === who) held++;
    }
    const quota = this.init.server.userQuota ?? 10;
    if (held >= quota) return { code: 486, why: `${who} already holds ${held} allocations` };
    let best = up[0]!;
    for (const shard of up) if (shard.load < best.load) best = shard;
    best.pending.set(who, (best.pending.get(who) ?? 0) + 1);
    best.pendingTotal++;
    return best.listen;
  }

  /** The shards' counters, summed, as of their last reports. */
  counters(): TurnCounters {
    const sum = emptyTurnCounters();
    for (const shard of this.#shards) addCounters(addCounters(sum, shard.before), shard.counters);
    return sum;
  }

  /** Every shard's allocations, as of their last reports. */
  allocations(): ShardAllocation[] {
    return this.#shards.flatMap((s) => s.allocations);
  }

  /** Stops every shard (SIGTERM; each closes its sockets and kernel rules). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const shard of this.#shards) {
      shard.up = false;
      if (shard.child && shard.child.exitCode === null) shard.child.kill('SIGTERM');
    }
  }

  #spawn(shard: Shard): Promise<void> {
    const child = fork(ENTRY, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    shard.child = child;
    const where = `relay shard on ${shard.listen.address}:${shard.listen.port}`;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`the ${where} did not come up within ${this.init.startTimeoutMs ?? 15_000} ms`));
      }, this.init.startTimeoutMs ?? 15_000);
      child.on('message', (message: ShardReport) => {
        if (message.type === 'ready') {
          started = true;
          shard.up = true;
          shard.kernel = message.kernel;
          clearTimeout(timer);
          resolve();
        } else if (message.type === 'failed') {
          clearTimeout(timer);
          reject(new Error(`the ${where} could not start: ${message.why}`));
        } else if (message.type === 'stats') {
          shard.counters = message.counters;
          shard.allocations = message.allocations;
          shard.pending.clear();
          shard.pendingTotal = 0;
        }
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        shard.up = false;
        // Its counts so far stay in the totals: a restarted shard counts from zero.
        addCounters(shard.before, shard.counters);
        shard.counters = emptyTurnCounters();
        shard.allocations = [];
        shard.pending.clear();
        shard.pendingTotal = 0;
        if (!started) {
          reject(new Error(`the ${where} exited as it started (${signal ?? `code ${code}`})`));
          return;
        }
        if (this.#closed) return;
        if (shard.restarts >= MAX_RESTARTS) {
          this.init.log(`the ${where} died (${signal ?? `code ${code}`}) and is left down`, 'warn');
          return;
        }
        shard.restarts++;
        this.init.log(`the ${where} died (${signal ?? `code ${code}`}); starting it again`, 'warn');
        setTimeout(() => {
          if (this.#closed) return;
          this.#spawn(shard).catch((error: Error) => this.init.log(error.message, 'warn'));
        }, RESTART_DELAY_MS).unref();
      });
      child.send({
        type: 'start',
        listen: shard.listen,
        server: this.init.server,
        kernelForwarding: this.init.kernelForwarding,
        kernelPath: this.init.kernelPath ?? 'auto',
        dataPlane: this.init.dataPlane ?? 'auto',
      } satisfies ShardStart);
    });
  }
}

/** Adds `more`'s counters into `into`; returns `into`. */
export function addCounters(into: TurnCounters, more: TurnCounters): TurnCounters {
  for (const key of Object.keys(into) as (keyof TurnCounters)[]) into[key] += more[key] ?? 0;
  return into;
}
