/**
 * Issue 23: the relay's kernel fast paths, the eBPF program (`BpfRelayOffload`) and the nftables
 * rules (`NftRelayOffload`), on a real kernel, the same tests for both, between two network
 * namespaces joined by a veth pair. `peers` holds the peer (198.18.7.1), a client on the link
 * (198.18.7.3) and one reached through a gateway (198.18.9.1, routed via 198.18.7.1); `relay`
 * holds the relayed address (198.18.7.2). A helper (offload-driver.ts) runs in each namespace.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNamespace, deleteNamespace, nsExec } from '../../src/lab/netns.ts';
import { labUnavailable } from '../lab/support.ts';

/** Why these tests cannot run here, or undefined; with CI=true a missing tool fails the run. */
function missing(tools: readonly (readonly [string, string, string])[]): string | undefined {
  for (const [command, flag, pkg] of tools) {
    try {
      execFileSync(command, [flag], { stdio: 'ignore' });
    } catch {
      return `no '${command}' command (scripts/setup-system.sh installs ${pkg})`;
    }
  }
  return undefined;
}

const lab = await labUnavailable();
const why =
  lab ??
  missing([
    ['nft', '--version', 'nftables'],
    ['ethtool', '--version', 'ethtool'],
  ]);
const bpfWhy =
  why ??
  missing([
    ['clang', '--version', 'clang'],
    ['bpftool', 'version', 'bpftool'],
    ['tc', '-V', 'iproute2'],
  ]);
if ((why || bpfWhy) && process.env.CI === 'true') throw new Error(`CI needs this: ${why ?? bpfWhy}`);
const SOURCE = new URL('../../src/relay/bpf/relay.bpf.c', import.meta.url).pathname;
/** A pid no process has (above the kernel's pid_max ceiling of 2^22). */
const DEAD_PID = 4_194_305;

const DRIVER = new URL('./offload-driver.ts', import.meta.url).pathname;
const PEER = { address: '198.18.7.1', port: 5000 };
const RELAYED = { address: '198.18.7.2', port: 40_000 };
const CLIENT = { address: '198.18.7.3', port: 6000 };
const FAR_CLIENT = { address: '198.18.9.1', port: 6001 };

