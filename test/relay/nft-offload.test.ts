/**
 * Issue 23: the relay's kernel fast path (`NftRelayOffload`) on a real kernel, between two network
 * namespaces joined by a veth pair. `peers` holds the peer (198.18.7.1), a client on the link
 * (198.18.7.3) and one reached through a gateway (198.18.9.1, routed via 198.18.7.1); `relay`
 * holds the relayed address (198.18.7.2). A helper (offload-driver.ts) runs in each namespace.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNamespace, deleteNamespace, nsExec } from '../../src/lab/netns.ts';
import { labUnavailable } from '../lab/support.ts';

let why = await labUnavailable();
for (const [command, pkg] of [
  ['nft', 'nftables'],
  ['ethtool', 'ethtool'],
] as const) {
  if (why) break;
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
  } catch {
    why = `no '${command}' command (scripts/setup-system.sh installs ${pkg})`;
  }
}
if (why && process.env.CI === 'true') throw new Error(`CI needs this: ${why}`);

const DRIVER = new URL('./offload-driver.ts', import.meta.url).pathname;
const PEER = { address: '198.18.7.1', port: 5000 };
const RELAYED = { address: '198.18.7.2', port: 40_000 };
const CLIENT = { address: '198.18.7.3', port: 6000 };
const FAR_CLIENT = { address: '198.18.9.1', port: 6001 };

/** The driver's answer to one command (offload-driver.ts). */
interface Reply {
  error?: string;
  table?: string;
  received?: { from: string; size: number; head: string }[];
  counters?: Record<string, { packets: number; bytes: number }>;
}

class Driver {
  readonly #child: ChildProcess;
  readonly #lines: Interface;
  readonly #waiting: ((line: string) => void)[] = [];

  constructor(namespace: string) {
    this.#child = spawn('ip', ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', DRIVER], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.#lines = createInterface({ input: this.#child.stdout! });
    this.#lines.on('line', (line) => this.#waiting.shift()?.(line));
  }

  async do(command: Record<string, unknown>): Promise<Reply> {
    const line = new Promise<string>((resolve) => this.#waiting.push(resolve));
    this.#child.stdin!.write(`${JSON.stringify(command)}\n`);
    return JSON.parse(await line);
  }

  async ok(command: Record<string, unknown>): Promise<Reply> {
    const reply = await this.do(command);
    if (reply.error) throw new Error(`${String(command.op)}: ${reply.error}`);
    return reply;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#child.once('close', () => resolve());
      this.#child.stdin!.end();
    });
  }
}

