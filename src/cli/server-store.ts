/** `sc2c server`'s shared store (issue 24): in this process, or in Redis, reached before anything listens. */
import { Redis } from 'ioredis';
import type { Clock } from '../net/clock.ts';
import { RedisStore } from '../signaling/redis-store.ts';
import { MemoryStore, type SignalingStore } from '../signaling/store.ts';
import { UsageError } from '../util/usage-error.ts';

/** Connecting to Redis at start may take this long before the server gives up with a clear error. */
const CONNECT_TIMEOUT_MS = 5000;

/** The store `url` names (`memory` or `redis://…`); Redis is connected and answered PING. */
export async function openStore(url: string, clock: Clock, where: string): Promise<SignalingStore> {
  if (url === 'memory') return new MemoryStore(clock);
  const shown = shownStoreUrl(url);
  let redis: Redis;
  try {
    redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      // A command waits for a reconnect at most twice, then fails (and is counted), never hangs a call.
      maxRetriesPerRequest: 2,
      enableAutoPipelining: true,
    });
  } catch (error) {
    throw new UsageError(`${where}: cannot use store ${shown}: ${(error as Error).message}`);
  }
  // The socket's own error (ECONNREFUSED, EHOSTUNREACH) says more than "Connection is closed".
  let cause: string | undefined;
  redis.on('error', (error: Error) => {
    cause ??= error.message;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    throw new UsageError(
      `cannot reach the store at ${shown} (${cause ?? (error as Error).message}); start redis-server there, or set store: memory in ${where}`,
    );
  }
  return new RedisStore(redis);
}

/** `url` for a log line: a password in it never reaches one. */
export function shownStoreUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
