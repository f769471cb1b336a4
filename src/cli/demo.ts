/**
 * `sc2c demo` (`npm run demo`). The full demo (a call across a PKS NAT and an IPS NAT in the kernel
 * lab, recorded to out/demo.mp4) needs the SC2C and media layers, which are not built yet. Until
 * then it runs what is built, for real, and says so: NAT behaviour discovery for the NATs the demo
 * call will cross, with real sockets in the kernel lab when this machine allows it, and on the
 * virtual network otherwise.
 */
import type { Command } from 'commander';
import { labNatcheck } from '../lab/natcheck.ts';
import { checkLabPrerequisites } from '../lab/netns.ts';
import { loadProfiles } from '../nat/profiles.ts';
import { simulateNatcheck } from '../sim/natcheck.ts';
import type { NatcheckResult } from '../traversal/natcheck/observation.ts';
import { parseInteger } from './errors.ts';
import { formatNatcheckTable } from './sim.ts';

const DEMO_PROFILES = ['symmetric-seq1+pks', 'symmetric-seq1+ips'];

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      "run the end-to-end demo (today: discovery of the demo call's NATs; the call itself is not built yet)",
    )
    .option('--seed <n>', 'seed for the virtual network', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option('--virtual', 'use the virtual network even where the kernel lab is available')
    .option('--json', 'print machine-readable results')
    .action(async (options: { seed: number; virtual?: boolean; json?: boolean }) => {
      const catalog = loadProfiles();
      let where = 'kernel lab (real sockets in network namespaces)';
      let whyVirtual: string | undefined;
      if (options.virtual) whyVirtual = '--virtual was given';
      else {
        try {
          await checkLabPrerequisites();
        } catch (error) {
          whyVirtual = (error as Error).message;
        }
      }
      let results: NatcheckResult[];
      if (whyVirtual) {
        where = `virtual network (the kernel lab is not used: ${whyVirtual})`;
        results = [];
        for (const spec of DEMO_PROFILES) {
          results.push(
            await simulateNatcheck({ profile: spec, behaviour: catalog.resolve(spec), seed: options.seed }),
          );
        }
      } else {
        results = await labNatcheck({
          specs: DEMO_PROFILES,
          catalog,
          kernel: false,
          onProgress: options.json ? undefined : (line) => process.stderr.write(`${line}\n`),
        });
      }
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({ built: ['virtual-network', 'nat-model', 'natcheck', 'kernel-lab'], where, natcheck: results }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(
          [
            'sc2c demo',
            '',
            'Not built yet: SC2C signaling and punching, media and relay (issues 4-6), so there is no call,',
            'no out/demo.mp4 and no out/demo.json yet.',
            '',
            `What runs today, for real, on the ${where}:`,
            'black-box discovery of the two NATs the demo call will cross (STUN tests, knocks, a',
            'looped-back exchange, a closed helper port):',
            '',
            formatNatcheckTable(results),
          ].join('\n'),
        );
      }
      if (results.some((r) => !r.match)) process.exitCode = 1;
    });
}