/** The driver's answer to one command (offload-driver.ts). */
interface Reply {
  error?: string;
  table?: string;
  pins?: string;
  pid?: number;
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

describe.skipIf(why !== undefined)(
  'the relay kernel paths (eBPF at tc ingress, nftables at netdev ingress), issue 23',
  () => {
    const tag = process.pid % 10_000;
    const peers = `sc2c-op${tag}`;
    const relay = `sc2c-or${tag}`;
    const device = `or${tag}`;
    let p: Driver;

    beforeAll(async () => {
      await createNamespace(peers);
      await createNamespace(relay);
      execFileSync('ip', ['link', 'add', `op${tag}`, 'type', 'veth', 'peer', 'name', device]);
      execFileSync('ip', ['link', 'set', `op${tag}`, 'netns', peers]);
      execFileSync('ip', ['link', 'set', device, 'netns', relay]);
      await nsExec(peers, 'ip', 'addr', 'add', '198.18.7.1/24', 'dev', `op${tag}`);
      await nsExec(peers, 'ip', 'addr', 'add', '198.18.7.3/24', 'dev', `op${tag}`);
      await nsExec(peers, 'ip', 'addr', 'add', '198.18.9.1/32', 'dev', 'lo');
      await nsExec(peers, 'ip', 'link', 'set', `op${tag}`, 'up');
      // Full UDP checksums, computed by the sender and verified by the receiver (as from and to a
      // NIC): by default veth carries a partial one that the receiver trusts, so a rewrite that got
      // the checksum wrong would go unnoticed. The control test checks that a wrong one is dropped.
      await nsExec(peers, 'ethtool', '-K', `op${tag}`, 'tx', 'off', 'rx', 'off');
      await nsExec(relay, 'ip', 'addr', 'add', '198.18.7.2/24', 'dev', device);
      await nsExec(relay, 'ip', 'link', 'set', device, 'up');
      await nsExec(relay, 'ip', 'route', 'add', '198.18.9.0/24', 'via', '198.18.7.1');
      p = new Driver(peers);
      for (const socket of [PEER, CLIENT, FAR_CLIENT]) await p.ok({ op: 'bind', ...socket });
    }, 60_000);

    afterAll(async () => {
      await p?.close();
      await deleteNamespace(peers);
      await deleteNamespace(relay);
    }, 60_000);

    const udpChecksumErrors = async (): Promise<number> =>
      Number(
        /UdpInCsumErrors\s+(\d+)/.exec(await nsExec(peers, 'nstat', '-az', 'UdpInCsumErrors'))?.[1] ?? -1,
      );

    it('control: the client side verifies UDP checksums, so a rewrite without checksum update is dropped', async () => {
      // A raw write into the UDP payload (nft updates no checksum for it), then the forward the
      // kernel path does. Not 0xffff: the payload's first bytes are zeros, and 0x0000 and 0xffff
      // are the same one's-complement number, so the checksum would still hold.
      await nsExec(
        relay,
        'nft',
        `add table netdev control
add chain netdev control in { type filter hook ingress device "${device}" priority -10; policy accept; }
add rule netdev control in udp dport 40001 ip saddr set 198.18.7.2 @th,64,16 set 0x1234 ip daddr set 198.18.7.3 udp dport set 6000 fwd ip to 198.18.7.3 device "${device}"`,
      );
      const before = await udpChecksumErrors();
      await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40001', count: 10, size: 100 });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await udpChecksumErrors()).toBe(before + 10);
      expect(await collect(p, CLIENT, 0)).toEqual([]);
      await nsExec(relay, 'nft', 'delete', 'table', 'netdev', 'control');
    });

    describe.each(['bpf', 'nft'] as const)('%s', (kind) => {
      const skip = kind === 'bpf' ? bpfWhy : why;
      let r: Driver;
      let pid = 0;

      beforeAll(async () => {
        r = new Driver(relay);
        await r.ok({ op: 'bind', ...RELAYED });
      });

      afterAll(async () => {
        await r?.close();
      });

      it.skipIf(skip !== undefined)(
        'starts, removing what processes that died left behind, and needs no ip_forward',
        async () => {
          expect((await nsExec(relay, 'sysctl', '-n', 'net.ipv4.ip_forward')).trim()).toBe('0');
          if (kind === 'nft') {
            // A table a relay process that died left behind, in both the old family and the new.
            await nsExec(relay, 'nft', 'add', 'table', 'ip', 'sc2c_relay_999999');
            await nsExec(relay, 'nft', 'add', 'table', 'netdev', 'sc2c_relay_999998');
            const { table } = await r.ok({ op: 'start', kind });
            const tables = await nsExec(relay, 'nft', 'list', 'tables');
            expect(tables).toContain(`table netdev ${table}`);
            expect(tables).not.toContain('sc2c_relay_999999');
            expect(tables).not.toContain('sc2c_relay_999998');
            return;
          }
          // The filter a relay process that died left attached (its handle is its pid), which would
          // still forward that process's flows.
          const build = mkdtempSync(join(tmpdir(), 'sc2c-bpf-test-'));
          try {
            execFileSync('clang', [
              '-O2',
              '-g',
              '-target',
              'bpf',
              '-c',
              SOURCE,
              '-o',
              join(build, 'relay.o'),
            ]);
            await nsExec(relay, 'tc', 'qdisc', 'add', 'dev', device, 'clsact');
            await nsExec(
              relay,
              'tc',
              'filter',
              'add',
              'dev',
              device,
              'ingress',
              'pref',
              '23596',
              'handle',
              `0x${DEAD_PID.toString(16)}`,
              'bpf',
              'da',
              'obj',
              join(build, 'relay.o'),
              'sec',
              'tc',
            );
          } finally {
            rmSync(build, { recursive: true, force: true });
          }
          expect(await nsExec(relay, 'tc', 'filter', 'show', 'dev', device, 'ingress')).toContain(
            `handle 0x${DEAD_PID.toString(16)}`,
          );
          const started = await r.ok({ op: 'start', kind });
          pid = started.pid!;
          expect(started.pins).toBe(`/sys/fs/bpf/sc2c_relay_${pid}`);
          expect(await nsExec(relay, 'tc', 'filter', 'show', 'dev', device, 'ingress')).not.toContain(
            'handle',
          );
        },
      );

      it.skipIf(skip !== undefined)(
        'forwards the peer datagrams from the relayed port to the client, byte for byte, with valid checksums, without the relay socket seeing them, and counts them',
        async () => {
          const errors = await udpChecksumErrors();
          await r.ok({ op: 'install', id: 7, route: { relayed: RELAYED, client: CLIENT, peer: PEER } });
          if (kind === 'bpf')
            expect(await nsExec(relay, 'tc', 'filter', 'show', 'dev', device, 'ingress')).toContain(
              `handle 0x${pid.toString(16)}`,
            );
          await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 200, size: 172 });
          const got = await collect(p, CLIENT, 200);
          expect(got).toHaveLength(200);
          expect(new Set(got.map((g) => g.from))).toEqual(new Set(['198.18.7.2:40000']));
          expect(got.every((g) => g.size === 172)).toBe(true);
          // The sequence numbers the sender wrote, in order: nothing was altered but the headers.
          expect(got.map((g) => Number.parseInt(g.head.slice(0, 8), 16))).toEqual([...Array(200).keys()]);
          expect(await udpChecksumErrors()).toBe(errors);
          expect(await collect(r, RELAYED, 0)).toEqual([]);
          const counters = (await r.ok({ op: 'counters' })).counters!;
          // UDP payload bytes, as the userspace path counts them.
          expect(counters['7']).toEqual({ packets: 200, bytes: 200 * 172 });
        },
      );

      it.skipIf(skip !== undefined)(
        'leaves every other datagram to the stack: another source port, and a fragmented one from the peer',
        async () => {
          const other = { address: '198.18.7.1', port: kind === 'bpf' ? 5001 : 5011 };
          await p.ok({ op: 'bind', ...other });
          await p.ok({ op: 'send', ...other, to: '198.18.7.2:40000', count: 5, size: 100 });
          // 3000 bytes over a 1500-byte link: two fragments, reassembled by the relay host's stack.
          await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 2, size: 3000 });
          const atRelay = await collect(r, RELAYED, 7);
          expect(atRelay.map((g) => `${g.from} ${g.size}`).sort()).toEqual(
            [
              ...Array(5).fill(`198.18.7.1:${other.port} 100`),
              ...Array(2).fill('198.18.7.1:5000 3000'),
            ].sort(),
          );
          expect(await collect(p, CLIENT, 0)).toEqual([]);
          expect((await r.ok({ op: 'counters' })).counters!['7']).toEqual({ packets: 200, bytes: 200 * 172 });
        },
      );