/** Waits until `socket` has received `count` datagrams (or 5 s went by) and returns them. */
async function collect(driver: Driver, socket: { address: string; port: number }, count: number) {
  const got: { from: string; size: number; head: string }[] = [];
  for (let i = 0; i < 100 && got.length < count; i++) {
    got.push(...(await driver.ok({ op: 'received', ...socket })).received!);
    if (got.length < count) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // Anything more that was on its way.
  await new Promise((resolve) => setTimeout(resolve, 100));
  got.push(...(await driver.ok({ op: 'received', ...socket })).received!);
  return got;
}

describe.skipIf(why !== undefined)('the relay kernel path (nftables netdev ingress), issue 23', () => {
  const tag = process.pid % 10_000;
  const peers = `sc2c-op${tag}`;
  const relay = `sc2c-or${tag}`;
  let p: Driver;
  let r: Driver;

  beforeAll(async () => {
    await createNamespace(peers);
    await createNamespace(relay);
    execFileSync('ip', ['link', 'add', `op${tag}`, 'type', 'veth', 'peer', 'name', `or${tag}`]);
    execFileSync('ip', ['link', 'set', `op${tag}`, 'netns', peers]);
    execFileSync('ip', ['link', 'set', `or${tag}`, 'netns', relay]);
    await nsExec(peers, 'ip', 'addr', 'add', '198.18.7.1/24', 'dev', `op${tag}`);
    await nsExec(peers, 'ip', 'addr', 'add', '198.18.7.3/24', 'dev', `op${tag}`);
    await nsExec(peers, 'ip', 'addr', 'add', '198.18.9.1/32', 'dev', 'lo');
    await nsExec(peers, 'ip', 'link', 'set', `op${tag}`, 'up');
    // Full UDP checksums, computed by the sender and verified by the receiver (as from and to a
    // NIC): by default veth carries a partial one that the receiver trusts, so a rewrite that got
    // the checksum wrong would go unnoticed. The first test checks that a wrong one is dropped.
    await nsExec(peers, 'ethtool', '-K', `op${tag}`, 'tx', 'off', 'rx', 'off');
    await nsExec(relay, 'ip', 'addr', 'add', '198.18.7.2/24', 'dev', `or${tag}`);
    await nsExec(relay, 'ip', 'link', 'set', `or${tag}`, 'up');
    await nsExec(relay, 'ip', 'route', 'add', '198.18.9.0/24', 'via', '198.18.7.1');
    // A table a relay process that died left behind, in both the old family and the new.
    await nsExec(relay, 'nft', 'add', 'table', 'ip', 'sc2c_relay_999999');
    await nsExec(relay, 'nft', 'add', 'table', 'netdev', 'sc2c_relay_999998');
    p = new Driver(peers);
    r = new Driver(relay);
    for (const socket of [PEER, CLIENT, FAR_CLIENT]) await p.ok({ op: 'bind', ...socket });
    await r.ok({ op: 'bind', ...RELAYED });
  }, 60_000);

  afterAll(async () => {
    await Promise.all([p?.close(), r?.close()]);
    await deleteNamespace(peers);
    await deleteNamespace(relay);
  }, 60_000);

  it('control: the client side verifies UDP checksums, so a rewrite without checksum update is dropped', async () => {
    // A raw write into the UDP payload (nft updates no checksum for it), then the forward the
    // kernel path does. Not 0xffff: the payload's first bytes are zeros, and 0x0000 and 0xffff
    // are the same one's-complement number, so the checksum would still hold.
    await nsExec(
      relay,
      'nft',
      `add table netdev control
add chain netdev control in { type filter hook ingress device "or${tag}" priority -10; policy accept; }
add rule netdev control in udp dport 40001 ip saddr set 198.18.7.2 @th,64,16 set 0x1234 ip daddr set 198.18.7.3 udp dport set 6000 fwd ip to 198.18.7.3 device "or${tag}"`,
    );
    const errors = async (): Promise<number> =>
      Number(
        /UdpInCsumErrors\s+(\d+)/.exec(await nsExec(peers, 'nstat', '-az', 'UdpInCsumErrors'))?.[1] ?? -1,
      );
    const before = await errors();
    await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40001', count: 10, size: 100 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await errors()).toBe(before + 10);
    expect(await collect(p, CLIENT, 0)).toEqual([]);
    await nsExec(relay, 'nft', 'delete', 'table', 'netdev', 'control');
  });

  it('starts in a table of its own, deleting those of processes that died, and needs no ip_forward', async () => {
    expect((await nsExec(relay, 'sysctl', '-n', 'net.ipv4.ip_forward')).trim()).toBe('0');
    const { table } = await r.ok({ op: 'start' });
    const tables = await nsExec(relay, 'nft', 'list', 'tables');
    expect(tables).toContain(`table netdev ${table}`);
    expect(tables).not.toContain('sc2c_relay_999999');
    expect(tables).not.toContain('sc2c_relay_999998');
  });

  it('forwards the peer datagrams from the relayed port to the client, byte for byte, without the relay socket seeing them, and counts them', async () => {
    await r.ok({ op: 'install', id: 7, route: { relayed: RELAYED, client: CLIENT, peer: PEER } });
    await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 200, size: 172 });
    const got = await collect(p, CLIENT, 200);
    expect(got).toHaveLength(200);
    expect(new Set(got.map((g) => g.from))).toEqual(new Set(['198.18.7.2:40000']));
    expect(got.every((g) => g.size === 172)).toBe(true);
    // The sequence numbers the sender wrote, in order: nothing was altered but the headers.
    expect(got.map((g) => Number.parseInt(g.head.slice(0, 8), 16))).toEqual([...Array(200).keys()]);
    expect(await collect(r, RELAYED, 0)).toEqual([]);
    const counters = (await r.ok({ op: 'counters' })).counters!;
    // UDP payload bytes, as the userspace path counts them.
    expect(counters['7']).toEqual({ packets: 200, bytes: 200 * 172 });
  });

  it('leaves every other datagram to the stack: another source port, and a fragmented one from the peer', async () => {
    const other = { address: '198.18.7.1', port: 5001 };
    await p.ok({ op: 'bind', ...other });
    await p.ok({ op: 'send', ...other, to: '198.18.7.2:40000', count: 5, size: 100 });
    // 3000 bytes over a 1500-byte link: two fragments, reassembled by the relay host's stack.
    await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 2, size: 3000 });
    const atRelay = await collect(r, RELAYED, 7);
    expect(atRelay.map((g) => `${g.from} ${g.size}`).sort()).toEqual(
      [...Array(5).fill('198.18.7.1:5001 100'), ...Array(2).fill('198.18.7.1:5000 3000')].sort(),
    );
    expect(await collect(p, CLIENT, 0)).toEqual([]);
    expect((await r.ok({ op: 'counters' })).counters!['7']).toEqual({ packets: 200, bytes: 200 * 172 });
  });

  it('sends through the gateway of the route to a client that is not on the link; a new peer replaces the old one and the counter carries on', async () => {
    const peer2 = { address: '198.18.7.3', port: 5002 };
    await p.ok({ op: 'bind', ...peer2 });
    await r.ok({ op: 'install', id: 7, route: { relayed: RELAYED, client: FAR_CLIENT, peer: peer2 } });
    await p.ok({ op: 'send', ...peer2, to: '198.18.7.2:40000', count: 50, size: 72 });
    const got = await collect(p, FAR_CLIENT, 50);
    expect(got).toHaveLength(50);
    expect(got.every((g) => g.from === '198.18.7.2:40000' && g.size === 72)).toBe(true);
    // The old peer goes to userspace now.
    await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 3, size: 50 });
    expect(await collect(r, RELAYED, 3)).toHaveLength(3);
    expect((await r.ok({ op: 'counters' })).counters!['7']).toEqual({
      packets: 250,
      bytes: 200 * 172 + 50 * 72,
    });
  });

  it('refuses what is not an address or a port before nft sees it', async () => {
    for (const bad of [
      { relayed: RELAYED, client: { address: '198.18.7.3; flush ruleset', port: 6000 }, peer: PEER },
      { relayed: RELAYED, client: CLIENT, peer: { address: '198.18.7.1', port: 70_000 } },
      { relayed: { address: '0.0.0.0', port: 40_000 }, client: CLIENT, peer: PEER },
    ]) {
      const reply = await r.do({ op: 'install', id: 8, route: bad });
      expect(reply.error).toMatch(/not an IPv4 host address|bad port/);
    }
    // A client with no route: refused by the route look-up, nothing installed.
    await nsExec(relay, 'ip', 'route', 'add', 'blackhole', '198.18.10.0/24');
    const reply = await r.do({
      op: 'install',
      id: 8,
      route: { relayed: RELAYED, client: { address: '198.18.10.1', port: 1 }, peer: PEER },
    });
    expect(reply.error).toMatch(/route/);
    expect(Object.keys((await r.ok({ op: 'counters' })).counters!)).toEqual(['7']);
  });

  it('stops forwarding at remove and leaves no table at close', async () => {
    await r.ok({ op: 'remove', id: 7 });
    await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 4, size: 60 });
    expect(await collect(r, RELAYED, 4)).toHaveLength(4);
    expect(await collect(p, CLIENT, 0)).toEqual([]);
    expect((await r.ok({ op: 'counters' })).counters!).toEqual({});
    await r.ok({ op: 'close' });
    expect(await nsExec(relay, 'nft', 'list', 'tables')).not.toContain('sc2c_relay_');
  });
});
