/**
 * One relay shard's process (see `relay-shards.ts`): a TURN server on the port the front gave it,
 * with the kernel path when it may, reporting its counters and allocations every second. It exits
 * when the front goes (the IPC channel closes) or on SIGTERM, closing its sockets and rules.
 */
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { OffloadUnavailable, startKernelPath } from '../relay/kernel-offload.ts';
import { NativeNetwork } from '../relay/native-socket.ts';
import { TurnServer } from '../relay/turn-server.ts';
import type { RelayOffload } from '../relay/turn-types.ts';
import { type RelayPlane, startRelayPlane } from './relay-plane.ts';
import type { ShardReport, ShardStart } from './relay-shards.ts';

const report = (message: ShardReport): void => {
  if (process.connected) process.send?.(message);
};

let turn: TurnServer | undefined;
let stats: NodeJS.Timeout | undefined;
let closePlane: (() => void) | undefined;

function stop(code: number): void {
  if (stats) clearInterval(stats);
  turn?.close();
  closePlane?.();
  // The kernel table goes with the server; give its removal a moment before the process ends.
  setTimeout(() => process.exit(code), 200).unref();
}

async function start(message: ShardStart): Promise<void> {
  let offload: RelayOffload | undefined;
  let kernel = 'no kernel forwarding (turned off)';
  if (message.kernelForwarding !== 'off') {
    try {
      const path = await startKernelPath(message.kernelPath ?? 'auto');
      offload = path.offload;
      kernel = path.description;
    } catch (error) {
      const why = error instanceof OffloadUnavailable ? error.message : String(error);
      if (message.kernelForwarding === 'on') throw new Error(`the kernel path cannot run: ${why}`);
      kernel = `no kernel forwarding (${why})`;
    }
  }
  let relayPlane: RelayPlane;
  try {
    relayPlane = await startRelayPlane(message.dataPlane, message.server.maxDatagramBytes);
  } catch (error) {
    await offload?.close();
    throw error;
  }
  const plane = relayPlane.plane;
  // relayd holds this shard's sockets: without it the shard cannot relay, and the front restarts it.
  plane?.on('exit', (why) => {
    report({ type: 'failed', why });
    stop(1);
  });
  try {
    const base = new NodeNetwork();
    turn = await TurnServer.start(
      { network: plane ? new NativeNetwork(plane, base) : base, clock: new SystemClock() },
      { ...message.server, listen: message.listen, offload, channelPlane: plane },
    );
  } catch (error) {
    plane?.close();
    await offload?.close();
    throw error;
  }
  closePlane = () => plane?.close();
  const server = turn;
  stats = setInterval(
    () => report({ type: 'stats', counters: { ...server.counters }, allocations: server.allocations() }),
    1000,
  );
  report({ type: 'ready', kernel: `${kernel}, ${relayPlane.note}` });
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
