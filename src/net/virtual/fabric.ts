/** What every node of a virtual network shares: the clock, the RNG, packet ids and the trace. */
import type { Rng } from '../../util/rng.ts';
import type { Clock } from '../clock.ts';
import type { Packet } from './packet.ts';
import type { TraceEvent, TraceSink } from './trace.ts';

export interface Fabric {
  readonly clock: Clock;
  readonly rng: Rng;
  nextPacketId(): number;
  trace(node: string, event: TraceEvent, packet: Packet, detail?: string): void;
}

export function createFabric(clock: Clock, rng: Rng, sink?: TraceSink): Fabric {
  let packetId = 0;
  return {
    clock,
    rng,
    nextPacketId: () => ++packetId,
    trace(node, event, packet, detail) {
      sink?.({ timeMs: clock.now(), node, event, packet, detail });
    },
  };
}
