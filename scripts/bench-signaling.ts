/**
 * `npm run bench:signaling` (issue 24): how many registered devices one `sc2c server` holds, and how
 * many call set-ups a second it coordinates, over real SIP on TCP with digest, on loopback.
 *
 * 1. A server with N users (`d0` … `dN-1`, each callable by any user) runs as its own process, its
 *    log at `warn`.
 * 2. N devices connect, each from its own source address in 127.1.0.0/16 and up (so no address
 *    runs out of ephemeral ports), and REGISTER, answering the digest challenge, at most
 *    `--concurrency` at once. They then stay up as gateways do: a CRLF keepalive every
 *    `--keepalive-s`, a re-REGISTER at 80 % of `--expires-s`, and an answer to the server's OPTIONS
 *    (it measures every connection's round trip every 20 s for the SC2C go timing).
 * 3. After the registrations settle, the server's RSS.
 * 4. Call set-ups at `--setup-rate` a second for `--setup-s`, open loop, without media: caller
 *    `d(2k)` INVITEs callee `d(2k+1)` with an SDP offer; the callee answers 200 with its SDP; the
 *    caller ACKs and sends the SC2C sync (INFO); the server sends both go INFOs; the caller ends
 *    the call with BYE. A set-up's time is from its INVITE to the second go, both measured here.
 *
 * Prints `{date, commit, nodes, registrations, rssMb, setupsPerSecond, setupMsP50, setupMsP95,
 * serverCpuSeconds}` and the detail under it. This machine's two cores carry the load generator
 * too; `serverCpuSeconds` is what the server process itself used in the set-up phase, so figures
 * per server CPU-second are also given.
 *
 * Usage: npm run bench:signaling -- [--registrations 10000] [--nodes 1] [--setup-rate 1000]
 *        [--setup-s 10] [--json] [--out FILE]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { parseInteger } from '../src/cli/errors.ts';
import { openFileLimit } from '../src/cli/open-files.ts';
import { startRedis } from '../src/lab/redis.ts';
import { SystemClock } from '../src/net/clock.ts';
import { NodeNetwork } from '../src/net/node-network.ts';
import type { Network } from '../src/net/types.ts';
import { header } from '../src/protocol/sip/message.ts';
import { SignalingClient } from '../src/signaling/client.ts';
import { SC2C_CONTENT_TYPE } from '../src/signaling/server.ts';
import { failer, freePort, gitCommit, ROOT, say } from './bench-common.ts';

const BIN = join(ROOT, 'src/cli/bin.js');
const CLK_TCK = 100;
const DOMAIN = 'bench.test';
/** How long a set-up may take before it counts as failed. */
const SETUP_TIMEOUT_MS = 5000;
/** Set-ups in flight at once, at most: an overloaded server is measured, not buried. */
const MAX_IN_FLIGHT = 5000;

const program = new Command('bench:signaling')
  .description('registrations one sc2c server holds, and call set-ups per second it coordinates')
  .option(
    '--registrations <n>',
    'devices registered and kept alive',
    parseInteger('--registrations', 2, 200_000),
    10_000,
  )
  .option(
    '--nodes <n>',
    'server nodes: 2 shares registrations through Redis, and measures one node with Redis too, in the same run',
    parseInteger('--nodes', 1, 2),
    1,
  )
  .option('--store <kind>', 'with one node: memory or redis (two nodes always use redis)', 'memory')
  .option(
    '--cross-node <percent>',
    'with two nodes: the share of calls whose callee is registered on the other node',
    parseInteger('--cross-node', 0, 100),
    50,
  )
  .option('--no-failover', 'with two nodes: skip killing the second node at the end')
  .option(
    '--setup-rate <n>',
    'call set-ups offered per second',
    parseInteger('--setup-rate', 1, 20_000),
    1000,
  )
  .option('--setup-s <n>', 'seconds of call set-ups', parseInteger('--setup-s', 1, 120), 10)
  .option('--concurrency <n>', 'REGISTERs in flight at once', parseInteger('--concurrency', 1, 5000), 200)
  .option('--keepalive-s <n>', 'CRLF keepalive interval', parseInteger('--keepalive-s', 5, 3600), 30)
  .option('--expires-s <n>', 'registration lifetime asked for', parseInteger('--expires-s', 60, 86_400), 3600)
  .option('--json', 'print the result as JSON')
  .option('--out <file>', 'also write the JSON here')
  .option('--inside', '(internal) run with the raised file-descriptor limit')
  .parse();
