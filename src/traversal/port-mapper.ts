/**
 * The gateway's port mappings on its router (issue 20): one lease per media socket, asked for with
 * PCP or NAT-PMP (port-mapping.ts), renewed at half its lifetime (RFC 6886 §3.3, RFC 6887 §11.2.1)
 * and deleted when the call ends or the gateway stops.
 *
 * The router losing its state (a reboot, a restarted daemon) shows in its epoch (RFC 6887 §8.5):
 * the next answer that fails `epochConsistent` asks for every lease again at once, so a restart is
 * recovered within one renewal. A renewal that comes back with another external port is reported
 * (`moved`); one that keeps failing until the lease runs out drops it (`lost`).
 *
 * Bounded: at most `maxLeases` at once (a call holds one, two with a separate RTCP port), and a
 * lifetime asked for of at most `MAX_LIFETIME_S`.
 */
import type { Clock, Timer } from '../net/clock.ts';
import type { Network } from '../net/types.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import {
  DEFAULT_PROTOCOLS,
  type EpochSample,
  epochConsistent,
  MAX_LIFETIME_S,
  type PortMapping,
  type PortMappingProtocol,
  releasePortMapping,
  requestPortMapping,
} from './port-mapping.ts';

export interface PortMapperComponents {
  readonly network: Network;
  readonly clock: Clock;
}

export interface PortMapperInit {
  /** The router (the default gateway). */
  readonly gateway: string;
  /** Our address on the router's LAN. */
  readonly clientAddress: string;
  /** Asked for each lease. Default 1800 s: a call outlives it only with renewals. */
  readonly lifetimeS?: number;
  /** In this order. Default PCP, NAT-PMP, UPnP IGD; `detect` keeps the one that answered. */
  readonly protocols?: readonly PortMappingProtocol[];
  /** Leases at once. Default 64. */
  readonly maxLeases?: number;
  /** Per request (port-mapping.ts). Defaults 250 ms and 3. */
  readonly rtoMs?: number;
  readonly attempts?: number;
}

/** What `sc2c probe --json` and the gateway report: the router's grant, or why there is none. */
export type PortMappingStatus =
  | {
      readonly protocol: PortMappingProtocol;
      readonly externalAddress: string;
      readonly externalPort: number;
      readonly lifetimeS: number;
    }
  | { readonly protocol: null; readonly reason: string };

export interface PortLease {
  readonly internalPort: number;
  /** The router's current grant (a renewal replaces it). */
  readonly mapping: PortMapping;
  /** Deletes the mapping on the router. Idempotent; never rejects. */
  release(): Promise<void>;
}

export interface PortMapperEvents extends Record<string, unknown[]> {
  renewed: [lease: PortLease];
  /** A renewal or re-request gave another external port. */
  moved: [lease: PortLease, previous: PortMapping];
  /** Renewals failed until the lease ran out. */
  lost: [lease: PortLease, reason: string];
  /** The router's epoch says it lost its mappings: every lease is being asked for again. */
  reset: [];
}

export interface PortMapperCounters {
  granted: number;
  refused: number;
  renewed: number;
  moved: number;
  lost: number;
  released: number;
  resets: number;
}

export const DEFAULT_LEASE_LIFETIME_S = 1800;
/** What `detect` asks for: the shortest lifetime miniupnpd grants by default (min_lifetime). */
const DETECT_LIFETIME_S = 120;
/** Re-asking every lease after a reset happens at most this often. */
const MIN_RESET_GAP_MS = 10_000;
/** A failed renewal is tried again after half the time left, but not sooner than this. */
const MIN_RETRY_MS = 1000;

/**
 * Half the granted lifetime (RFC 6886 §3.3), kept between a second and half a day: a router that
 * grants 0 s must not set off a renewal storm, nor one that grants 2^32 - 1 s overflow the timer.
 */
export function renewalDelayMs(mapping: Pick<PortMapping, 'lifetimeS'>): number {
  return Math.min(MAX_LIFETIME_S * 500, Math.max(MIN_RETRY_MS, mapping.lifetimeS * 500));
}

