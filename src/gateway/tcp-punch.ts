/**
 * The TCP punch (issue 21; Ford et al. §4, seeds/003; NTCP, seeds/001): both sides connect from
 * the port they predicted to the port the other predicted, at the server's go, so the two SYNs
 * cross and each NAT sees its own outbound SYN before the peer's arrives. The hosts meet in a
 * simultaneous open (RFC 9293 §3.5). What real NATs do on the way:
 * - a SYN that reaches the peer's NAT before the peer's own SYN left is dropped, or answered
 *   with RST (a Linux router's stack) or ICMP; a RST ends our connect, and we connect again
 *   from the same port (the mapping our first SYN opened is still there) until the deadline;
 * - a PKS NAT blocks the port an early SYN knocked on: only the synchronized go avoids it;
 * - low-TTL priming (`prime`, the `sc2c-ttl` mode): a first SYN that crosses our NAT and expires
 *   before the peer's, then the real connect (only the virtual network: Node has no IP_TTL for TCP).
 * The connection carries nothing until the call's credentials pass in STUN checks over it (RFC
 * 4571 frames, as the UDP punch checks), so a stray connection cannot become the call's path.
 */
import type { Endpoint } from '../net/address.ts';
import { type Clock, sleep } from '../net/clock.ts';
import {
  AddressInUseError,
  ConnectionRefusedError,
  type Network,
  type StreamConnection,
} from '../net/types.ts';
import { FramedSocket } from '../path/framed-socket.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import { Puncher } from '../traversal/punch.ts';
import type { TcpProbe } from '../traversal/tcp-predict.ts';
import type { ActiveCall } from './active-call.ts';
import type { CallOutcome, DirectTransport } from './types.ts';

export interface TcpPunchInit {
  readonly localPort: number;
  /** The peer's predicted TCP endpoint. */
  readonly remote: Endpoint;
  readonly local: CallDescription;
  readonly remoteDescription: CallDescription;
  /** Connect and authenticate within this. */
  readonly timeoutMs: number;
  /**
   * Wait after a reset before the next SYN. Default 0: the peer's own SYN often arrives right
   * behind the reset of ours (both left when the peer's NAT opened), and in any gap it finds no
   * socket and is reset in turn, which locks the two sides into missing each other.
   */
  readonly retryMs?: number;
  readonly keepaliveMs?: number;
  /** A first SYN with this TTL, then the real one `waitMs` later. */
  readonly prime?: { readonly ttl: number; readonly waitMs: number };
  readonly signal?: AbortSignal;
}

export type TcpPunchResult =
  | {
      readonly ok: true;
      readonly socket: FramedSocket;
      readonly puncher: Puncher;
      readonly remote: Endpoint;
      /** Connects tried (a reset one counts). */
      readonly connects: number;
      readonly checksSent: number;
    }
  | { readonly ok: false; readonly reason: string; readonly connects: number; readonly checksSent: number };

/** Checks over TCP need no pacing for loss: one every this long until the peer answers. */
const CHECK_INTERVAL_MS = 250;

