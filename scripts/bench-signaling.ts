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
    'server nodes (2 needs the Redis store of issue 24)',
    parseInteger('--nodes', 1, 2),
    1,
  )
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
}>();

const fail: (message: string) => never = failer('bench:signaling');

if (options.nodes === 2)
  fail('two nodes need registrations shared through Redis (issue 24), which is not built yet; run --nodes 1');

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

async function inside(): Promise<void> {
  const n = options.registrations;
  const limit = openFileLimit();
  if (n + FD_ROOM > limit)
    fail(
      `${n} devices need ${n + FD_ROOM} open files in the server (one TCP connection each) and here, but this machine allows ${limit} a process (the hard limit; raising it needs CAP_SYS_RESOURCE): ask for at most ${limit - FD_ROOM}`,
    );
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-bench-signaling-'));
  let server: ChildProcess | undefined;
  const devices: Device[] = [];
  const stop = (): void => {
    for (const device of devices) device.client.close();
    server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      stop();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  try {
    const secret = randomBytes(6).toString('hex');
    const password = (i: number): string => `bench-${secret}-${i}`;
    const users = Array.from({ length: n }, (_, i) => `  d${i}: { password: ${password(i)}, callers: any }`);
    writeFileSync(join(dir, 'users.yaml'), `users:\n${users.join('\n')}\n`);
    const [sip, stun] = [await freePort(), await freePort()];
    writeFileSync(
      join(dir, 'server.yaml'),
      `sip:
  listen: { address: 127.0.0.1, port: ${sip} }
  realm: ${DOMAIN}
  usersFile: users.yaml
  maxConnections: ${n + 100}
stun:
  primary: { address: 127.0.0.1, port: ${stun} }
  alternate: { address: 127.0.0.2, port: ${stun + 1} }
`,
    );
    say(
      `signaling benchmark: ${n} devices on one server (${cpus().length} CPUs, ${cpus()[0]?.model ?? 'unknown CPU'}); ${options.setupRate} set-ups/s for ${options.setupS} s`,
    );
    server = spawn(
      process.execPath,
      [BIN, 'server', '--config', join(dir, 'server.yaml'), '--log-level', 'warn'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const pid = server.pid!;
    await waitForTcp(sip, 60_000);
    const rssIdleMb = rssMb(pid);

    // ---- registrations ----------------------------------------------------------------------
    const clock = new SystemClock();
    const node = new NodeNetwork();
    const goes = new Map<string, { count: number; done: () => void }>();
    const answer = (device: Device): void => {
      device.client.on('request', (request, respond) => {
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
    const registerStarted = performance.now();
    const cpuBeforeRegister = cpuSeconds(pid);
    let next = 0;
    let registered = 0;
    const failures = new Map<string, number>();
    const failed = (why: string): void => {
      failures.set(why, (failures.get(why) ?? 0) + 1);
    };
    const progress = setInterval(
      () => say(`  registered ${registered}/${n}, server RSS ${rssMb(pid)} MB`),
      2000,
    );
    await Promise.all(
      Array.from({ length: Math.min(options.concurrency, n) }, async () => {
        while (next < n) {
          const i = next++;
          const localAddress = sourceAddress(i);
          const network: Network = {
            bindUdp: (init) => node.bindUdp(init),
            listen: (init) => node.listen(init),
            connect: (to, init) => node.connect(to, { ...init, localAddress }),
          };
          try {
            const client = await SignalingClient.connect(
              { network, clock },
              {
                server: { address: '127.0.0.1', port: sip },
                domain: DOMAIN,
                user: `d${i}`,
                password: password(i),
                expiresS: options.expiresS,
                keepaliveMs: options.keepaliveS * 1000,
                timeoutMs: 30_000,
              },
            );
            const device = { user: `d${i}`, client };
            devices.push(device);
            answer(device);
            await client.register();
            registered++;
          } catch (error) {
            failed(`register: ${(error as Error).message}`);
          }
        }
      }),
    );
    clearInterval(progress);
    const registerS = (performance.now() - registerStarted) / 1000;
    const registerCpuS = cpuSeconds(pid) - cpuBeforeRegister;
    say(`  ${registered}/${n} registered in ${round1(registerS)} s (server CPU ${round1(registerCpuS)} s)`);
    // Let the server's first round of OPTIONS (it times every connection) pass before measuring.
    await new Promise((r) => setTimeout(r, 3000));
    const rssRegisteredMb = rssMb(pid);
    say(`  server RSS ${rssIdleMb} MB idle, ${rssRegisteredMb} MB with ${registered} registrations`);

    // ---- call set-ups -----------------------------------------------------------------------
    const byUser = new Map(devices.map((d) => [d.user, d]));
    const pairs: [Device, Device][] = [];
    for (let i = 0; i + 1 < n; i += 2) {
      const caller = byUser.get(`d${i}`);
      const callee = byUser.get(`d${i + 1}`);
      if (caller && callee) pairs.push([caller, callee]);
    }
    if (pairs.length === 0) fail('no registered pair of devices to call between');
    const times: number[] = [];
    let inFlight = 0;
    let offered = 0;
    let skipped = 0;
    const setup = async ([caller, callee]: [Device, Device]): Promise<void> => {
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
        times.push(performance.now() - started);
        const bye = await caller.client.request('BYE', uri, [], { callId, toTag });
        if (bye.status !== 200) failed(`BYE ${bye.status}`);
      } catch (error) {
        failed(`set-up: ${(error as Error).message}`);
      } finally {
        goes.delete(callId);
      }
    };
    const cpuBeforeSetups = cpuSeconds(pid);
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
          running.push(
            setup(pair).finally(() => {
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
    const serverCpuSeconds = Math.round((cpuSeconds(pid) - cpuBeforeSetups) * 100) / 100;
    const sorted = [...times].sort((a, b) => a - b);
    const setupsPerSecond = Math.round(times.length / setupS);
    const result = {
      date: new Date().toISOString(),
      commit: gitCommit(),
      nodes: options.nodes,
      registrations: registered,
      rssMb: rssRegisteredMb,
      setupsPerSecond,
      setupMsP50: percentile(sorted, 50) === null ? null : round1(percentile(sorted, 50)!),
      setupMsP95: percentile(sorted, 95) === null ? null : round1(percentile(sorted, 95)!),
      serverCpuSeconds,
      detail: {
        machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, node: process.version },
        placement: 'server and load generator share the machine (loopback, one process each)',
        asked: {
          registrations: n,
          setupRate: options.setupRate,
          setupS: options.setupS,
          keepaliveS: options.keepaliveS,
          expiresS: options.expiresS,
        },
        rssIdleMb,
        registerSeconds: round1(registerS),
        registerServerCpuSeconds: round1(registerCpuS),
        setupsOffered: offered,
        setupsCompleted: times.length,
        setupsSkippedInFlight: skipped,
        setupPhaseSeconds: round1(setupS),
        setupsPerServerCpuSecond: serverCpuSeconds > 0 ? Math.round(times.length / serverCpuSeconds) : null,
        setupMsP99: percentile(sorted, 99) === null ? null : round1(percentile(sorted, 99)!),
        failures: Object.fromEntries(failures),
      },
    };
    if (options.out) writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
    if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else
      process.stdout.write(
        `\n${registered} registrations: server RSS ${rssRegisteredMb} MB (${rssIdleMb} MB idle)\n` +
          `call set-ups: ${setupsPerSecond}/s completed (${times.length} of ${offered} offered), INVITE to both go p50 ${result.setupMsP50} ms, p95 ${result.setupMsP95} ms\n` +
          `server CPU in the set-up phase: ${serverCpuSeconds} s (${result.detail.setupsPerServerCpuSecond ?? '-'} set-ups per server CPU-second)\n` +
          (failures.size > 0 ? `failures: ${JSON.stringify(Object.fromEntries(failures))}\n` : ''),
      );
  } finally {
    stop();
  }
}

if (options.inside) {
  await inside();
  process.exit(0);
} else await outside();
