/**
 * Issue 23: the relay's kernel fast path on a real kernel. Between two symmetric-random NATs no
 * port can be predicted, so the demo's call goes to the relay; the viewer's gateway asks for a raw
 * relay and latches it, and the server (in its lab namespace, with CAP_NET_ADMIN) forwards the
 * camera's media in the kernel: with `turn.kernelPath: auto` and every tool present (as in CI),
 * the eBPF program's L3 entry point, since the lab's hosts are joined by TUN devices (the
 * nftables path is tested on its own in test/relay/kernel-offload.test.ts). The server's own
 * counters, read from its /metrics, show the kernel carried it (the lab's server namespace has
 * net.ipv4.ip_forward off: the kernel path sends datagrams out itself). And `turn.kernelForwarding: on` where the kernel path cannot run is
 * refused at start with the reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createNamespace, deleteNamespace } from '../../src/lab/netns.ts';
import { BIN, labUnavailable } from './support.ts';

let why = await labUnavailable();
for (const [command, flag, pkg] of [
  ['nft', '--version', 'nftables'],
  ['clang', '--version', 'clang'],
  ['bpftool', 'version', 'bpftool'],
] as const) {
  if (why) break;
  try {
    execFileSync(command, [flag], { stdio: 'ignore' });
  } catch {
    why = `no '${command}' command (scripts/setup-system.sh installs ${pkg})`;
  }
}
if (why && process.env.CI === 'true') throw new Error(`CI needs this: ${why}`);

function run(args: string[], timeout: number): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr: '' };
  } catch (error) {
    const e = error as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe.skipIf(why !== undefined)('relay kernel fast path (issue 23)', () => {
  // With relay shards the front relays nothing over UDP: what the kernel forwarded is what the
  // shard processes counted and reported to it.
  it.each([1, 2])(
    'a relayed demo call between symmetric-random NATs, relayed by %i process(es), reports relayPath kernel, and the server counted the kernel forwarding it',
    (shards) => {
      const out = mkdtempSync(join(tmpdir(), 'sc2c-kernel-relay-'));
      const demo = run(
        [
          process.execPath,
          BIN,
          'demo',
          '--nat-a',
          'symmetric-random',
          '--nat-b',
          'symmetric-random',
          '--duration',
          '4',
          '--relay-shards',
          String(shards),
          '--out',
          out,
          '--json',
        ],
        170_000,
      );
      expect(demo.code, demo.stderr).toBe(0);
      const result = JSON.parse(demo.stdout.slice(demo.stdout.indexOf('{')));
      expect(result.path).toBe('relay');
      expect(result.relayPath).toBe('kernel');
      expect(result.relayShards).toBe(shards);
      expect(result.framesReceived).toBeGreaterThan(60);
      // Most of what reached the viewer never entered the server's process: the first datagrams go
      // through userspace while the rules go in, the rest through the kernel.
      expect(result.kernelRelayed.packets).toBeGreaterThan(100);
      expect(result.kernelRelayed.bytes).toBeGreaterThan(0.5 * result.bytesRelay);
    },
    180_000,
  );

  it('turn.kernelForwarding: on is refused at start where neither kernel path can run (no nft, no tc), with the reasons', async () => {
    const ns = `sc2c-kr${process.pid % 10_000}`;
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-kernel-on-'));
    const config = join(dir, 'server.yaml');
    writeFileSync(
      config,
      `sip:
  listen: { address: 127.0.0.1, port: 15060 }
  realm: sc2c.lab
  users: { alice: alice-password-1 }
stun:
  primary: { address: 127.0.0.1, port: 13478 }
  alternate: { address: 127.0.0.1, port: 13479 }
turn:
  kernelForwarding: on
`,
    );
    await createNamespace(ns);
    try {
      // A PATH with ip but without nft: a host where nftables is not installed.
      symlinkSync(execFileSync('sh', ['-c', 'command -v ip'], { encoding: 'utf8' }).trim(), join(dir, 'ip'));
      const server = run(
        [
          'ip',
          'netns',
          'exec',
          ns,
          'env',
          `PATH=${dir}`,
          process.execPath,
          BIN,
          'server',
          '--config',
          config,
        ],
        30_000,
      );
      expect(server.code).toBe(2);
      expect(server.stderr).toMatch(/turn\.kernelForwarding is on .* the 'nft' command is missing/);
      // turn.kernelPath: auto tried eBPF first, and says why that could not run either.
      expect(server.stderr).toMatch(/no eBPF: the 'tc' command is missing/);
    } finally {
      await deleteNamespace(ns);
    }
  }, 60_000);
});
