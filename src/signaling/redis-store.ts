/**
 * The signaling store in Redis (issue 24), for server nodes on several hosts. Each entry is one key
 * with a TTL (`PX`), so Redis itself forgets what a dead node wrote:
 *
 *   <prefix>reg:<user>              registration, JSON, until it expires
 *   <prefix>node-regs:<node>        set of users a node registered (an index; members are checked)
 *   <prefix>node:<id>               a live node's SIP address, JSON, a few seconds' life, renewed
 *   <prefix>dialog:<node>:<callId>  a node's confirmed dialog, JSON (found by SCAN at restart: one
 *                                   command per call set-up and one per end, no index to keep)
 *   <prefix>record:<key>            a call record's key, taken once
 *
 * The client is passed in (`ioredis`), created by the composition root. Values read back are
 * checked field by field: a key someone else wrote is not trusted to have our shape.
 */
import type { Redis } from 'ioredis';
import type { SignalingStore, StoredDialog, StoredNode, StoredParty, StoredRegistration } from './store.ts';

/** Removes a registration only when the node asking still holds it. */
const REMOVE_IF_OWNED = `
local v = redis.call('GET', KEYS[1])
if v then
  local ok, r = pcall(cjson.decode, v)
  if ok and type(r) == 'table' and r.node == ARGV[1] then redis.call('DEL', KEYS[1]) end
end
redis.call('SREM', KEYS[2], ARGV[2])
return 0`;

/** Members read back from an index at once, at most. */
const MAX_INDEX_READ = 200_000;

export class RedisStore implements SignalingStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'sc2c:',
  ) {}

  async putRegistration(r: StoredRegistration): Promise<void> {
    const ttlMs = Math.max(1, Math.round(r.expiresAtMs - Date.now()));
    await this.redis
      .multi()
      .set(`${this.prefix}reg:${r.user}`, JSON.stringify(r), 'PX', ttlMs)
      .sadd(`${this.prefix}node-regs:${r.node}`, r.user)
      .exec();
  }

  async getRegistration(user: string): Promise<StoredRegistration | undefined> {
    return readRegistration(await this.redis.get(`${this.prefix}reg:${user}`));
  }

  async removeRegistration(user: string, node: string): Promise<void> {
    await this.redis.eval(
      REMOVE_IF_OWNED,
      2,
      `${this.prefix}reg:${user}`,
      `${this.prefix}node-regs:${node}`,
      node,
      user,
    );
  }

  async registrationsOf(node: string): Promise<StoredRegistration[]> {
    const index = `${this.prefix}node-regs:${node}`;
    const users = (await this.redis.smembers(index)).slice(0, MAX_INDEX_READ);
    const found: StoredRegistration[] = [];
    const gone: string[] = [];
    for (let i = 0; i < users.length; i += 1000) {
      const batch = users.slice(i, i + 1000);
      const values = await this.redis.mget(batch.map((u) => `${this.prefix}reg:${u}`));
      values.forEach((v, j) => {
        const r = readRegistration(v);
        if (r?.node === node) found.push(r);
        else gone.push(batch[j]!);
      });
    }
    if (gone.length > 0) await this.redis.srem(index, ...gone);
    return found;
  }

  async putNode(node: StoredNode, ttlMs: number): Promise<void> {
    await this.redis.set(`${this.prefix}node:${node.id}`, JSON.stringify(node), 'PX', ttlMs);
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const value = parse(await this.redis.get(`${this.prefix}node:${id}`));
    if (!value || typeof value.id !== 'string' || typeof value.address !== 'string') return undefined;
    if (!Number.isInteger(value.port) || (value.port as number) < 1 || (value.port as number) > 65535)
      return undefined;
    return { id: value.id, address: value.address, port: value.port as number };
  }

  async putDialog(node: string, dialog: StoredDialog, ttlMs: number): Promise<void> {
    await this.redis.set(
      `${this.prefix}dialog:${node}:${dialog.callId}`,
      JSON.stringify(dialog),
      'PX',
      ttlMs,
    );
  }

  async removeDialog(node: string, callId: string): Promise<void> {
    await this.redis.del(`${this.prefix}dialog:${node}:${callId}`);
  }

  async dialogsOf(node: string): Promise<StoredDialog[]> {
    const found: StoredDialog[] = [];
    // A Call-ID may hold glob characters; the node id (NODE_ID) cannot.
    const match = `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}dialog:${node}:*`;
    let cursor = '0';
    do {
      const [nextCursor, keys] = await this.redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = nextCursor;
      if (keys.length === 0) continue;
      for (const v of await this.redis.mget(keys)) {
        const d = readDialog(v);
        if (d) found.push(d);
      }
    } while (cursor !== '0' && found.length < MAX_INDEX_READ);
    return found;
  }

  async claimRecord(key: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`${this.prefix}record:${key}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }

  async releaseRecord(key: string): Promise<void> {
    await this.redis.del(`${this.prefix}record:${key}`);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

function parse(value: string | null): Record<string, unknown> | undefined {
  if (value === null) return undefined;
  try {
    const v = JSON.parse(value) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const isText = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max;

function readRegistration(value: string | null): StoredRegistration | undefined {
  const v = parse(value);
  if (!v || !isText(v.user) || !isText(v.node, 32) || !isText(v.contact, 1024)) return undefined;
  if (typeof v.expiresAtMs !== 'number') return undefined;
  return {
    user: v.user,
    node: v.node,
    contact: v.contact,
    expiresAtMs: v.expiresAtMs,
    ...(isText(v.natClass, 64) ? { natClass: v.natClass } : {}),
    ...(typeof v.rttMs === 'number' && Number.isFinite(v.rttMs) ? { rttMs: v.rttMs } : {}),
    ...(v.stale === true ? { stale: true } : {}),
  };
}

function readParty(v: unknown): StoredParty | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const p = v as Record<string, unknown>;
  if (!isText(p.user)) return undefined;
  return { user: p.user, ...(isText(p.node, 32) ? { node: p.node } : {}) };
}

function readDialog(value: string | null): StoredDialog | undefined {
  const v = parse(value);
  if (!v || !isText(v.callId, 512) || typeof v.startedAtMs !== 'number') return undefined;
  const caller = readParty(v.caller);
  const callee = readParty(v.callee);
  return caller && callee ? { callId: v.callId, caller, callee, startedAtMs: v.startedAtMs } : undefined;
}
