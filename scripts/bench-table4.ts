/**
 * `npm run bench:table4 -- [--trials N] [--json] [--out DIR]`: the SC2C paper's Table 4 with real
 * processes in the kernel lab, and a standard ICE agent (werift-ice) on the same NAT pairs in the
 * same run.
 *
 * Calling and called NATs each take {Others, IPS, PKS}: Others is symmetric-seq1 (neither PKS nor
 * IPS), IPS and PKS are symmetric-seq1+ips / +pks. Every one of the nine cells has its own NAT pair
 * (18 userspace NATs, one host behind each), so cells run side by side without one cell's sessions
 * moving another's ports. Per cell: N calls with SC2C, N with C2C (`sc2c call --repeat N`, no
 * media, no relay), then N ICE sessions between werift-ice agents using our STUN server.
 *
 * Writes DIR/table4.json ({config, cells: [{calling, called, mode, successes, trials, paperRate,
 * ...}]}), DIR/table4.txt (the paper's layout, ours beside the paper's), DIR/table4.svg and
 * DIR/table4.png (heatmap). Progress goes to stderr every few seconds. Needs root.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { parseInteger } from '../src/cli/errors.ts';
import { type HostProcess, spawnInHost, waitForOutput } from '../src/lab/host-process.ts';
import { startLab, stopLab } from '../src/lab/instances.ts';
import { checkLabPrerequisites } from '../src/lab/netns.ts';
import type { Scenario } from '../src/lab/scenario.ts';
import { locateFfmpeg } from '../src/media/ffmpeg.ts';
import { loadProfiles } from '../src/nat/profiles.ts';
import { percentile } from '../src/util/stats.ts';
import {
  formatTable4,
  KINDS,
  type Kind,
  type Mode,
  PAPER_TABLE4,
  type Table4Cell,
  table4Svg,
  writeHeatmap,
} from './table4-report.ts';

const CONFIG = fileURLToPath(new URL('../config/', import.meta.url));
const ICE_AGENT = fileURLToPath(new URL('./ice-agent.ts', import.meta.url));
/** The paper's Table 4 NATs as we model them; `--base` swaps the NAT type under PKS and IPS. */
const PAPER_BASE = 'symmetric-seq1';

const options = new Command('bench:table4')
  .option('--trials <n>', 'calls per cell and mode', parseInteger('--trials', 1, 10_000), 100)
  .option('--rtt-ms <n>', 'round trip between the two NATs', parseInteger('--rtt-ms', 0, 2000), 40)
  .option('--asymmetric <a,b>', 'one-way delays of the calling and called NAT uplinks instead, e.g. 10,150')
  .option('--modes <list>', 'sc2c, c2c and/or ice', 'sc2c,c2c,ice')
  .option('--parallel <n>', 'cells run at once (each has its own NATs)', parseInteger('--parallel', 1, 9), 9)
  .option('--gap-ms <n>', 'pause between calls of a cell', parseInteger('--gap-ms', 0, 10_000), 200)
  .option(
    '--base <profile>',
    `NAT profile of Others, and under +ips / +pks (the paper's cells: ${PAPER_BASE}; another base shows no paper figures)`,
    PAPER_BASE,
  )
  .option('--out <dir>', 'where table4.json/.txt/.svg/.png go', 'out/table4')
  .option('--json', 'print table4.json to stdout')
  .option(
    '--insecure-media',
    'calls without DTLS-SRTP at both ends (plain RTP), to measure what the handshake adds to set-up',
  )
  .parse()
  .opts<{
    trials: number;
    rttMs: number;
    asymmetric?: string;
    modes: string;
    parallel: number;
    gapMs: number;
    base: string;
    out: string;
    json?: boolean;
    insecureMedia?: boolean;
  }>();
/** Every successful call's set-up time, per mode, across cells. */
const setupsByMode = new Map<Mode, number[]>();
/** Passed to every caller and callee: the DTLS handshake is part of set-up unless turned off. */
const securityArgs = options.insecureMedia ? ['--insecure-media'] : [];

const modes = options.modes.split(',').map((m) => m.trim()) as Mode[];
for (const mode of modes)
  if (!['sc2c', 'c2c', 'ice'].includes(mode))
    throw new Error(`unknown mode '${mode}' in --modes (sc2c, c2c, ice)`);
const oneWayMs: [number, number] = options.asymmetric
  ? (options.asymmetric.split(',').map(Number) as [number, number])
  : [options.rttMs / 4, options.rttMs / 4];
