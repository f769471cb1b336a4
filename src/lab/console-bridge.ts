/**
 * Issue 22's demo console: the console runs in the viewer's lab namespace, whose loopback the
 * machine's browser cannot reach. It also listens on a Unix socket (the filesystem is shared across
 * network namespaces), and this bridge forwards a loopback TCP port on the machine to that socket.
 * Bounded: at most 64 connections at once.
 */
import { request } from 'node:http';
import { connect, createServer, type Server } from 'node:net';

const MAX_CONNECTIONS = 64;

export interface ConsoleBridge {
  readonly port: number;
  close(): void;
}

export async function bridgeToUnix(port: number, socketPath: string): Promise<ConsoleBridge> {
  const server: Server = createServer((client) => {
    const upstream = connect({ path: socketPath });
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => server.close(),
  };
}

/** One JSON request to the console over its Unix socket (the demo places its call this way). */
export function consoleRequest(
  socketPath: string,
  host: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: { Host: host, 'Content-Type': 'application/json' },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < 1 << 20) text += chunk;
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`console ${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
