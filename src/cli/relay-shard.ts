/**
 * One relay shard's process (see `relay-shards.ts`): a TURN server on the port the front gave it,
 * with the kernel path when it may, reporting its counters and allocations every second. It exits
 * when the front goes (the IPC channel closes) or on SIGTERM, closing its sockets and rules.
 */
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { NftRelayOffload, OffloadUnavailable } from '../relay/nft-offload.ts';
import { TurnServer } from '../relay/turn-server.ts';
import type { ShardReport, ShardStart } from './relay-shards.ts';

const report = (message: ShardReport): void => {
  if (process.connected) process.send?.(message);
};

let turn: TurnServer | undefined;
let stats: NodeJS.Timeout | undefined;

function stop(code: number): void {
  if (stats) clearInterval(stats);
  turn?.close();
  // The kernel table goes with the server; give its removal a moment before the process ends.
  setTimeout(() => process.exit(code), 200).unref();
}

async function start(message: ShardStart): Promise<void> {
  let offload: NftRelayOffload | undefined;
  let kernel = 'no kernel forwarding (turned off)';
  if (message.kernelForwarding !== 'off') {
    try {
      offload = await NftRelayOffload.start();
      kernel = `kernel forwarding in nftables table ${offload.table}`;
    } catch (error) {
      const why = error instanceof OffloadUnavailable ? error.message : String(error);
      if (message.kernelForwarding === 'on') throw new Error(`the kernel path cannot run: ${why}`);
      kernel = `no kernel forwarding (${why})`;
    }
  }
  try {
    turn = await TurnServer.start(
      { network: new NodeNetwork(), clock: new SystemClock() },
      { ...message.server, listen: message.listen, offload },
    );
  } catch (error) {
    await offload?.close();
    throw error;
  }
  const server = turn;
  stats = setInterval(
    () => report({ type: 'stats', counters: { ...server.counters }, allocations: server.allocations() }),
    1000,
  );
  report({ type: 'ready', kernel });
}

process.on('message', (message: ShardStart) => {
  if (message?.type !== 'start' || turn) return;
  start(message).catch((error: Error) => {
    report({ type: 'failed', why: error.message });
    stop(1);
  });
});
process.on('disconnect', () => stop(0));
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
