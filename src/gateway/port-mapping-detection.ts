/**
 * Issue 20: asking our router for port mappings, beside the NAT probe. A router on the LAN answers
 * PCP in a round trip of a few ms, so by the time the gateway runs it has answered; one that does
 * not costs 1.75 s of retransmissions (every protocol at once) in the background, which
 * registration does not wait for. A call's first attempt waits for it at most `DETECTION_WAIT_MS`
 * from its start (`settled`).
 */
import { sleep } from '../net/clock.ts';
import { type PortLease, PortMapper, type PortMappingStatus } from '../traversal/port-mapper.ts';
import type { NatProbe } from '../traversal/probe.ts';
import type { GatewayComponents, GatewayEvents, GatewayInit } from './types.ts';

/**
 * How long a call's first attempt waits for detection, from its start: a router on the LAN
 * answers PCP in a round trip of a few ms; PCP's first retransmission is due at 250 ms.
 */
const DETECTION_WAIT_MS = 250;

/** Detection under way, begun before the gateway exists. */
export interface DetectionStart {
  readonly abort: AbortController;
  readonly result: Promise<{ readonly status: PortMappingStatus; readonly mapper?: PortMapper }>;
  /** Resolves `DETECTION_WAIT_MS` after detection began. */
  readonly waited: Promise<void>;
}

/** Starts asking the router, unless the gateway talks on loopback or was not told to ask. */
export function beginDetection(
  c: GatewayComponents,
  init: GatewayInit,
  local: string,
): DetectionStart | undefined {
  const asked = init.portMapping;
  // A gateway on loopback (tests, one machine) must not ask the machine's real router.
  if (!asked || local.startsWith('127.')) return undefined;
  const abort = new AbortController();
  return {
    abort,
    result: PortMapper.detect(c, { ...asked, clientAddress: asked.clientAddress ?? local }, abort.signal),
    waited: sleep(c.clock, DETECTION_WAIT_MS, abort.signal).catch(() => {}),
  };
}

/** Stops a detection whose gateway never started, and releases what it found. */
export function abandonDetection(start: DetectionStart | undefined): void {
  start?.abort.abort();
  void start?.result.then(({ mapper }) => mapper?.close());
}

type Emit = <K extends 'lease' | 'port-mapping'>(event: K, ...args: GatewayEvents[K]) => void;

/** A gateway's detection once it runs: what was found, and the router's mapper for calls. */
export class PortMappingDetection {
  #status?: PortMappingStatus;
  #mapper?: PortMapper;
  #detecting?: Promise<void>;
  #abort?: AbortController;
  /** Detection done, or `DETECTION_WAIT_MS` after it began: what a first attempt waits for. */
  #settled?: Promise<void>;
  #closed = false;
  #released?: Promise<void>;

  constructor(start: DetectionStart | undefined, probe: NatProbe, local: string, emit: Emit) {
    if (!start) return;
    // STUN saw our own address: no NAT between us and the world, nothing for a router to map.
    if (probe.udpBlocked || probe.publicAddress === local) {
      abandonDetection(start);
      this.#status = {
        protocol: null,
        reason: probe.udpBlocked ? 'UDP is blocked' : `no NAT in front of ${local}: nothing to map`,
      };
      return;
    }
    this.#abort = start.abort;
    this.#detecting = start.result
      .then(({ status, mapper }) => {
        if (this.#closed) {
          void mapper?.close();
          return;
        }
        this.#status = status;
        this.#mapper = mapper;
        mapper?.on('renewed', (l) => emit('lease', 'renewed', leaseText(l)));
        mapper?.on('moved', (l, was) => emit('lease', 'moved', `${leaseText(l)} (was ${was.externalPort})`));
        mapper?.on('lost', (l, why) => emit('lease', 'lost', `${leaseText(l)}: ${why}`));
        mapper?.on('reset', () => emit('lease', 'reset', 'the router lost its mappings; asking again'));
        emit('port-mapping', status);
      })
      .catch((error: Error) => {
        this.#status = { protocol: null, reason: `port mapping detection failed: ${error.message}` };
        emit('port-mapping', this.#status);
      });
    this.#settled = Promise.race([this.#detecting, start.waited]);
  }

  /** What asking the router found; undefined while detection runs or when not asked. */
  get status(): PortMappingStatus | undefined {
    return this.#status;
  }

  /** The router's mapper, once detection found one. */
  get mapper(): PortMapper | undefined {
    return this.#mapper;
  }

  /** Resolves when detection has finished (at once when it was not asked for). */
  detected(): Promise<void> {
    return this.#detecting ?? Promise.resolve();
  }

  /** Resolves when detection is done or has had its `DETECTION_WAIT_MS`. */
  settled(): Promise<void> {
    return this.#settled ?? Promise.resolve();
  }

  /** Ends a detection still retransmitting and deletes our leases on the router. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort?.abort();
      this.#released = this.#mapper?.close();
    }
    return this.#released ?? Promise.resolve();
  }

  /** Resolves once `close()` has deleted our leases (at once when there were none). */
  released(): Promise<void> {
    return this.#released ?? Promise.resolve();
  }
}

function leaseText(lease: PortLease): string {
  const m = lease.mapping;
  return `${m.protocol} ${m.externalAddress}:${m.externalPort} -> port ${lease.internalPort}, ${m.lifetimeS} s`;
}