const options = program.opts<{
  registrations: number;
  nodes: number;
  setupRate: number;
  setupS: number;
  concurrency: number;
  keepaliveS: number;
  expiresS: number;
  json?: boolean;
  out?: string;
  inside?: boolean;
  store: string;
  crossNode: number;
  failover: boolean;
}>();

const fail: (message: string) => never = failer('bench:signaling');

if (!['memory', 'redis'].includes(options.store)) fail(`--store is memory or redis, not '${options.store}'`);

/** Descriptors beyond one per device that the server and this process need. */
const FD_ROOM = 1024;

/** A process's CPU seconds (user + system). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

/** The i-th device's source address: 127.1.0.0 upwards, 65 536 to a /16. */
function sourceAddress(i: number): string {
  return `127.${1 + Math.floor(i / 65_536)}.${(i >> 8) & 255}.${i & 255}`;
}

function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The SDP a camera's offer carries (one H.264 video stream, check credentials, a relay candidate). */
function offerSdp(user: string, port: number): string {
  return [
    'v=0',
    `o=${user} ${Date.now()} 1 IN IP4 198.18.1.1`,
    's=sc2c',
    'c=IN IP4 198.18.1.1',
    't=0 0',
    'a=sc2c-mode:sc2c',
    'a=sc2c-nat:symmetric-seq1',
    `a=ice-ufrag:${randomBytes(3).toString('hex')}`,
    `a=ice-pwd:${randomBytes(12).toString('base64url')}`,
    'a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF',
    'a=setup:actpass',
    `m=video ${port} UDP/TLS/RTP/SAVPF 96`,
    'a=rtpmap:96 H264/90000',
    'a=fmtp:96 packetization-mode=1;profile-level-id=42e01f',
    'a=rtcp-mux',
    `a=candidate:1 1 udp 2130706431 10.0.1.2 ${port} typ host`,
    `a=candidate:2 1 udp 1694498815 198.18.1.1 ${port} typ srflx`,
    `a=candidate:3 1 udp 16777215 198.18.0.10 ${port + 1} typ relay`,
    '',
  ].join('\r\n');
}

interface Device {
  readonly user: string;
  client: SignalingClient;
}

async function outside(): Promise<void> {
  // Node cannot raise its own descriptor limit: the shell raises the soft one to the hard one, for
  // this script run again inside (and the server it starts, which holds a descriptor per device).
  const args = process.argv.slice(2);
  const child = spawn(
    'sh',
    [
      '-c',
      'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
      'sh',
      process.execPath,
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      ...args,
      '--inside',
    ],
    { stdio: 'inherit', cwd: ROOT },
  );
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  process.exitCode = await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
}

interface NodeProcess {
  readonly id: string;
  readonly sip: number;
  readonly child: ChildProcess;
  readonly pid: number;
}

interface Phase {
  readonly nodes: number;
  readonly store: 'memory' | 'redis';
  readonly registered: number;
  readonly rssMb: number;
  readonly rssIdleMb: number;
  readonly setupsPerSecond: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
  readonly setupMsP99: number | null;
  readonly serverCpuSeconds: number;
  readonly registerSeconds: number;
  readonly registerServerCpuSeconds: number;
  readonly setupsOffered: number;
  readonly setupsCompleted: number;
  readonly setupsSkippedInFlight: number;
  readonly setupPhaseSeconds: number;
  readonly setupsPerServerCpuSecond: number | null;
  readonly crossNodeCalls: number;
  readonly failures: Record<string, number>;
  readonly failover?: Failover;
}

interface Failover {
  /** Devices that were on the killed node. */
  readonly devices: number;
  /** Of them, registered again on the other node. */
  readonly registeredAgain: number;
  /** From the kill to the last one registered again, and the 95th percentile. */
  readonly allBackMs: number | null;
  readonly backMsP95: number | null;
  /** Calls placed to a sample of them through the surviving node, and how many were set up. */
  readonly callsTried: number;
  readonly callsSetUp: number;
}

