/**
 * The lab's real port-mapping router (issue 20): Debian's miniupnpd (nftables build) in a kernel
 * NAT's namespace, serving UPnP IGD, NAT-PMP and PCP on the LAN side, over a `masquerade
 * random-fully` mapping: without a mapping on request only the relay reaches a host behind it.
 *
 * miniupnpd refuses to forward behind an external address in a reserved range, and the lab's whole
 * public internet is 198.18.0.0/15 (RFC 2544). With `ext_perform_stun` it asks a STUN server
 * instead, and forwards when its four RFC 5780 requests (change IP, change port) come back with its
 * own address and ports, i.e. no NAT lies beyond. The lab runs that STUN server for it
 * (`LAB_STUN`): our own responder, on the lab's internet, before miniupnpd starts.
 *
 * Its rules live in one nftables table of ours, `inet miniupnpd`: a forward chain that drops what
 * is neither established nor from the LAN nor in miniupnpd's own chain, and the NAT chains whose
 * jumps reach miniupnpd's DNAT redirects, the masquerade after them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Endpoint } from '../net/address.ts';
import { nsExec } from './netns.ts';

/** The STUN server miniupnpd asks: an address pair of the lab's own on its public internet. */
export const LAB_STUN = {
  primary: { address: '198.19.255.1', port: 3478 },
  alternate: { address: '198.19.255.2', port: 3479 },
} as const;

/** One redirect as miniupnpd keeps it (its lease file): what `sc2c lab portmap` lists. */
export interface Redirect {
  readonly protocol: 'udp' | 'tcp';
  readonly externalPort: number;
  readonly internal: Endpoint;
  /** Unix time the lease runs out; 0 for a permanent one. */
  readonly expiresAt: number;
  readonly description: string;
}

export interface MiniupnpdInit {
  readonly namespace: string;
  /** The LAN prefix, e.g. 10.0.2.0/24 (the masquerade and miniupnpd's permission rule). */
  readonly lan: string;
  /** Shortest lease granted. Default 2 s, so the lab can watch renewals (miniupnpd's own is 120). */
  readonly minLifetimeS?: number;
  /** miniupnpd's log lines (its stderr with -d). */
  readonly onLog?: (line: string) => void;
}

/** The NAT's nftables: miniupnpd's chains reached from hooked ones, and the masquerade behind them. */
export function miniupnpdRuleset(lan: string): string {
  return `table inet miniupnpd {
  chain miniupnpd {
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" accept
    jump miniupnpd
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    ip saddr ${lan} oifname "wan" masquerade fully-random
  }
}
`;
}

