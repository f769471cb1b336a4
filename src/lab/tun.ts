/**
 * A TUN device read and written from Node. Reads are blocking `fs.read` calls, each holding one
 * libuv threadpool thread for as long as the device is open: the lab process sets
 * UV_THREADPOOL_SIZE above the number of devices before it starts.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';

/** linux/if_tun.h: _IOW('T', 202, int). */
const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** struct ifreq is 40 bytes on x86_64; the name is the first IFNAMSIZ (16) bytes, flags follow. */
const IFREQ_SIZE = 40;
/** The largest IPv4 packet the lab will read (TUN MTU 1500 plus slack). */
const READ_BUFFER = 65_536;

const require = createRequire(import.meta.url);

export class TunDevice {
  #closed = false;
  #reading = false;

  private constructor(
    readonly name: string,
    private readonly fd: number,
  ) {}

  /** Creates a TUN device named `name` (at most 15 characters) in the current namespace. */
  static open(name: string): TunDevice {
    if (name.length > 15) throw new RangeError(`interface name '${name}' is longer than 15 characters`);
    const ioctl = require('ioctl') as (fd: number, request: number, data: Buffer) => number;
    const fd = fs.openSync('/dev/net/tun', 'r+');
    try {
      const ifr = Buffer.alloc(IFREQ_SIZE);
      ifr.write(name, 0, 'ascii');
      ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI, 16);
      ioctl(fd, TUNSETIFF, ifr);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    return new TunDevice(name, fd);
  }

  /** Starts the read loop; `onPacket` gets each IP packet (a view valid only during the call). */
  startReading(onPacket: (packet: Uint8Array) => void, onError: (error: Error) => void): void {
    if (this.#reading) return;
    this.#reading = true;
    const buffer = Buffer.alloc(READ_BUFFER);
    const loop = (): void => {
      if (this.#closed) return;
      fs.read(this.fd, buffer, 0, READ_BUFFER, null, (error, bytesRead) => {
        if (this.#closed) return;
        if (error) {
          onError(error);
          return;
        }
        try {
          onPacket(new Uint8Array(buffer.buffer, buffer.byteOffset, bytesRead));
        } catch (e) {
          onError(e as Error);
        }
        loop();
      });
    };
    loop();
  }

  write(packet: Uint8Array): void {
    if (this.#closed) return;
    try {
      fs.writeSync(this.fd, packet);
    } catch {
      // The namespace is being torn down, or the kernel refused the packet: drop it like a wire would.
    }
  }

  /** Idempotent. A read in progress returns with an error, which the loop ignores once closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
