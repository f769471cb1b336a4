/**
 * A pcap writer (LINKTYPE_RAW: each record is an IPv4 packet) that tcpdump and tshark read.
 * Writes are buffered and flushed by a stream, never synchronously on the packet path.
 */
import { createWriteStream, type WriteStream } from 'node:fs';

const LINKTYPE_RAW = 101;
const SNAPLEN = 65_535;

export class PcapWriter {
  readonly #stream: WriteStream;
  #closed = false;

  constructor(
    readonly path: string,
    onError: (error: Error) => void,
  ) {
    this.#stream = createWriteStream(path);
    this.#stream.on('error', (error) => {
      this.#closed = true;
      onError(error);
    });
    const header = Buffer.alloc(24);
    header.writeUInt32LE(0xa1b2c3d4, 0);
    header.writeUInt16LE(2, 4);
    header.writeUInt16LE(4, 6);
    header.writeUInt32LE(SNAPLEN, 16);
    header.writeUInt32LE(LINKTYPE_RAW, 20);
    this.#stream.write(header);
  }

  /** Records `packet` at wall-clock time `timeMs` (milliseconds since the epoch). */
  write(packet: Uint8Array, timeMs: number): void {
    if (this.#closed) return;
    const record = Buffer.alloc(16);
    record.writeUInt32LE(Math.floor(timeMs / 1000), 0);
    record.writeUInt32LE(Math.floor((timeMs % 1000) * 1000), 4);
    record.writeUInt32LE(packet.byteLength, 8);
    record.writeUInt32LE(packet.byteLength, 12);
    this.#stream.write(record);
    this.#stream.write(Buffer.from(packet));
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#stream.end(resolve));
  }
}