function config(init: MiniupnpdInit, leaseFile: string): string {
  const [address, length] = init.lan.split('/');
  return [
    'ext_ifname=wan',
    'listening_ip=lan',
    'http_port=0',
    'enable_natpmp=yes',
    'enable_upnp=yes',
    'ext_perform_stun=yes',
    `ext_stun_host=${LAB_STUN.primary.address}`,
    `ext_stun_port=${LAB_STUN.primary.port}`,
    'upnp_table_name=miniupnpd',
    'upnp_nat_table_name=miniupnpd',
    'upnp_forward_chain=miniupnpd',
    'upnp_nat_chain=prerouting_miniupnpd',
    'upnp_nat_postrouting_chain=postrouting_miniupnpd',
    'secure_mode=yes',
    `min_lifetime=${init.minLifetimeS ?? 2}`,
    'max_lifetime=86400',
    `lease_file=${leaseFile}`,
    'system_uptime=no',
    'uuid=5c2c0000-0000-4000-8000-000000000020',
    `allow 1024-65535 ${address}/${length} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n');
}

/** How long miniupnpd gets to say it listens: its STUN check alone may wait 3 s per round. */
const START_TIMEOUT_MS = 15_000;

export class Miniupnpd {
  readonly #dir: string;
  readonly #leaseFile: string;
  #child?: ChildProcess;
  #closed = false;
  /** Starts, including the one a `restart` makes. */
  starts = 0;

  private constructor(readonly init: MiniupnpdInit) {
    this.#dir = mkdtempSync(join(tmpdir(), 'sc2c-miniupnpd-'));
    this.#leaseFile = join(this.#dir, 'leases');
    writeFileSync(join(this.#dir, 'miniupnpd.conf'), config(init, this.#leaseFile));
  }

  /** Installs the ruleset and starts miniupnpd; resolves once it listens for NAT-PMP and PCP. */
  static async start(init: MiniupnpdInit): Promise<Miniupnpd> {
    const daemon = new Miniupnpd(init);
    try {
      const rules = join(daemon.#dir, 'ruleset.nft');
      writeFileSync(rules, miniupnpdRuleset(init.lan));
      await nsExec(init.namespace, 'nft', '-f', rules);
      await daemon.#run();
    } catch (error) {
      await daemon.close();
      throw error;
    }
    return daemon;
  }

  /**
   * A router reboot: miniupnpd stops, its redirects and lease file are gone, and it starts again
   * with a new epoch. Clients learn it from the epoch of their next renewal (RFC 6887 §8.5).
   */
  async restart(): Promise<void> {
    await this.#stop();
    rmSync(this.#leaseFile, { force: true });
    for (const chain of ['miniupnpd', 'prerouting_miniupnpd', 'postrouting_miniupnpd'])
      await nsExec(this.init.namespace, 'nft', 'flush', 'chain', 'inet', 'miniupnpd', chain);
    await this.#run();
  }

  /** The redirects miniupnpd holds now, from its lease file (written on every change). */
  redirects(): Redirect[] {
    let text: string;
    try {
      text = readFileSync(this.#leaseFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter(Boolean)
      .flatMap((line) => {
        // PROTO:EXT_PORT:INT_ADDR:INT_PORT:EXPIRES:DESCRIPTION (miniupnpd's lease file).
        const [protocol, ext, address, port, expires, ...rest] = line.split(':');
        if ((protocol !== 'UDP' && protocol !== 'TCP') || !address) return [];
        return [
          {
            protocol: protocol.toLowerCase() as 'udp' | 'tcp',
            externalPort: Number(ext),
            internal: { address, port: Number(port) },
            expiresAt: Number(expires),
            description: rest.join(':'),
          },
        ];
      });
  }

  /** The DNAT rules in the kernel now: one per redirect while miniupnpd and the kernel agree. */
  async kernelRedirects(): Promise<number> {
    const listed = await nsExec(
      this.init.namespace,
      'nft',
      'list',
      'chain',
      'inet',
      'miniupnpd',
      'prerouting_miniupnpd',
    );
    return listed.split('\n').filter((l) => l.includes('dnat')).length;
  }

  /** Idempotent: stops miniupnpd (its shutdown removes its rules) and removes its files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #run(): Promise<void> {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.init.namespace,
        'miniupnpd',
        '-f',
        join(this.#dir, 'miniupnpd.conf'),
        '-d',
        '-4',
        '-P',
        join(this.#dir, 'miniupnpd.pid'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    this.starts++;
    await new Promise<void>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`miniupnpd did not start within ${START_TIMEOUT_MS} ms: ${text.slice(-2000)}`));
      }, START_TIMEOUT_MS);
      const seen = (d: Buffer): void => {
        for (const line of String(d).split('\n')) if (line.trim()) this.init.onLog?.(line);
        text = (text + d).slice(-8192);
        if (/Listening for NAT-PMP\/PCP traffic/.test(text)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', seen);
      child.stderr!.on('data', seen);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`cannot run miniupnpd (apt-get install miniupnpd-nftables): ${error.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`miniupnpd exited (${code}): ${text.slice(-2000)}`));
      });
    });
  }

  async #stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
