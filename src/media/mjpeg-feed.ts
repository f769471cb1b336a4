/**
 * JPEG frames as `multipart/x-mixed-replace` to any number of HTTP watchers: what `--live` and the
 * console's MJPEG fallback (issue 22, for browsers without Media Source Extensions) serve. The
 * latest frame is kept for snapshots. A watcher more than 2 MiB behind skips frames instead of
 * buffering the call in memory.
 */
import type { ServerResponse } from 'node:http';

const BOUNDARY = 'sc2cframe';
const MAX_BEHIND_BYTES = 2 << 20;

export class MjpegFeed {
  #latest?: Uint8Array;
  readonly #watchers = new Set<ServerResponse>();
  framesShown = 0;

  /** A new decoded frame: kept as the snapshot and pushed to every open stream. */
  push(jpeg: Uint8Array): void {
    this.#latest = jpeg;
    this.framesShown++;
    const head = `--${BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.byteLength}\r\n\r\n`;
    for (const res of this.#watchers) {
      if (res.writableLength > MAX_BEHIND_BYTES) continue;
      res.write(head);
      res.write(jpeg);
      res.write('\r\n');
    }
  }

  get latest(): Uint8Array | undefined {
    return this.#latest;
  }

  get watchers(): number {
    return this.#watchers.size;
  }

  /** Starts a multipart stream on `res`; it ends when the watcher goes or `close()` is called. */
  attach(res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': `multipart/x-mixed-replace; boundary=${BOUNDARY}`,
      'Cache-Control': 'no-store',
      Connection: 'close',
    });
    // Headers now, so the browser shows the stream as open before the first frame.
    res.flushHeaders();
    this.#watchers.add(res);
    res.on('close', () => this.#watchers.delete(res));
  }

  /** Idempotent: ends every stream. */
  close(): void {
    for (const res of this.#watchers) res.end();
    this.#watchers.clear();
  }
}
