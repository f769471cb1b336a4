/**
 * The TURN relay's native data plane (issue 23): `sc2c-relayd` (native/relayd.c), a child process
 * that owns the relay's UDP sockets and forwards bound channels' ChannelData between client and
 * peer in batches (recvmmsg/sendmmsg). Node's dgram pays one JavaScript callback and one system
 * call per datagram (a bare Node forwarder measured about 10 µs a datagram here, a C one 4.75 µs);
 * batching is what a faster per-core rate needs, and dgram offers none.
 *
 * Everything else stays here: the sockets are `UdpSocket`s like any other (datagrams relayd does
 * not forward come up as 'message' events, sends go down), and the TURN server decides which
 * channels relayd forwards (`ChannelPlane`) and reads what it forwarded back into its counters.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { type Endpoint, intToIpv4, ipv4ToInt } from '../net/address.ts';
import type { BindInit, UdpSocket } from '../net/types.ts';
import { AddressInUseError } from '../net/types.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import { NativePlaneUnavailable, relaydBinary } from './native-build.ts';
import { NativeUdpSocket } from './native-socket.ts';
import type { ChannelPlane, ChannelRoute, RouteCounts } from './turn-types.ts';

/** Frame types (native/relayd.c). */
const BIND = 1;
const SEND = 2;
const CLOSE = 3;
const TTL = 4;
const ROUTE = 5;
const UNROUTE = 6;
const STATS = 7;
const BOUND = 101;
const RECV = 102;
const COUNTS = 103;
const GONE = 104;

/** relayd's slots (ids' low 16 bits): sockets and routes it can hold at once. */
const SLOTS = 65536;
/** The largest frame relayd sends up: a 64 KiB datagram and its head. */
const MAX_FRAME_BYTES = 65536 + 64;
/** Sends queued toward relayd beyond which more are dropped: it reads as fast as it can send. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export interface NativePlaneInit {
  /** Datagrams larger than this are never forwarded by relayd (the TURN server's limit). Default 2048. */
  readonly maxDatagramBytes?: number;
  /** Where the compiled binary is cached (default node_modules/.cache/sc2c-gateway). */
  readonly cacheDir?: string;
}

type PlaneEvents = {
  /** relayd ended while the plane was open: its sockets are gone. */
  exit: [why: string];
};

/** A pool of 16-bit slots with a generation above them, so an id is never reused soon. */
class Ids {
  readonly #free: number[] = [];
  #next = 1;
  readonly #generation = new Uint16Array(SLOTS);

  take(): number | undefined {
    const slot = this.#free.pop() ?? (this.#next < SLOTS ? this.#next++ : undefined);
    if (slot === undefined) return undefined;
    const generation = (this.#generation[slot]! + 1) & 0x7fff || 1;
    this.#generation[slot] = generation;
    return generation * SLOTS + slot;
  }

  give(id: number): void {
    this.#free.push(id % SLOTS);
  }
}

export class NativePlane extends TypedEmitter<PlaneEvents> implements ChannelPlane {
  readonly #sockets = new Map<number, NativeUdpSocket>();
  /** Routes relayd holds or is dropping (`removing`: UNROUTE sent, its GONE not yet back). */
  readonly #routes = new Map<number, { route: ChannelRoute; seen: RouteCounts; removing?: boolean }>();
  readonly #binding = new Map<number, { resolve: (port: number) => void; reject: (error: Error) => void }>();
  readonly #socketIds = new Ids();
  readonly #routeIds = new Ids();
  #request = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #closed = false;
  /** Datagrams relayd dropped because this process was not reading, and sends that failed. */
  droppedUp = 0;
  sendFailures = 0;
  /** Runs of equal-sized datagrams relayd sent as one UDP GSO send. */
  gsoSends = 0;
  /** Sends dropped here because relayd's input queue was full. */
  queueDrops = 0;