if (oneWayMs.length !== 2 || oneWayMs.some((v) => !(v >= 0 && v <= 5000)))
  throw new Error(`--asymmetric takes two one-way delays in ms, e.g. 10,150; got '${options.asymmetric}'`);

const PROFILE: Record<Kind, string> = {
  Others: options.base,
  IPS: `${options.base}+ips`,
  PKS: `${options.base}+pks`,
};
for (const profile of Object.values(PROFILE)) loadProfiles().resolve(profile);

const cellsPlan = KINDS.flatMap((calling) => KINDS.map((called) => ({ calling, called })));
const say = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function scenario(): Scenario {
  const nats = cellsPlan.flatMap(({ calling, called }, k) =>
    (['a', 'b'] as const).map((side) => {
      const n = 2 * k + (side === 'a' ? 1 : 2);
      return {
        name: `n${k}${side}`,
        profile: PROFILE[side === 'a' ? calling : called],
        publicAddress: `198.18.${n}.1`,
        lan: `10.0.${n}.0/24`,
        link: { latencyMs: side === 'a' ? oneWayMs[0] : oneWayMs[1] },
        hosts: [{ name: `${side}${k}`, address: `10.0.${n}.2` }],
      };
    }),
  );
  return {
    description: 'bench:table4: a NAT pair per cell',
    server: { addresses: ['198.18.0.10', '198.18.0.11'] },
    nats,
    hosts: [],
    run: [],
  };
}

interface CallLine {
  ok: boolean;
  setupMs: number | null;
  attempts?: number;
  reason?: string;
}

/** Counts for the progress line. */
const progress = { done: 0, total: cellsPlan.length * modes.length * options.trials, ok: 0 };

function tally(
  calling: Kind,
  called: Kind,
  mode: Mode,
  results: readonly { ok: boolean; setupMs: number | null; attempts?: number; reason?: string }[],
): Table4Cell {
  const setups = results
    .filter((r) => r.ok && r.setupMs !== null)
    .map((r) => r.setupMs!)
    .sort((a, b) => a - b);
  setupsByMode.set(mode, [...(setupsByMode.get(mode) ?? []), ...setups]);
  const failures: Record<string, number> = {};
  for (const r of results.filter((r) => !r.ok)) {
    const reason = (r.reason ?? 'unknown').replace(/\d+(\.\d+)*(:\d+)?/g, 'N').slice(0, 100);
    failures[reason] = (failures[reason] ?? 0) + 1;
  }
  return {
    calling,
    called,
    mode,
    successes: results.filter((r) => r.ok).length,
    trials: results.length,
    paperRate: mode === 'ice' || options.base !== PAPER_BASE ? null : PAPER_TABLE4[calling][called][mode],
    firstAttemptSuccesses: results.filter((r) => r.ok && (r.attempts ?? 1) === 1).length,
    setupMsP50: setups.length ? percentile(setups, 50) : null,
    setupMsP95: setups.length ? percentile(setups, 95) : null,
    failures,
  };
}

/** `sc2c call --repeat` for one cell and mode; each JSON line is one call. */
async function sipCalls(
  host: string,
  callee: string,
  k: number,
  mode: 'sc2c' | 'c2c',
  gatewayConfig: string,
) {
  const caller = spawnInHost(host, [
    'call',
    callee,
    '--config',
    gatewayConfig,
    '--user',
    `a${k}`,
    '--password',
    `a${k}-bench-secret`,
    '--mode',
    mode,
    '--repeat',
    String(options.trials),
    '--gap-ms',
    String(options.gapMs),
    '--no-media',
    '--no-relay',
    ...securityArgs,
    '--json',
  ]);
  const results: CallLine[] = [];
  let partial = '';
  let stderr = '';
  caller.stdout.on('data', (d) => {
    const lines = (partial + String(d)).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const result = JSON.parse(line) as CallLine;
      results.push(result);
      progress.done++;
      if (result.ok) progress.ok++;
    }
  });
  caller.stderr.on('data', (d) => {
    stderr += d;
  });
  await new Promise((r) => caller.on('exit', r));
  if (results.length === 0)
    throw new Error(`sc2c call in ${host} printed nothing: ${stderr.trim().slice(0, 300)}`);
  return results;
}

type Agent = ChildProcessByStdio<Writable, Readable, Readable>;

/** What scripts/ice-agent.ts answers: an offer after gather, a result after connect. */
interface AgentAnswer {
  ufrag?: string;
  pwd?: string;
  candidates?: string[];
  ok?: boolean;
  connectedMs?: number;
  reason?: string;
}

