/**
 * `sc2c sim natcheck`: for each NAT profile, build a small virtual network (a client behind the
 * NAT, a helper with two public addresses) and discover the NAT's behaviour from packets alone.
 *
 *   client 10.0.1.2 --1 ms-- NAT 10.0.1.1 | 198.18.1.1 --10 ms-- internet --10 ms-- helper 198.18.0.10, .11
 */
import type { NatBehaviour } from '../nat/behaviour.ts';
import { VirtualClock } from '../net/clock.ts';
import { VirtualNetwork } from '../net/virtual/network.ts';
import type { TraceSink } from '../net/virtual/trace.ts';
import { runNatcheck } from '../traversal/natcheck/client.ts';
import { NatcheckHelper } from '../traversal/natcheck/helper.ts';
import {
  compareObservation,
  declaredObservation,
  type NatcheckResult,
} from '../traversal/natcheck/observation.ts';

export const NATCHECK_TOPOLOGY = {
  helperPrimary: { address: '198.18.0.10', port: 3478 },
  helperAlternate: { address: '198.18.0.11', port: 3479 },
  natPublic: '198.18.1.1',
  natInside: '10.0.1.1',
  client: '10.0.1.2',
  internet: '198.18.255.254',
} as const;

export interface SimNatcheckInit {
  readonly profile: string;
  readonly behaviour: NatBehaviour;
  readonly seed: number;
  readonly trace?: TraceSink;
}

export async function simulateNatcheck(init: SimNatcheckInit): Promise<NatcheckResult> {
  const t = NATCHECK_TOPOLOGY;
  const clock = new VirtualClock();
  const net = new VirtualNetwork({ clock, seed: init.seed, trace: init.trace });
  const internet = net.addRouter('internet', { addresses: [t.internet] });
  const helperHost = net.addHost('helper', {
    addresses: [t.helperPrimary.address, t.helperAlternate.address],
  });
  const nat = net.addNat('nat', {
    publicAddress: t.natPublic,
    insideAddress: t.natInside,
    behaviour: init.behaviour,
  });
  const client = net.addHost('client', { addresses: [t.client] });
  net.connect(helperHost, internet, { latencyMs: 10 });
  net.connect(nat, internet, { latencyMs: 10 });
  net.connect(client, nat, { latencyMs: 1 });

  const helper = await NatcheckHelper.start(helperHost, clock, t.helperPrimary, t.helperAlternate);
  const rng = net.rng('natcheck');
  try {
    const report = await clock.run(
      runNatcheck(
        {
          network: client,
          clock,
          control: helper,
          rng,
          transactionId: () => Uint8Array.from({ length: 12 }, () => rng.int(0, 255)),
        },
        // The path RTT is 22 ms; 100 ms leaves room and keeps virtual runs short.
        { rtoMs: 100, attempts: 3 },
      ),
    );
    return compareObservation(init.profile, declaredObservation(init.behaviour), report);
  } finally {
    helper.close();
  }
}
