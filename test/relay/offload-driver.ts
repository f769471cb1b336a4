/**
 * A helper the kernel-path test (kernel-offload.test.ts) runs inside a network namespace, under
 * `ip netns exec`: it answers one JSON command per stdin line with one JSON line. Commands bind and
 * use UDP sockets there, and drive a kernel path (eBPF or nftables) in that namespace.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { BpfRelayOffload } from '../../src/relay/bpf-offload.ts';
import { NftRelayOffload } from '../../src/relay/nft-offload.ts';
import type { RelayOffload } from '../../src/relay/turn-types.ts';

/** Datagrams kept per socket: enough for a test, bounded all the same. */
const KEEP = 10_000;

interface Received {
  from: string;
  size: number;
  head: string;
}

const sockets = new Map<string, { socket: Socket; received: Received[] }>();
let offload: RelayOffload | undefined;

async function handle(command: Record<string, unknown>): Promise<unknown> {
  const key = `${command.address}:${command.port}`;
  switch (command.op) {
    case 'bind': {
      const socket = createSocket('udp4');
      const received: Received[] = [];
      socket.on('message', (data, from) => {
        if (received.length < KEEP)
          received.push({
            from: `${from.address}:${from.port}`,
            size: data.length,
            head: data.subarray(0, 16).toString('hex'),
          });
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(Number(command.port), String(command.address), () => resolve());
      });
      sockets.set(key, { socket, received });
      return { ok: true };
    }
    case 'send': {
      const entry = sockets.get(key);
      if (!entry) throw new Error(`no socket ${key}`);
      const [address, port] = String(command.to).split(':');
      const payload = Buffer.alloc(Number(command.size));
      for (let i = 0; i < Number(command.count); i++) {
        payload.writeUInt32BE(i, 0);
        await new Promise<void>((resolve, reject) =>
          entry.socket.send(payload, Number(port), address, (error) => (error ? reject(error) : resolve())),
        );
        // Paced, so that no receive buffer overflows: the test counts every datagram.
        if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return { ok: true };
    }
    case 'received': {
      const entry = sockets.get(key);
      if (!entry) throw new Error(`no socket ${key}`);
      return { received: entry.received.splice(0) };
    }
    case 'start': {
      if (command.kind === 'bpf') {
        const bpf = await BpfRelayOffload.start();
        offload = bpf;
        return { pins: bpf.pins, pid: process.pid };
      }
      const nft = await NftRelayOffload.start();
      offload = nft;
      return { table: nft.table, pid: process.pid };
    }
    case 'install':
      await offload!.install(Number(command.id), command.route as Parameters<RelayOffload['install']>[1]);
      return { ok: true };
    case 'remove':
      await offload!.remove(Number(command.id));
      return { ok: true };
    case 'counters':
      return { counters: Object.fromEntries(await offload!.counters()) };
    case 'close':
      await offload!.close();
      await offload!.close();
      return { ok: true };
    default:
      throw new Error(`unknown op ${String(command.op)}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply: unknown;
  try {
    reply = await handle(JSON.parse(line));
  } catch (error) {
    reply = { error: (error as Error).message };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
for (const { socket } of sockets.values()) socket.close();