      it.skipIf(skip !== undefined)(
        'sends through the gateway of the route to a client that is not on the link; a new peer replaces the old one and the counter carries on',
        async () => {
          const peer2 = { address: '198.18.7.3', port: kind === 'bpf' ? 5002 : 5012 };
          const errors = await udpChecksumErrors();
          await p.ok({ op: 'bind', ...peer2 });
          await r.ok({ op: 'install', id: 7, route: { relayed: RELAYED, client: FAR_CLIENT, peer: peer2 } });
          await p.ok({ op: 'send', ...peer2, to: '198.18.7.2:40000', count: 50, size: 72 });
          const got = await collect(p, FAR_CLIENT, 50);
          expect(got).toHaveLength(50);
          expect(got.every((g) => g.from === '198.18.7.2:40000' && g.size === 72)).toBe(true);
          expect(await udpChecksumErrors()).toBe(errors);
          // The old peer goes to userspace now.
          await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 3, size: 50 });
          expect(await collect(r, RELAYED, 3)).toHaveLength(3);
          expect((await r.ok({ op: 'counters' })).counters!['7']).toEqual({
            packets: 250,
            bytes: 200 * 172 + 50 * 72,
          });
        },
      );

      it.skipIf(skip !== undefined)(
        'refuses what is not an address or a port before a tool sees it',
        async () => {
          for (const bad of [
            { relayed: RELAYED, client: { address: '198.18.7.3; flush ruleset', port: 6000 }, peer: PEER },
            { relayed: RELAYED, client: CLIENT, peer: { address: '198.18.7.1', port: 70_000 } },
            { relayed: { address: '0.0.0.0', port: 40_000 }, client: CLIENT, peer: PEER },
          ]) {
            const reply = await r.do({ op: 'install', id: 8, route: bad });
            expect(reply.error).toMatch(/not an IPv4 host address|bad port/);
          }
          // A client with no route: refused by the route look-up, nothing installed.
          await nsExec(relay, 'ip', 'route', 'replace', 'blackhole', '198.18.10.0/24');
          const reply = await r.do({
            op: 'install',
            id: 8,
            route: { relayed: RELAYED, client: { address: '198.18.10.1', port: 1 }, peer: PEER },
          });
          expect(reply.error).toMatch(/route/);
          expect(Object.keys((await r.ok({ op: 'counters' })).counters!)).toEqual(['7']);
        },
      );

      it.skipIf(skip !== undefined)(
        'stops forwarding at remove and leaves nothing behind at close',
        async () => {
          await r.ok({ op: 'remove', id: 7 });
          await p.ok({ op: 'send', ...PEER, to: '198.18.7.2:40000', count: 4, size: 60 });
          expect(await collect(r, RELAYED, 4)).toHaveLength(4);
          expect(await collect(p, CLIENT, 0)).toEqual([]);
          expect((await r.ok({ op: 'counters' })).counters!).toEqual({});
          await r.ok({ op: 'close' });
          if (kind === 'nft')
            expect(await nsExec(relay, 'nft', 'list', 'tables')).not.toContain('sc2c_relay_');
          else
            expect(await nsExec(relay, 'tc', 'filter', 'show', 'dev', device, 'ingress')).not.toContain(
              'handle',
            );
        },
      );
    });
  },
);
