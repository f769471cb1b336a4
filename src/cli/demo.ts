/**
 * `sc2c demo` (`npm run demo`). The full demo (a call across a PKS NAT and an IPS NAT in the kernel
 * lab, recorded to out/demo.mp4) needs the lab, SC2C and media layers, which are not built yet.
 * Until then it runs what is built, for real: NAT behaviour discovery on the virtual network for
 * the NATs the demo call will cross, and it says so.
 */
import type { Command } from 'commander';
import { loadProfiles } from '../nat/profiles.ts';
import { simulateNatcheck } from '../sim/natcheck.ts';
import { parseInteger } from './errors.ts';
import { formatNatcheckTable } from './sim.ts';

const DEMO_PROFILES = [
  'symmetric-seq1+pks',
  'symmetric-seq1+ips',
  'port-restricted-cone',
  'symmetric-random',
];

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'run the end-to-end demo (today: NAT discovery on the virtual network; the lab call is not built yet)',
    )
    .option('--seed <n>', 'seed for the virtual network', parseInteger('--seed', 0, 2 ** 32 - 1), 1)
    .option('--json', 'print machine-readable results')
    .action(async (options: { seed: number; json?: boolean }) => {
      const catalog = loadProfiles();
      const results = [];
      for (const spec of DEMO_PROFILES) {
        results.push(
          await simulateNatcheck({ profile: spec, behaviour: catalog.resolve(spec), seed: options.seed }),
        );
      }
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({ built: ['virtual-network', 'nat-model', 'natcheck'], natcheck: results }, null, 2)}\n`,
        );
      } else {
        process.stdout.write(
          [
            'sc2c demo',
            '',
            'Not built yet: the kernel lab, SC2C signaling and punching, media and relay (issues 3-6).',
            'So there is no call, no out/demo.mp4 and no out/demo.json yet.',
            '',
            'What runs today, for real: black-box discovery of the NATs the demo call will cross, on the',
            'deterministic virtual network (STUN tests, knocks, a looped-back exchange, a closed helper port):',
            '',
            formatNatcheckTable(results),
          ].join('\n'),
        );
      }
      if (results.some((r) => !r.match)) process.exitCode = 1;
    });
}