function startAgent(
  namespace: string,
  controlling: boolean,
): { ask: (m: unknown) => Promise<AgentAnswer>; agent: Agent } {
  const agent = spawn(
    'ip',
    [
      'netns',
      'exec',
      namespace,
      process.execPath,
      '--import',
      'tsx',
      ICE_AGENT,
      '--stun',
      '198.18.0.10:3478',
      '--timeout-ms',
      '3000',
      ...(controlling ? ['--controlling'] : []),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], cwd: resolve(CONFIG, '..') },
  );
  const waiting: ((v: AgentAnswer) => void)[] = [];
  let partial = '';
  agent.stdout.on('data', (d) => {
    const lines = (partial + String(d)).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) waiting.shift()?.(JSON.parse(line));
  });
  return {
    agent,
    ask: (message) =>
      new Promise((resolveAnswer, reject) => {
        const timer = setTimeout(() => reject(new Error('the ICE agent did not answer within 20 s')), 20_000);
        waiting.push((v) => {
          clearTimeout(timer);
          resolveAnswer(v);
        });
        agent.stdin.write(`${JSON.stringify(message)}\n`);
      }),
  };
}

/** N ICE sessions between agents in the cell's two hosts, offers relayed at once. */
async function iceSessions(callerNs: string, calleeNs: string) {
  const a = startAgent(callerNs, true);
  const b = startAgent(calleeNs, false);
  const results: { ok: boolean; setupMs: number | null; reason?: string }[] = [];
  try {
    for (let i = 0; i < options.trials; i++) {
      const [offerA, offerB] = await Promise.all([a.ask({ cmd: 'gather' }), b.ask({ cmd: 'gather' })]);
      const [ra, rb] = await Promise.all([
        a.ask({ cmd: 'connect', remote: offerB }),
        b.ask({ cmd: 'connect', remote: offerA }),
      ]);
      const ok = Boolean(ra.ok && rb.ok);
      results.push({
        ok,
        setupMs: ok ? Math.max(ra.connectedMs ?? 0, rb.connectedMs ?? 0) : null,
        reason: ok ? undefined : (ra.reason ?? rb.reason),
      });
      progress.done++;
      if (ok) progress.ok++;
      await new Promise((r) => setTimeout(r, options.gapMs));
    }
  } finally {
    for (const { agent } of [a, b]) {
      agent.stdin.end();
      agent.kill('SIGTERM');
    }
  }
  return results;
}

