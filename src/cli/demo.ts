/**
 * `sc2c demo` (`npm run demo`): the product's main job, as far as it is built. It brings up the
 * kernel lab (a symmetric-seq1+pks NAT facing a symmetric-seq1+ips NAT, 40 ms RTT, the server on
 * the public side), runs `sc2c server`, a callee gateway and a caller, and places one SC2C call and,
 * for contrast, one call with the paper's unsynchronized C2C. Where namespaces cannot be created it
 * runs the same server and gateway code on the virtual network and says so. Media (ffmpeg, the
 * recording and out/demo.json) is not built yet, and the demo says that too.
 */
import type { Command } from 'commander';
import { type CallSummary, runLabCalls } from '../lab/calls.ts';
import { checkLabPrerequisites } from '../lab/netns.ts';
import { loadProfiles } from '../nat/profiles.ts';
import { cellSeed, runMatrixCell } from '../sim/matrix.ts';
import { parseInteger } from './errors.ts';

interface DemoOptions {
  natA: string;
  natB: string;
  rttMs: number;
  virtual?: boolean;
  json?: boolean;
}

interface DemoCall {
  readonly mode: string;
  readonly ok: boolean;
  readonly setupMs: number | null;
  readonly reason?: string;
  readonly path?: string;
}

function fromLab(summary: CallSummary): DemoCall {
  return {
    mode: summary.mode,
    ok: summary.ok,
    setupMs: summary.setupMs,
    reason: summary.reason,
    path:
      summary.path && summary.local
        ? `${summary.local.publicEndpoint.address}:${summary.local.publicEndpoint.port} <-> ${summary.path.remote.address}:${summary.path.remote.port}`
        : undefined,
  };
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'place a real SC2C call (and a C2C call for contrast) between two NATs in the kernel lab; media is not built yet',
    )
    .option('--nat-a <profile>', 'the caller NAT', 'symmetric-seq1+pks')
    .option('--nat-b <profile>', 'the callee NAT', 'symmetric-seq1+ips')
    .option('--rtt-ms <n>', 'round trip between the two NATs', parseInteger('--rtt-ms', 0, 2000), 40)
    .option('--virtual', 'use the virtual network even where the kernel lab is available')
    .option('--json', 'print machine-readable results')
    .action(async (options: DemoOptions) => {
      const catalog = loadProfiles();
      catalog.resolve(options.natA);
      catalog.resolve(options.natB);
      let whyVirtual: string | undefined = options.virtual ? '--virtual was given' : undefined;
      if (!whyVirtual) {
        try {
          await checkLabPrerequisites();
        } catch (error) {
          whyVirtual = (error as Error).message;
        }
      }
      const say = (line: string): void => {
        if (!options.json) process.stderr.write(`${line}\n`);
      };
      const calls: DemoCall[] = [];
      let where: string;
      if (!whyVirtual) {
        where = 'kernel lab: real processes in network namespaces, real sockets';
        say(
          `bringing up the lab: ${options.natA} (caller) facing ${options.natB} (callee), ${options.rttMs} ms RTT...`,
        );
        const runs = await runLabCalls({
          natA: options.natA,
          natB: options.natB,
          rttMs: options.rttMs,
          modes: ['sc2c', 'c2c'],
          callsPerMode: 1,
          name: `demo${process.pid % 10_000}`,
        });
        for (const mode of ['sc2c', 'c2c']) calls.push(fromLab(runs[mode]![0]!));
      } else {
        where = `virtual network, because the kernel lab cannot run here (${whyVirtual})`;
        for (const mode of ['sc2c', 'c2c'] as const) {
          let reason: string | undefined;
          const cell = await runMatrixCell({
            calling: { name: options.natA, behaviour: catalog.resolve(options.natA) },
            called: { name: options.natB, behaviour: catalog.resolve(options.natB) },
            mode,
            trials: 1,
            oneWayMs: [options.rttMs / 4, options.rttMs / 4],
            backgroundPerSecond: 0,
            seed: cellSeed(1, options.natA, options.natB, mode),
            onFailure: (_t, caller, callee) => {
              reason = caller.reason ?? callee?.reason;
            },
          });
          calls.push({ mode, ok: cell.successes === 1, setupMs: cell.setupMsP50, reason });
        }
      }
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({ where, natA: options.natA, natB: options.natB, rttMs: options.rttMs, calls, notBuilt: ['media (ffmpeg H.264 over RTP/RTCP, recording)', 'relay fallback (TURN)'] }, null, 2)}\n`,
        );
      } else {
        const lines = [
          `sc2c demo on the ${where}`,
          `${options.natA} (caller) -> ${options.natB} (callee), ${options.rttMs} ms RTT`,
          '',
        ];
        for (const call of calls) {
          const label =
            call.mode === 'sc2c' ? 'SC2C (synchronized)' : "C2C (the paper's unsynchronized baseline)";
          lines.push(
            call.ok
              ? `  ${label}: direct path ${call.path ? `${call.path} ` : ''}confirmed in ${call.setupMs} ms`
              : `  ${label}: no direct path: ${call.reason?.replace(/^no direct path: /, '')}`,
          );
        }
        lines.push(
          '',
          'Not built yet: media (ffmpeg H.264 over the punched RTP/RTCP pair, out/demo.mp4, out/demo.json)',
          'and the relay fallback; the calls hang up once the direct path is confirmed.',
          '',
        );
        process.stdout.write(lines.join('\n'));
      }
      if (!calls[0]?.ok) process.exitCode = 1;
    });
}