  private constructor(private readonly child: ChildProcess) {
    super();
    child.stdout!.on('data', (chunk: Buffer) => this.#read(chunk));
    child.stdin!.on('error', () => {}); // an exit says why
    child.on('exit', (code, signal) => {
      const why = `sc2c-relayd exited (${signal ?? `status ${code}`})`;
      const wasOpen = !this.#closed;
      this.#closed = true;
      for (const { reject } of this.#binding.values()) reject(new Error(why));
      this.#binding.clear();
      for (const socket of [...this.#sockets.values()]) socket.gone();
      if (wasOpen) this.emit('exit', why);
    });
  }

  /** Builds relayd if it must and starts it; throws `NativePlaneUnavailable` when it cannot run. */
  static async start(init: NativePlaneInit = {}): Promise<NativePlane> {
    const binary = relaydBinary(init.cacheDir);
    const child = spawn(binary, [String(init.maxDatagramBytes ?? 2048)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (error) =>
        reject(new NativePlaneUnavailable(`cannot start sc2c-relayd: ${error.message}`)),
      );
    });
    return new NativePlane(child);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A UDP socket owned by relayd. Rejects with `AddressInUseError` like `NodeNetwork`. */
  bindUdp(init: BindInit = {}): Promise<UdpSocket> {
    if (this.#closed) return Promise.reject(new Error('the native data plane is closed'));
    const id = this.#socketIds.take();
    if (id === undefined)
      return Promise.reject(new Error('the native data plane holds as many sockets as it may'));
    const address = init.address ?? '0.0.0.0';
    const body = Buffer.alloc(14);
    body.writeUInt32BE(id, 0);
    body.writeUInt32BE(ipv4ToInt(address), 4);
    body.writeUInt16BE(init.port ?? 0, 8);
    body.writeUInt32BE(init.receiveBufferBytes ?? 0, 10);
    return new Promise<number>((resolve, reject) => {
      this.#binding.set(id, { resolve, reject });
      this.#write(BIND, body);
    }).then(
      (port) => {
        const socket = new NativeUdpSocket(this, id, { address, port });
        this.#sockets.set(id, socket);
        return socket;
      },
      (error: Error) => {
        this.#socketIds.give(id);
        throw (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
          ? new AddressInUseError({ address, port: init.port ?? 0 })
          : error;
      },
    );
  }

  /** True when `socket` is one of this plane's, so relayd can forward on it. */
  owns(socket: UdpSocket): boolean {
    return socket instanceof NativeUdpSocket && this.#sockets.get(socket.id) === socket;
  }

  add(route: ChannelRoute): number | undefined {
    const { listener, relay } = route;
    if (this.#closed || !(listener instanceof NativeUdpSocket) || !(relay instanceof NativeUdpSocket))
      return undefined;
    const id = this.#routeIds.take();
    if (id === undefined) return undefined;
    const body = Buffer.alloc(26);
    body.writeUInt32BE(id, 0);
    body.writeUInt32BE(listener.id, 4);
    body.writeUInt32BE(ipv4ToInt(route.client.address), 8);
    body.writeUInt16BE(route.client.port, 12);
    body.writeUInt16BE(route.channel, 14);
    body.writeUInt32BE(relay.id, 16);
    body.writeUInt32BE(ipv4ToInt(route.peer.address), 20);
    body.writeUInt16BE(route.peer.port, 24);
    this.#routes.set(id, {
      route,
      seen: { packetsToPeer: 0, bytesToPeer: 0, packetsToClient: 0, bytesToClient: 0 },
    });
    this.#write(ROUTE, body);
    return id;
  }

  /** relayd stops forwarding it; what it forwarded since the last read reaches `route.counted`. */
  remove(id: number): void {
    const held = this.#routes.get(id);
    if (this.#closed || !held || held.removing) return;
    held.removing = true;
    this.#write(UNROUTE, u32(id));
  }

  /** Asks relayd for its counters; they reach each route's `counted` when the answer comes. */
  poll(): void {
    if (this.#closed) return;
    this.#write(STATS, u32(++this.#request));
  }

  get routes(): number {
    return this.#routes.size;
  }

  /** Idempotent: relayd's sockets close with it (it exits when its input ends). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of [...this.#sockets.values()]) socket.gone();
    this.#flush();
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 1000);
    timer.unref();
    this.child.once('exit', () => clearTimeout(timer));
  }

  /** @internal NativeUdpSocket's sends. */
  send(
    id: number,
    data: Uint8Array,
    offset: number,
    length: number,
    to: Endpoint,
    ttl = 0,
    head?: Uint8Array,
  ): void {
    if (this.#closed) return;
    if (this.child.stdin!.writableLength + this.#pendingBytes > MAX_QUEUED_BYTES) {
      this.queueDrops++; // relayd is not reading: lost, as a full socket buffer would lose it
      return;
    }
    const extra = head?.byteLength ?? 0;
    const frame = Buffer.allocUnsafe(5 + 11 + extra + length);
    frame.writeUInt32BE(1 + 11 + extra + length, 0);
    frame[4] = SEND;
    frame.writeUInt32BE(id, 5);
    frame.writeUInt32BE(ipv4ToInt(to.address), 9);
    frame.writeUInt16BE(to.port, 13);
    frame[15] = ttl;
    if (head) frame.set(head, 16);
    frame.set(data.subarray(offset, offset + length), 16 + extra);
    this.#push(frame);
  }

  /** @internal */
  setTtl(id: number, ttl: number): void {
    const body = Buffer.alloc(5);
    body.writeUInt32BE(id, 0);
    body[4] = ttl;
    this.#write(TTL, body);
  }

  /** @internal A socket's close: its routes go with it in relayd, so they go here too. */
  closeSocket(id: number): void {
    if (!this.#sockets.delete(id)) return;
    for (const [routeId, { route }] of this.#routes)
      if ((route.listener as NativeUdpSocket).id === id || (route.relay as NativeUdpSocket).id === id)
        this.remove(routeId);
    this.#write(CLOSE, u32(id));
    this.#socketIds.give(id);
  }

  #write(type: number, body: Buffer): void {
    if (this.#closed) return;
    const frame = Buffer.allocUnsafe(5 + body.byteLength);
    frame.writeUInt32BE(1 + body.byteLength, 0);
    frame[4] = type;
    body.copy(frame, 5);
    this.#push(frame);
  }

  /** Frames of one turn of the event loop go down in one write. */
  #push(frame: Buffer): void {
    this.#pending.push(frame);
    this.#pendingBytes += frame.byteLength;
    if (this.#pending.length === 1) queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    if (this.#pending.length === 0 || this.child.stdin!.writableEnded) return;
    const frames = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.child.stdin!.write(frames);
  }

  // ---- from relayd ----
  #in = Buffer.alloc(0);

  #read(chunk: Buffer): void {
    let buffer = this.#in.byteLength > 0 ? Buffer.concat([this.#in, chunk]) : chunk;
    let at = 0;
    while (buffer.byteLength - at >= 5) {
      const length = buffer.readUInt32BE(at);
      if (length < 1 || length > MAX_FRAME_BYTES) {
        this.child.kill('SIGKILL'); // relayd is ours: a bad frame is a bug, and its state is unknown
        return;
      }
      if (buffer.byteLength - at < 4 + length) break;
      this.#frame(buffer[at + 4]!, buffer.subarray(at + 5, at + 4 + length));
      at += 4 + length;
    }
    buffer = buffer.subarray(at);
    this.#in = buffer.byteLength > 0 ? Buffer.from(buffer) : Buffer.alloc(0);
  }

  #frame(type: number, body: Buffer): void {
    switch (type) {
      case RECV: {
        const socket = this.#sockets.get(body.readUInt32BE(0));
        socket?.receive(body.subarray(10), intToIpv4(body.readUInt32BE(4)), body.readUInt16BE(8));
        return;
      }
      case BOUND: {
        const id = body.readUInt32BE(0);
        const waiting = this.#binding.get(id);
        this.#binding.delete(id);
        const errno = body.readInt32BE(6);
        if (errno === 0) waiting?.resolve(body.readUInt16BE(4));
        else {
          const error: NodeJS.ErrnoException = new Error(`sc2c-relayd cannot bind: errno ${errno}`);
          if (errno === 98) error.code = 'EADDRINUSE';
          waiting?.reject(error);
        }
        return;
      }
      case COUNTS: {
        this.droppedUp = Number(body.readBigUInt64BE(4));
        this.sendFailures = Number(body.readBigUInt64BE(12));
        this.gsoSends = Number(body.readBigUInt64BE(20));
        const n = body.readUInt32BE(28);
        for (let i = 0; i < n && 32 + 36 * (i + 1) <= body.byteLength; i++)
          this.#counted(body.subarray(32 + 36 * i, 32 + 36 * (i + 1)), false);
        return;
      }
      case GONE:
        this.#counted(body, true);
        return;
    }
  }

  #counted(entry: Buffer, gone: boolean): void {
    const id = entry.readUInt32BE(0);
    const held = this.#routes.get(id);
    if (!held) return;
    const now: RouteCounts = {
      packetsToPeer: Number(entry.readBigUInt64BE(4)),
      bytesToPeer: Number(entry.readBigUInt64BE(12)),
      packetsToClient: Number(entry.readBigUInt64BE(20)),
      bytesToClient: Number(entry.readBigUInt64BE(28)),
    };
    const seen = held.seen;
    held.seen = now;
    if (gone) {
      this.#routes.delete(id);
      this.#routeIds.give(id);
    }
    held.route.counted(
      {
        packetsToPeer: now.packetsToPeer - seen.packetsToPeer,
        bytesToPeer: now.bytesToPeer - seen.bytesToPeer,
        packetsToClient: now.packetsToClient - seen.packetsToClient,
        bytesToClient: now.bytesToClient - seen.bytesToClient,
      },
      gone,
    );
  }
}

function u32(value: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeUInt32BE(value, 0);
  return body;
}