async function main(): Promise<void> {
  await checkLabPrerequisites();
  const out = resolve(options.out);
  mkdirSync(out, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-table4-'));
  const users = Object.fromEntries(
    cellsPlan.flatMap((_, k) => [
      [`a${k}`, `a${k}-bench-secret`],
      // Cell k's callee takes calls from its caller only.
      [`b${k}`, { password: `b${k}-bench-secret`, callers: [`a${k}`] }],
    ]),
  );
  const serverConfig = join(dir, 'server.yaml');
  writeFileSync(
    serverConfig,
    stringify({
      sip: { listen: { address: '0.0.0.0', port: 5060 }, realm: 'sc2c.lab', users },
      stun: {
        primary: { address: '198.18.0.10', port: 3478 },
        alternate: { address: '198.18.0.11', port: 3479 },
      },
    }),
  );
  const gatewayConfig = join(dir, 'gateway.yaml');
  writeFileSync(
    gatewayConfig,
    readFileSync(join(CONFIG, 'gateway.yaml'), 'utf8')
      .replace('publish: true', 'publish: false')
      .replace('spoolFile: ../var/spool-{user}.jsonl', `spoolFile: ${join(dir, 'spool-{user}.jsonl')}`),
  );
  const scenarioPath = join(dir, 'table4.yaml');
  writeFileSync(scenarioPath, stringify(scenario()));
  const started = performance.now();
  say(
    `bench:table4: ${cellsPlan.length} cells x ${modes.join('/')} x ${options.trials} trials, one-way ${oneWayMs.join('/')} ms, ${options.parallel} cells at once, on ${cpus().length} CPUs`,
  );
  const state = await startLab({ scenarioPath, scenario: scenario(), name: `t4${process.pid % 10_000}` });
  const children: HostProcess[] = [];
  const ticker = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    const rate = progress.done / s;
    const eta = rate > 0 ? (progress.total - progress.done) / rate : Number.NaN;
    say(
      `  ${progress.done}/${progress.total} trials, ${progress.ok} direct, ${Math.round(s)} s elapsed${Number.isFinite(eta) ? `, about ${Math.round(eta)} s left` : ''}`,
    );
  }, 5000);
  const cells: Table4Cell[] = [];
  try {
    const server = spawnInHost(state.hosts.server!, ['server', '--config', serverConfig]);
    children.push(server);
    await waitForOutput(server, /sc2c server:/, 'sc2c server');
    await Promise.all(
      cellsPlan.map(async (_, k) => {
        const callee = spawnInHost(state.hosts[`b${k}`]!, [
          'gateway',
          '--config',
          gatewayConfig,
          '--user',
          `b${k}`,
          '--password',
          `b${k}-bench-secret`,
          '--no-relay',
          '--no-send',
          ...securityArgs,
          '--json',
        ]);
        children.push(callee);
        await waitForOutput(callee, /"event":"registered"/, `callee gateway b${k}`, 120_000);
      }),
    );
    say('  lab, server and 9 callee gateways up');
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cellsPlan.length) {
        const k = next++;
        const { calling, called } = cellsPlan[k]!;
        for (const mode of modes) {
          const results =
            mode === 'ice'
              ? await iceSessions(state.hosts[`a${k}`]!, state.hosts[`b${k}`]!)
              : await sipCalls(state.hosts[`a${k}`]!, `b${k}`, k, mode, gatewayConfig);
          const cell = tally(calling, called, mode, results);
          cells.push(cell);
          say(`  ${calling} -> ${called} ${mode}: ${cell.successes}/${cell.trials}`);
        }
      }
    };
    await Promise.all(Array.from({ length: options.parallel }, worker));
  } finally {
    clearInterval(ticker);
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await stopLab(state);
    rmSync(dir, { recursive: true, force: true });
  }
  const order = (c: Table4Cell): number =>
    KINDS.indexOf(c.calling) * 100 + KINDS.indexOf(c.called) * 10 + modes.indexOf(c.mode);
  cells.sort((a, b) => order(a) - order(b));
  const elapsedS = Math.round((performance.now() - started) / 1000);
  const report = {
    benchmark: 'SC2C paper Table 4 in the kernel lab, with a standard ICE agent beside it',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, node: process.version },
    config: {
      trials: options.trials,
      oneWayMs,
      rttMs: 2 * (oneWayMs[0] + oneWayMs[1]),
      modes,
      profiles: PROFILE,
      parallel: options.parallel,
      gapMs: options.gapMs,
      // SIP calls' set-up includes the DTLS handshake unless this says none.
      encryption: options.insecureMedia ? 'none' : 'DTLS-SRTP',
      ice: 'werift-ice 0.2.3, STUN 198.18.0.10:3478, host + server-reflexive candidates, 3000 ms to connect',
      // What reproduces this run: every option as given.
      command: ['npm run bench:table4 --', ...process.argv.slice(2)].join(' '),
    },
    elapsedS,
    /** Set-up of every successful call of a mode, all cells together: the DTLS cost shows here. */
    setup: Object.fromEntries(
      modes.map((mode) => {
        const all = [...(setupsByMode.get(mode) ?? [])].sort((a, b) => a - b);
        return [
          mode,
          {
            calls: all.length,
            p50Ms: all.length ? percentile(all, 50) : null,
            p95Ms: all.length ? percentile(all, 95) : null,
          },
        ];
      }),
    ),
    cells,
  };
  const text = formatTable4(cells, modes);
  writeFileSync(join(out, 'table4.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(out, 'table4.txt'), text);
  const why = await writeHeatmap(
    table4Svg(
      cells,
      modes,
      `Table 4 in the lab: ${options.trials} trials per cell, RTT ${report.config.rttMs} ms`,
    ),
    join(out, 'table4.svg'),
    join(out, 'table4.png'),
    locateFfmpeg().path,
  );
  if (why) say(`  ${why}`);
  if (options.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const setups = Object.entries(report.setup)
      .map(([mode, s]) => `${mode} p50 ${s.p50Ms ?? '-'} ms, p95 ${s.p95Ms ?? '-'} ms (${s.calls} calls)`)
      .join('; ');
    process.stdout.write(
      `\n${text}\nset-up (${report.config.encryption}): ${setups}\nfinished in ${elapsedS} s; results in ${out}\n`,
    );
  }
}

main().catch((error) => {
  process.stderr.write(`bench:table4: ${(error as Error).message}\n`);
  process.exitCode = 2;
});
