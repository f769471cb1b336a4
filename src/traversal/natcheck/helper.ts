/**
 * The public-side half of natcheck: an RFC 5780 STUN responder plus the knock and close/reopen
 * controls, all on one `Network`. It needs ICMP errors reported on unconnected sockets, which the
 * virtual network does; on real Linux sockets the kernel lab supplies its own control.
 */
import { type Endpoint, formatEndpoint } from '../../net/address.ts';
import { type Clock, sleep } from '../../net/clock.ts';
import type { Network } from '../../net/types.ts';
import { StunResponder } from '../stun-responder.ts';
import type { NatcheckHelperControl } from './control.ts';

export class NatcheckHelper implements NatcheckHelperControl {
  private constructor(
    readonly responder: StunResponder,
    private readonly clock: Clock,
  ) {}

  static async start(
    network: Network,
    clock: Clock,
    primary: Endpoint,
    alternate: Endpoint,
  ): Promise<NatcheckHelper> {
    const responder = await StunResponder.start(network, { primary, alternate, software: 'sc2c-natcheck' });
    return new NatcheckHelper(responder, clock);
  }

  get primary(): Endpoint {
    return this.responder.init.primary;
  }

  get alternate(): Endpoint {
    return this.responder.init.alternate;
  }

  async knock(targets: readonly Endpoint[], waitMs: number): Promise<{ icmpReplies: number }> {
    const socket = this.responder.socketAt(this.alternate);
    if (!socket) throw new Error('natcheck helper: the alternate endpoint is not listening');
    const wanted = new Set(targets.map(formatEndpoint));
    let icmpReplies = 0;
    const off = socket.on('icmp', (error) => {
      if (
        error.type === 'port-unreachable' &&
        error.original &&
        wanted.delete(formatEndpoint(error.original))
      ) {
        icmpReplies++;
      }
    });
    try {
      const probe = new TextEncoder().encode('sc2c-natcheck-knock');
      for (const target of targets) socket.send(probe, target);
      await sleep(this.clock, waitMs);
    } finally {
      off();
    }
    return { icmpReplies };
  }

  async setListening(endpoint: Endpoint, listening: boolean): Promise<void> {
    if (listening) await this.responder.open(endpoint);
    else this.responder.closeEndpoint(endpoint);
  }

  close(): void {
    this.responder.close();
  }
}
