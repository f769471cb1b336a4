/**
 * Chooses the relay's kernel fast path (issue 23): the eBPF program at the tc ingress hook
 * (bpf-offload.ts), or stateless nftables rules at the netdev ingress hook (nft-offload.ts). Both
 * forward the same datagrams the same way; the eBPF one costs less per packet (one checksum
 * update per header, no rule chain), the nftables one needs only `nft`.
 */
import { BpfRelayOffload } from './bpf-offload.ts';
import { NftRelayOffload } from './nft-offload.ts';
import { OffloadUnavailable } from './offload-common.ts';
import type { RelayOffload } from './turn-types.ts';

export { OffloadUnavailable } from './offload-common.ts';

/** `auto` tries eBPF, then nftables; the others take that one or none. */
export type KernelPathChoice = 'auto' | 'bpf' | 'nft';
export const KERNEL_PATH_CHOICES = ['auto', 'bpf', 'nft'] as const;

export interface KernelPath {
  readonly offload: RelayOffload;
  /** For the start-up log: where the forwarding lives. */
  readonly description: string;
}

/** Starts the chosen path; rejects with `OffloadUnavailable` saying why none can run here. */
export async function startKernelPath(choice: KernelPathChoice): Promise<KernelPath> {
  let bpfWhy: string | undefined;
  if (choice !== 'nft') {
    try {
      const offload = await BpfRelayOffload.start();
      return {
        offload,
        description: `kernel forwarding in eBPF (tc ingress), pinned at ${offload.pins}`,
      };
    } catch (error) {
      if (choice === 'bpf') throw error;
      // Whatever stopped it (a tool's odd output too), nftables may still run.
      bpfWhy = (error as Error).message;
    }
  }
  try {
    const offload = await NftRelayOffload.start();
    return {
      offload,
      description: `kernel forwarding in nftables table ${offload.table}${bpfWhy ? ` (no eBPF: ${bpfWhy})` : ''}`,
    };
  } catch (error) {
    if (error instanceof OffloadUnavailable && bpfWhy)
      throw new OffloadUnavailable(`${error.message}; and no eBPF: ${bpfWhy}`);
    throw error;
  }
}