export type MapResult =
  | { readonly ok: true; readonly lease: PortLease }
  | { readonly ok: false; readonly reason: string };

class Lease implements PortLease {
  timer?: Timer;
  released = false;
  constructor(
    public mapping: PortMapping,
    private readonly onRelease: (lease: Lease) => Promise<void>,
  ) {}
  get internalPort(): number {
    return this.mapping.internalPort;
  }
  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    this.timer?.clear();
    return this.onRelease(this);
  }
}

export class PortMapper extends TypedEmitter<PortMapperEvents> {
  readonly counters: PortMapperCounters = {
    granted: 0,
    refused: 0,
    renewed: 0,
    moved: 0,
    lost: 0,
    released: 0,
    resets: 0,
  };
  readonly #leases = new Map<number, Lease>();
  #epoch?: EpochSample;
  #lastResetMs?: number;
  #closed = false;
  /** Deletes on their way to the router: `close()` waits for these too. */
  readonly #releasing = new Set<Promise<void>>();

  constructor(
    private readonly c: PortMapperComponents,
    readonly init: PortMapperInit,
  ) {
    super();
  }

  /**
   * Asks the router once per protocol, for a port of a socket opened for it, and deletes the grant:
   * whether the router maps at all, with which protocol (the first to grant), and to which address.
   * A mapper comes back only then, speaking that protocol alone (a NAT-PMP router is not kept
   * waiting on PCP timeouts per call).
   */
  static async detect(
    c: PortMapperComponents,
    init: PortMapperInit,
    signal?: AbortSignal,
  ): Promise<{ readonly status: PortMappingStatus; readonly mapper?: PortMapper }> {
    // Every protocol at once: a router answers its own in a round trip or two, and one that speaks
    // only UPnP must not wait out PCP's and NAT-PMP's retransmissions (3.5 s) first.
    const protocols = init.protocols ?? DEFAULT_PROTOCOLS;
    const won = new AbortController();
    const stop = signal ? AbortSignal.any([signal, won.signal]) : won.signal;
    let winner: PortMapping | undefined;
    const asked = {
      gateway: init.gateway,
      clientAddress: init.clientAddress,
      rtoMs: init.rtoMs,
      attempts: init.attempts,
    };
    const results = await Promise.all(
      protocols.map(async (protocol) => {
        const socket = await c.network.bindUdp();
        try {
          const result = await requestPortMapping(c, {
            ...asked,
            internalPort: socket.local.port,
            lifetimeS: DETECT_LIFETIME_S,
            protocols: [protocol],
            signal: stop,
          });
          if (result.ok) {
            if (!winner) {
              winner = result.mapping;
              won.abort();
            }
            // Detection keeps nothing: the winner's grant and any other are deleted at once.
            await releasePortMapping(c, result.mapping, asked);
          }
          return result;
        } finally {
          socket.close();
        }
      }),
    );
    if (!winner) {
      const reasons = results.flatMap((r) => (r.ok ? [] : [r.reason]));
      return { status: { protocol: null, reason: reasons.join('; ') } };
    }
    const mapping: PortMapping = winner;
    return {
      status: {
        protocol: mapping.protocol,
        externalAddress: mapping.externalAddress,
        externalPort: mapping.externalPort,
        lifetimeS: mapping.lifetimeS,
      },
      mapper: new PortMapper(c, { ...init, protocols: [mapping.protocol] }),
    };
  }