export async function punchTcp(
  c: { readonly network: Network; readonly clock: Clock; readonly transactionId?: () => Uint8Array },
  init: TcpPunchInit,
): Promise<TcpPunchResult> {
  const started = c.clock.now();
  const deadline = started + init.timeoutMs;
  const remaining = (): number => deadline - c.clock.now();
  let connects = 0;
  let last = 'no SYN crossed';
  let connection: StreamConnection | undefined;
  if (init.prime) {
    connects++;
    // The peer's SYN may arrive while ours is primed (it primed first and sent its real SYN):
    // that is a simultaneous open, and the connection is ours to keep.
    connection = await c.network
      .connect(init.remote, {
        localPort: init.localPort,
        ttl: init.prime.ttl,
        timeoutMs: init.prime.waitMs,
        signal: init.signal,
      })
      .catch(() => undefined);
  }
  while (!connection && remaining() > 0 && !init.signal?.aborted) {
    connects++;
    try {
      connection = await c.network.connect(init.remote, {
        localPort: init.localPort,
        timeoutMs: remaining(),
        signal: init.signal,
      });
    } catch (error) {
      if (error instanceof ConnectionRefusedError) last = 'the peer side answered our SYN with RST';
      else if (error instanceof AddressInUseError || (error as { code?: string }).code === 'EADDRINUSE')
        last = `local port ${init.localPort} is busy`;
      else {
        last = (error as Error).message;
        break;
      }
      await sleep(c.clock, Math.min(init.retryMs ?? 0, Math.max(0, remaining())), init.signal).catch(
        () => {},
      );
    }
  }
  if (!connection)
    return {
      ok: false,
      reason: `no direct TCP connection to ${init.remote.address}:${init.remote.port} after ${connects} connect(s): ${last}`,
      connects,
      checksSent: 0,
    };
  const socket = new FramedSocket(connection);
  const puncher = new Puncher(
    { socket, clock: c.clock, transactionId: c.transactionId },
    {
      local: init.local,
      remote: init.remoteDescription,
      intervalMs: CHECK_INTERVAL_MS,
      timeoutMs: Math.max(1, remaining()),
      keepaliveMs: init.keepaliveMs,
    },
  );
  try {
    const success = await puncher.punch([connection.remote], init.signal);
    return { ok: true, socket, puncher, remote: success.remote, connects, checksSent: success.checksSent };
  } catch (error) {
    puncher.close();
    socket.close();
    return {
      ok: false,
      reason: `a TCP connection opened but the peer did not prove the call's credentials: ${(error as Error).message}`,
      connects,
      checksSent: puncher.counters.checksSent,
    };
  }
}

/** What a gateway's TCP attempt takes from its settings (issue 21). */
export interface TcpCallSettings {
  readonly transport: DirectTransport;
  /** Our NAT's TCP allocation, when the probe at start got answers. */
  readonly tcpProbe?: TcpProbe;
  readonly timeoutMs: number;
  readonly keepaliveMs?: number;
  readonly prime?: { readonly ttl: number; readonly waitMs: number };
}

/**
 * One call attempt's TCP punch: the outcome the gateway reports, with why there was none when a
 * side had no TCP candidate. The connection and its checks are kept in `active.tcp` (`closeTcp`).
 */
export async function punchTcpCall(
  c: { readonly network: Network; readonly clock: Clock; readonly transactionId?: () => Uint8Array },
  active: ActiveCall,
  local: CallDescription,
  remote: CallDescription,
  base: Omit<CallOutcome, 'ok' | 'checksSent'>,
  settings: TcpCallSettings,
): Promise<CallOutcome> {
  const tcp = active.tcp;
  if (!tcp || !local.tcp || !remote.tcp) {
    const probe = settings.tcpProbe;
    const ours =
      settings.transport === 'udp'
        ? 'this gateway keeps to UDP (transport udp)'
        : !probe
          ? 'the STUN server did not answer us over TCP'
          : probe.allocation === 'random'
            ? 'our NAT allocates TCP ports at random'
            : "our offer carried no TCP candidate (the peer's UDP block was not known yet)";
    const why = !tcp || !local.tcp ? ours : 'the peer sent no TCP candidate';
    return { ...base, ok: false, transport: 'tcp', reason: `no direct TCP path: ${why}`, checksSent: 0 };
  }
  const abort = new AbortController();
  active.tcpAbort = abort;
  const result = await punchTcp(c, {
    localPort: tcp.localPort,
    remote: remote.tcp.endpoint,
    local,
    remoteDescription: remote,
    timeoutMs: settings.timeoutMs,
    keepaliveMs: settings.keepaliveMs,
    prime: settings.prime,
    signal: abort.signal,
  });
  if (!result.ok)
    return {
      ...base,
      ok: false,
      transport: 'tcp',
      reason: result.reason,
      checksSent: result.checksSent,
      tcpConnects: result.connects,
    };
  if (active.ended) {
    result.puncher.close();
    result.socket.close();
    return { ...base, ok: false, transport: 'tcp', reason: 'call ended during the punch', checksSent: 0 };
  }
  tcp.socket = result.socket;
  tcp.puncher = result.puncher;
  return {
    ...base,
    ok: true,
    transport: 'tcp',
    confirmedAtMs: c.clock.now(),
    path: { socket: result.socket, remote: result.remote },
    checksSent: result.checksSent,
    tcpConnects: result.connects,
  };
}

/** A TCP punch still connecting stops; a TCP path's checks and connection close. */
export function closeTcp(active: ActiveCall): void {
  active.tcpAbort?.abort();
  active.tcp?.puncher?.close();
  active.tcp?.socket?.close();
}