async function inside(): Promise<void> {
  const n = options.registrations;
  const limit = openFileLimit();
  if (n + FD_ROOM > limit)
    fail(
      `${n} devices need ${n + FD_ROOM} open files in the server (one TCP connection each) and here, but this machine allows ${limit} a process (the hard limit; raising it needs CAP_SYS_RESOURCE): ask for at most ${limit - FD_ROOM}`,
    );
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-signaling-'));
  const cleanups: (() => void)[] = [];
  const stopAll = (): void => {
    for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      stopAll();
      rmSync(dir, { recursive: true, force: true });
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  try {
    const secret = randomBytes(6).toString('hex');
    const password = (i: number): string => `bench-${secret}-${i}`;
    const users = Array.from({ length: n }, (_, i) => `  d${i}: { password: ${password(i)}, callers: any }`);
    writeFileSync(join(dir, 'users.yaml'), `users:\n${users.join('\n')}\n`);
    say(
      `signaling benchmark: ${n} devices on ${options.nodes} node(s) (${cpus().length} CPUs, ${cpus()[0]?.model ?? 'unknown CPU'}); ${options.setupRate} set-ups/s for ${options.setupS} s`,
    );
    const phases: Phase[] = [];
    if (options.nodes === 2) {
      say('phase 1 of 2: one node, registrations in Redis');
      phases.push(await phase(1, 'redis', dir, password, cleanups));
      stopAll();
      say('phase 2 of 2: two nodes sharing Redis');
      phases.push(await phase(2, 'redis', dir, password, cleanups));
    } else phases.push(await phase(1, options.store as 'memory' | 'redis', dir, password, cleanups));
    stopAll();
    const last = phases.at(-1)!;
    const one = phases[0]!;
    const result = {
      date: new Date().toISOString(),
      commit: gitCommit(),
      nodes: last.nodes,
      registrations: last.registered,
      rssMb: last.rssMb,
      setupsPerSecond: last.setupsPerSecond,
      setupMsP50: last.setupMsP50,
      setupMsP95: last.setupMsP95,
      serverCpuSeconds: last.serverCpuSeconds,
      detail: {
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, node: process.version },
        placement: 'every node and the load generator share the machine (loopback, one process each)',
        asked: {
          registrations: n,
          nodes: options.nodes,
          setupRate: options.setupRate,
          setupS: options.setupS,
          keepaliveS: options.keepaliveS,
          expiresS: options.expiresS,
          ...(options.nodes === 2 ? { crossNodePercent: options.crossNode } : { store: options.store }),
        },
        ...(options.nodes === 2
          ? {
              /** Two nodes' completed set-ups per second over one node's, both with Redis, same offered rate. */
              speedup: one.setupsPerSecond > 0 ? round2(last.setupsPerSecond / one.setupsPerSecond) : null,
              /** The same per server CPU-second: what two hosts would give over one, this box aside. */
              perCpuRatio:
                one.setupsPerServerCpuSecond && last.setupsPerServerCpuSecond
                  ? round2(last.setupsPerServerCpuSecond / one.setupsPerServerCpuSecond)
                  : null,
            }
          : {}),
        phases,
      },
    };
    if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
    if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else
      for (const p of phases)
        process.stdout.write(
          `\n${p.nodes} node(s), store ${p.store}: ${p.registered} registrations, server RSS ${p.rssMb} MB (${p.rssIdleMb} MB idle)\n` +
            `call set-ups: ${p.setupsPerSecond}/s completed (${p.setupsCompleted} of ${p.setupsOffered} offered, ${p.crossNodeCalls} across nodes), INVITE to both go p50 ${p.setupMsP50} ms, p95 ${p.setupMsP95} ms\n` +
            `server CPU in the set-up phase: ${p.serverCpuSeconds} s (${p.setupsPerServerCpuSecond ?? '-'} set-ups per server CPU-second)\n` +
            (p.failover
              ? `node killed: ${p.failover.registeredAgain} of ${p.failover.devices} devices registered again on the other node, the last after ${p.failover.allBackMs} ms (p95 ${p.failover.backMsP95} ms); ${p.failover.callsSetUp} of ${p.failover.callsTried} calls to them set up\n`
              : '') +
            (Object.keys(p.failures).length > 0 ? `failures: ${JSON.stringify(p.failures)}\n` : ''),
        );
  } finally {
    stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** Starts one `sc2c server` node; resolves once it listens. */
async function startNode(
  dir: string,
  index: number,
  n: number,
  store: string | undefined,
  cleanups: (() => void)[],
): Promise<NodeProcess> {
  const [sip, stun] = [await freePort(), await freePort()];
  const id = `n${index}`;
  const config = join(dir, `server-${id}.yaml`);
  writeFileSync(
    config,
    `sip:
  listen: { address: 127.0.0.1, port: ${sip} }
  realm: ${DOMAIN}
  usersFile: users.yaml
  maxConnections: ${n + 100}
stun:
  primary: { address: 127.0.0.1, port: ${stun} }
  alternate: { address: 127.0.0.2, port: ${stun + 1} }
${store ? `store: ${store}\nnode: ${id}\ncluster: { secret: bench-cluster-secret-${randomBytes(8).toString('hex')} }\n` : ''}`,
  );
  // Both nodes need the same secret: the first node's file gives it to the second.
  if (store && index > 0) {
    const first = readFileSync(join(dir, 'server-n0.yaml'), 'utf8');
    const shared = /cluster: \{ secret: (\S+) \}/.exec(first)![1]!;
    writeFileSync(config, readFileSync(config, 'utf8').replace(/secret: \S+ \}/, `secret: ${shared} }`));
  }
  const child = spawn(process.execPath, [BIN, 'server', '--config', config, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  cleanups.push(() => child.kill('SIGKILL'));
  await waitForTcp(sip, 60_000);
  return { id, sip, child, pid: child.pid! };
}

async function phase(
  nodeCount: number,
  storeKind: 'memory' | 'redis',
  dir: string,
  password: (i: number) => string,
  cleanups: (() => void)[],
): Promise<Phase> {
  const n = options.registrations;
  let storeUrl: string | undefined;
  if (storeKind === 'redis') {
    const redis = await startRedis({ address: '127.0.0.1', port: await freePort() });
    cleanups.push(() => void redis.stop());
    storeUrl = redis.url;
  }
  const nodes: NodeProcess[] = [];
  for (let i = 0; i < nodeCount; i++) nodes.push(await startNode(dir, i, n, storeUrl, cleanups));
  const pids = nodes.map((node) => node.pid);
  const cpuOf = (): number => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const rssOf = (): number => round1(pids.reduce((sum, pid) => sum + rssMb(pid), 0));
  const rssIdleMb = rssOf();

  // Pair k is d(2k) calling d(2k+1). Its caller registers on node k mod nodes; its callee on the
  // same node, or on the other for --cross-node percent of the pairs.
  const crossPair = (k: number): boolean => nodeCount > 1 && (k * 37) % 100 < options.crossNode;
  const homeOf = (i: number): number => {
    const k = Math.floor(i / 2);
    const callerNode = k % nodeCount;
    return i % 2 === 0 || !crossPair(k) ? callerNode : (callerNode + 1) % nodeCount;
  };

  // ---- registrations ----------------------------------------------------------------------
  const clock = new SystemClock();
  const node = new NodeNetwork();
  const goes = new Map<string, { count: number; done: () => void }>();
  const devices: Device[] = [];
  cleanups.push(() => {
    for (const device of devices) device.client.close();
  });
  const failures = new Map<string, number>();
  const failed = (why: string): void => {
    failures.set(why, (failures.get(why) ?? 0) + 1);
  };
  const answer = (device: Device, client: SignalingClient): void => {
    client.on('request', (request, respond) => {
      if (request.method === 'INVITE')
        respond(200, [['Content-Type', 'application/sdp']], offerSdp(device.user, 40_000));
      else if (request.method === 'INFO') {
        respond(200);
        const waiting = goes.get(header(request, 'Call-ID') ?? '');
        if (waiting && ++waiting.count === 2) waiting.done();
      } else if (request.method === 'BYE') respond(200);
      else if (request.method !== 'ACK') respond(405); // an ACK is never answered
    });
  };
  const connectDevice = async (i: number, to: NodeProcess): Promise<SignalingClient> => {
    const localAddress = sourceAddress(i);
    const network: Network = {
      bindUdp: (init) => node.bindUdp(init),
      listen: (init) => node.listen(init),
      connect: (dest, init) => node.connect(dest, { ...init, localAddress }),
    };
    return SignalingClient.connect(
      { network, clock },
      {
        server: { address: '127.0.0.1', port: to.sip },
        domain: DOMAIN,
        user: `d${i}`,
        password: password(i),
        expiresS: options.expiresS,
        keepaliveMs: options.keepaliveS * 1000,
        timeoutMs: 30_000,
      },
    );
  };
  const registerStarted = performance.now();
  const cpuBeforeRegister = cpuOf();
  let next = 0;
  let registered = 0;
  const progress = setInterval(() => say(`  registered ${registered}/${n}, server RSS ${rssOf()} MB`), 2000);
  const homes = new Map<string, number>();
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        try {
          const client = await connectDevice(i, nodes[homeOf(i)]!);
          const device = { user: `d${i}`, client };
          devices.push(device);
          answer(device, client);
          await client.register();
          homes.set(device.user, homeOf(i));
          registered++;
        } catch (error) {
          failed(`register: ${(error as Error).message}`);
        }
      }
    }),
  );
  clearInterval(progress);
  const registerS = (performance.now() - registerStarted) / 1000;
  const registerCpuS = cpuOf() - cpuBeforeRegister;
  say(`  ${registered}/${n} registered in ${round1(registerS)} s (server CPU ${round1(registerCpuS)} s)`);
  // Let the servers' first round of OPTIONS (they time every connection) pass before measuring.
  await new Promise((r) => setTimeout(r, 3000));
  const rssRegisteredMb = rssOf();
  say(`  server RSS ${rssIdleMb} MB idle, ${rssRegisteredMb} MB with ${registered} registrations`);

  // ---- call set-ups -----------------------------------------------------------------------
  const byUser = new Map(devices.map((d) => [d.user, d]));
  const pairs: { caller: Device; callee: Device; cross: boolean }[] = [];
  for (let i = 0; i + 1 < n; i += 2) {
    const caller = byUser.get(`d${i}`);
    const callee = byUser.get(`d${i + 1}`);
    if (caller && callee) pairs.push({ caller, callee, cross: homeOf(i) !== homeOf(i + 1) });
  }
  if (pairs.length === 0) fail('no registered pair of devices to call between');
  const times: number[] = [];
  let inFlight = 0;
  let offered = 0;
  let skipped = 0;
  let crossNodeCalls = 0;
  /** One call set-up, INVITE to both go; resolves with its time, or undefined when it failed. */
  const setup = async (caller: Device, callee: Device): Promise<number | undefined> => {
    const callId = `${randomBytes(8).toString('hex')}@bench`;
    const started = performance.now();
    const bothGo = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no go')), SETUP_TIMEOUT_MS);
      goes.set(callId, {
        count: 0,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
    bothGo.catch(() => {});
    try {
      const uri = caller.client.uri(callee.user);
      const ok = await caller.client.request('INVITE', uri, [['Content-Type', 'application/sdp']], {
        callId,
        body: offerSdp(caller.user, 41_000),
      });
      if (ok.status !== 200) throw new Error(`INVITE ${ok.status}`);
      const toTag = /;tag=([^;>\s]+)/.exec(header(ok, 'To') ?? '')?.[1];
      await caller.client.request('ACK', uri, [], { callId, toTag });
      const synced = await caller.client.request('INFO', uri, [['Content-Type', SC2C_CONTENT_TYPE]], {
        callId,
        toTag,
        body: JSON.stringify({ type: 'sync', schedule: 'timed' }),
      });
      if (synced.status !== 200) throw new Error(`sync ${synced.status}`);
      await bothGo;
      const ms = performance.now() - started;
      const bye = await caller.client.request('BYE', uri, [], { callId, toTag });
      if (bye.status !== 200) failed(`BYE ${bye.status}`);
      return ms;
    } catch (error) {
      failed(`set-up: ${(error as Error).message}`);
      return undefined;
    } finally {
      goes.delete(callId);
    }
  };
  const cpuBeforeSetups = cpuOf();
  const setupStarted = performance.now();
  const total = options.setupRate * options.setupS;
  const running: Promise<void>[] = [];
  // Open loop: every 10 ms, the set-ups due by then, whatever the earlier ones are doing.
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(
        total,
        Math.floor(((performance.now() - setupStarted) / 1000) * options.setupRate),
      );
      while (offered < due) {
        const pair = pairs[offered % pairs.length]!;
        offered++;
        if (inFlight >= MAX_IN_FLIGHT) {
          skipped++;
          continue;
        }
        inFlight++;
        if (pair.cross) crossNodeCalls++;
        running.push(
          setup(pair.caller, pair.callee)
            .then((ms) => {
              if (ms !== undefined) times.push(ms);
            })
            .finally(() => {
              inFlight--;
            }),
        );
      }
      if (offered >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 10);
  });
  await Promise.all(running);
  const setupS = (performance.now() - setupStarted) / 1000;
  const serverCpuSeconds = round2(cpuOf() - cpuBeforeSetups);
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p: number): number | null => {
    const v = percentile(sorted, p);
    return v === null ? null : round1(v);
  };
  say(`  ${times.length} set-ups in ${round1(setupS)} s, p95 ${pct(95)} ms`);

  // ---- kill the second node ------------------------------------------------------------------
  let failover: Failover | undefined;
  if (nodeCount === 2 && options.failover) {
    const victims = devices.filter((d) => homes.get(d.user) === 1);
    const backMs: number[] = [];
    const killedAt = performance.now();
    // Each device does what a gateway given both nodes does: at its connection's close, it
    // connects to the other node at once and registers there.
    const back = victims.map(
      (device) =>
        new Promise<void>((resolve) => {
          device.client.on('close', () => {
            const i = Number(device.user.slice(1));
            connectDevice(i, nodes[0]!)
              .then(async (client) => {
                device.client = client;
                answer(device, client);
                await client.register();
                backMs.push(performance.now() - killedAt);
              })
              .catch((error: Error) => failed(`failover: ${error.message}`))
              .finally(resolve);
          });
        }),
    );
    say(`  killing node n1 (${victims.length} devices on it)`);
    nodes[1]!.child.kill('SIGKILL');
    await Promise.race([Promise.all(back), new Promise((r) => setTimeout(r, 60_000))]);
    const sortedBack = [...backMs].sort((a, b) => a - b);
    // Then calls to a sample of them, each from a device on the surviving node.
    const survivors = devices.filter((d) => homes.get(d.user) === 0);
    const sample = victims.slice(0, Math.min(100, victims.length));
    let callsSetUp = 0;
    for (const [k, callee] of sample.entries()) {
      if ((await setup(survivors[k % survivors.length]!, callee)) !== undefined) callsSetUp++;
    }
    failover = {
      devices: victims.length,
      registeredAgain: backMs.length,
      allBackMs: sortedBack.length > 0 ? Math.round(sortedBack.at(-1)!) : null,
      backMsP95: percentile(sortedBack, 95) === null ? null : Math.round(percentile(sortedBack, 95)!),
      callsTried: sample.length,
      callsSetUp,
    };
    say(
      `  ${failover.registeredAgain}/${failover.devices} registered again on n0, the last after ${failover.allBackMs} ms; ${callsSetUp}/${sample.length} calls to them set up`,
    );
  }
  return {
    nodes: nodeCount,
    store: storeKind,
    registered,
    rssMb: rssRegisteredMb,
    rssIdleMb,
    setupsPerSecond: Math.round(times.length / setupS),
    setupMsP50: pct(50),
    setupMsP95: pct(95),
    setupMsP99: pct(99),
    serverCpuSeconds,
    registerSeconds: round1(registerS),
    registerServerCpuSeconds: round1(registerCpuS),
    setupsOffered: offered,
    setupsCompleted: times.length,
    setupsSkippedInFlight: skipped,
    setupPhaseSeconds: round1(setupS),
    setupsPerServerCpuSecond: serverCpuSeconds > 0 ? Math.round(times.length / serverCpuSeconds) : null,
    crossNodeCalls,
    failures: Object.fromEntries(failures),
    ...(failover ? { failover } : {}),
  };
}

if (options.inside) {
  await inside();
  process.exit(0);
} else await outside();
