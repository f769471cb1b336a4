/**
 * natcheck across real namespaces. The helper agent runs in the server namespace: an RFC 5780
 * STUN responder on real sockets plus a control port (TCP, one JSON object per line). The client
 * agent runs behind the NAT under test and drives the same `runNatcheck` as the virtual network,
 * through `RemoteHelperControl`. The control connection is opened before any test, so it never
 * moves the NAT's port counter mid-test (the paper keeps its registration on TCP for the same reason).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { type Endpoint, formatEndpoint } from '../net/address.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import type { StreamConnection } from '../net/types.ts';
import { runNatcheck } from '../traversal/natcheck/client.ts';
import type { NatcheckHelperControl } from '../traversal/natcheck/control.ts';
import type { NatcheckReport } from '../traversal/natcheck/observation.ts';
import { StunResponder } from '../traversal/stun-responder.ts';
import { lineSplitter } from '../util/json-lines.ts';
import { createRng } from '../util/rng.ts';

type HelperRequest =
  | { op: 'knock'; targets: Endpoint[]; waitMs: number }
  | { op: 'listen'; endpoint: Endpoint; listening: boolean };

/** Knocks with connected sockets so the kernel reports ICMP errors (ECONNREFUSED) for the first few. */
const WATCHED_KNOCKS = 32;
/**
 * Each bulk knock is sent twice, a pass apart. A lost knock leaves a PKS NAT's port open, and the
 * random-allocation PKS test then reads a hit; on a loaded machine (CI, two cores) one pass was seen
 * to lose enough knocks for a PKS NAT to look like no PKS. Knocking a port twice is harmless.
 */
const BULK_KNOCK_PASSES = 2;

async function knock(from: string, targets: readonly Endpoint[], waitMs: number): Promise<number> {
  let icmpReplies = 0;
  const sockets: dgram.Socket[] = [];
  const probe = Buffer.from('sc2c-natcheck-knock');
  const bound = (socket: dgram.Socket): Promise<void> =>
    new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: from, port: 0 }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  for (const target of targets.slice(0, WATCHED_KNOCKS)) {
    const socket = dgram.createSocket('udp4');
    sockets.push(socket);
    await bound(socket);
    let counted = false;
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' && !counted) {
        counted = true;
        icmpReplies++;
      }
    });
    await new Promise<void>((resolve) => socket.connect(target.port, target.address, resolve));
    socket.send(probe);
  }
  if (targets.length > WATCHED_KNOCKS) {
    const bulk = dgram.createSocket('udp4');
    sockets.push(bulk);
    bulk.on('error', () => {});
    await bound(bulk);
    for (let pass = 0; pass < BULK_KNOCK_PASSES; pass++) {
      for (const [i, target] of targets.slice(WATCHED_KNOCKS).entries()) {
        bulk.send(probe, target.port, target.address);
        // About 8 knocks per millisecond: a TUN device queues 500 packets, and a burst beyond that is dropped.
        if (i % 8 === 7) await new Promise((r) => setTimeout(r, 1));
      }
    }
  }
  await new Promise((r) => setTimeout(r, waitMs));
  for (const socket of sockets) socket.close();
  return icmpReplies;
}

export interface HelperAgentInit {
  readonly primary: Endpoint;
  readonly alternate: Endpoint;
  readonly controlPort: number;
}

/** Runs until SIGTERM or `durationMs`. */
export async function runHelperAgent(init: HelperAgentInit, durationMs: number): Promise<void> {
  const responder = await StunResponder.start(new NodeNetwork(), {
    primary: init.primary,
    alternate: init.alternate,
    software: 'sc2c-natcheck',
  });
  const handle = async (request: HelperRequest): Promise<unknown> => {
    if (request.op === 'knock') {
      return { icmpReplies: await knock(init.alternate.address, request.targets, request.waitMs) };
    }
    if (request.listening) await responder.open(request.endpoint);
    else responder.closeEndpoint(request.endpoint);
    return { ok: true };
  };
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on(
      'data',
      lineSplitter(
        async (line) => {
          let response: unknown;
          try {
            response = await handle(JSON.parse(line) as HelperRequest);
          } catch (error) {
            response = { error: (error as Error).message };
          }
          socket.write(`${JSON.stringify(response)}\n`);
        },
        () => socket.destroy(),
      ),
    );
  });
  await new Promise<void>((resolve) => server.listen(init.controlPort, init.primary.address, resolve));
  process.stderr.write(
    `natcheck helper: STUN on ${responder.endpoints().map(formatEndpoint).join(' ')}, control on ${init.controlPort}\n`,
  );
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, durationMs);
    process.once('SIGTERM', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  server.close();
  responder.close();
}

/** The client side's view of a helper agent, over its control connection. */
export class RemoteHelperControl implements NatcheckHelperControl {
  readonly #pending: ((line: string) => void)[] = [];

  private constructor(
    private readonly connection: StreamConnection,
    readonly primary: Endpoint,
    readonly alternate: Endpoint,
  ) {
    connection.on(
      'data',
      lineSplitter(
        (line) => this.#pending.shift()?.(line),
        () => connection.close(),
      ),
    );
  }

  static async connect(
    control: Endpoint,
    primary: Endpoint,
    alternate: Endpoint,
  ): Promise<RemoteHelperControl> {
    const connection = await new NodeNetwork().connect(control);
    return new RemoteHelperControl(connection, primary, alternate);
  }

  async knock(targets: readonly Endpoint[], waitMs: number): Promise<{ icmpReplies: number }> {
    return (await this.#call({ op: 'knock', targets: [...targets], waitMs })) as { icmpReplies: number };
  }

  async setListening(endpoint: Endpoint, listening: boolean): Promise<void> {
    await this.#call({ op: 'listen', endpoint, listening });
  }

  close(): void {
    this.connection.close();
  }

  #call(request: HelperRequest): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#pending.push((line) => {
        const response = JSON.parse(line) as { error?: string };
        if (response.error) reject(new Error(`natcheck helper: ${response.error}`));
        else resolve(response);
      });
      this.connection.write(new TextEncoder().encode(`${JSON.stringify(request)}\n`));
    });
  }
}

export async function runClientAgent(
  control: Endpoint,
  primary: Endpoint,
  alternate: Endpoint,
  rtoMs: number,
): Promise<NatcheckReport> {
  const remote = await RemoteHelperControl.connect(control, primary, alternate);
  try {
    return await runNatcheck(
      {
        network: new NodeNetwork(),
        clock: new SystemClock(),
        control: remote,
        rng: createRng(Date.now() & 0xffffffff),
      },
      { rtoMs, attempts: 3 },
    );
  } finally {
    remote.close();
  }
}
