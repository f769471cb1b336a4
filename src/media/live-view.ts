/**
 * The live view: the latest decoded frames as MJPEG over local HTTP, which any browser shows.
 *   GET /             a page with the stream
 *   GET /stream.mjpg  multipart/x-mixed-replace, one JPEG per part
 *   GET /snapshot.jpg the latest frame (503 until there is one)
 * It listens on loopback only by default: it is a local monitor, not a media server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { MjpegFeed } from './mjpeg-feed.ts';

export interface LiveViewInit {
  readonly port?: number;
  readonly host?: string;
  readonly title?: string;
}

export class LiveView {
  readonly #feed = new MjpegFeed();
  #title = '';

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(init: LiveViewInit = {}): Promise<LiveView> {
    const host = init.host ?? '127.0.0.1';
    let view: LiveView | undefined;
    const server = createServer((req, res) => view?.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new Error(
            error.code === 'EADDRINUSE'
              ? `live view: port ${init.port} is in use; pick another with --live PORT`
              : `live view: ${error.message}`,
          ),
        ),
      );
      server.listen(init.port ?? 0, host, resolve);
    });
    const { port } = server.address() as AddressInfo;
    view = new LiveView(server, `http://${host}:${port}/`);
    view.#title = init.title ?? 'sc2c live view';
    return view;
  }

  /** A new decoded frame: kept as the snapshot and pushed to every open stream. */
  push(jpeg: Uint8Array): void {
    this.#feed.push(jpeg);
  }

  get framesShown(): number {
    return this.#feed.framesShown;
  }

  get watchers(): number {
    return this.#feed.watchers;
  }

  async close(): Promise<void> {
    this.#feed.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const latest = this.#feed.latest;
    if (req.method !== 'GET') {
      res.writeHead(405, { Allow: 'GET' }).end();
    } else if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page(this.#title));
    } else if (path === '/snapshot.jpg') {
      if (!latest) res.writeHead(503, { 'Retry-After': '1' }).end('no frame yet\n');
      else res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Cache-Control': 'no-store' }).end(latest);
    } else if (path === '/stream.mjpg') {
      this.#feed.attach(res);
    } else {
      res.writeHead(404).end('not found\n');
    }
  }
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch] ?? ch);

function page(title: string): string {
  const t = escapeHtml(title);
  return `<!doctype html><html><head><meta charset="utf-8"><title>${t}</title>
<style>body{margin:0;background:#111;color:#ddd;font:14px sans-serif}img{display:block;max-width:100vw;max-height:95vh;margin:auto}</style>
</head><body><p>${t}</p><img src="/stream.mjpg" alt="live video"></body></html>\n`;
}