  get leases(): readonly PortLease[] {
    return [...this.#leases.values()];
  }

  /** Asks for a mapping of `internalPort`, renewed until released. */
  async map(internalPort: number, signal?: AbortSignal): Promise<MapResult> {
    if (this.#closed) return { ok: false, reason: 'port mapping stopped' };
    const max = this.init.maxLeases ?? 64;
    if (this.#leases.size >= max) return { ok: false, reason: `already ${max} port mappings held` };
    if (this.#leases.has(internalPort))
      return { ok: false, reason: `port ${internalPort} is already mapped` };
    const result = await requestPortMapping(this.c, { ...this.#asked(internalPort), signal });
    if (!result.ok) {
      this.counters.refused++;
      return result;
    }
    const lease = new Lease(result.mapping, (l) => this.#release(l));
    if (this.#closed) {
      await lease.release();
      return { ok: false, reason: 'port mapping stopped' };
    }
    this.counters.granted++;
    this.#leases.set(internalPort, lease);
    this.#observe(result.mapping, lease);
    this.#schedule(lease, renewalDelayMs(result.mapping));
    return { ok: true, lease };
  }

  /** Idempotent: stops renewing and deletes every lease on the router. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...[...this.#leases.values()].map((l) => l.release()), ...this.#releasing]);
  }

  #asked(internalPort: number) {
    return {
      gateway: this.init.gateway,
      clientAddress: this.init.clientAddress,
      internalPort,
      lifetimeS: this.init.lifetimeS ?? DEFAULT_LEASE_LIFETIME_S,
      protocols: this.init.protocols,
      rtoMs: this.init.rtoMs,
      attempts: this.init.attempts,
    };
  }

  #schedule(lease: Lease, delayMs: number): void {
    lease.timer?.clear();
    lease.timer = this.c.clock.setTimeout(() => void this.#renew(lease), Math.max(0, delayMs));
  }

  /** Renews with the lease's nonce and port; a failure is tried again until the lease runs out. */
  async #renew(lease: Lease): Promise<void> {
    if (lease.released) return;
    const previous = lease.mapping;
    const result = await requestPortMapping(this.c, {
      ...this.#asked(previous.internalPort),
      protocols: [previous.protocol],
      nonce: previous.nonce,
      suggestedExternalPort: previous.externalPort,
    });
    if (lease.released) {
      // Released while the renewal was in flight: the router holds it again, so delete it again.
      if (result.ok) await releasePortMapping(this.c, result.mapping, this.#asked(previous.internalPort));
      return;
    }
    if (!result.ok) {
      const leftMs = previous.grantedAtMs + previous.lifetimeS * 1000 - this.c.clock.now();
      if (leftMs <= MIN_RETRY_MS) {
        this.counters.lost++;
        lease.released = true;
        this.#leases.delete(lease.internalPort);
        this.emit('lost', lease, result.reason);
        return;
      }
      this.#schedule(lease, Math.max(MIN_RETRY_MS, leftMs / 2));
      return;
    }
    lease.mapping = result.mapping;
    this.counters.renewed++;
    this.#schedule(lease, renewalDelayMs(result.mapping));
    if (
      result.mapping.externalPort !== previous.externalPort ||
      result.mapping.externalAddress !== previous.externalAddress
    ) {
      this.counters.moved++;
      this.emit('moved', lease, previous);
    }
    this.emit('renewed', lease);
    this.#observe(result.mapping, lease);
  }

  /** RFC 6887 §8.5 on every answer: a router that lost its state gets every other lease again now. */
  #observe(mapping: PortMapping, from: Lease): void {
    if (mapping.epochS === undefined) return;
    const current = { epochS: mapping.epochS, atMs: mapping.grantedAtMs };
    const lost = this.#epoch !== undefined && !epochConsistent(this.#epoch, current);
    this.#epoch = current;
    // A router whose epoch jumps on every answer must not set off a storm of re-requests.
    if (!lost || (this.#lastResetMs !== undefined && current.atMs - this.#lastResetMs < MIN_RESET_GAP_MS))
      return;
    this.#lastResetMs = current.atMs;
    this.counters.resets++;
    this.emit('reset');
    for (const lease of this.#leases.values()) if (lease !== from) this.#schedule(lease, 0);
  }

  #release(lease: Lease): Promise<void> {
    if (this.#leases.get(lease.internalPort) === lease) this.#leases.delete(lease.internalPort);
    this.counters.released++;
    const done = releasePortMapping(this.c, lease.mapping, {
      gateway: this.init.gateway,
      clientAddress: this.init.clientAddress,
      rtoMs: this.init.rtoMs,
      attempts: this.init.attempts,
    }).then(
      () => undefined,
      () => undefined,
    );
    this.#releasing.add(done);
    void done.then(() => this.#releasing.delete(done));
    return done;
  }
}
