/** The `sc2c` command line: the composition root for every subcommand. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerReport } from './accounting.ts';
import { registerCall } from './call.ts';
import { registerClip } from './clip.ts';
import { registerConsole } from './console.ts';
import { registerDemo } from './demo.ts';
import { isUserError } from './errors.ts';
import { RuntimeFailure } from './failures.ts';
import { registerGateway } from './gateway.ts';
import { registerInit } from './init.ts';
import { registerLab } from './lab.ts';
import { registerServer } from './server.ts';
import { registerSim } from './sim.ts';
import { registerUdp } from './udp.ts';

const program = new Command()
  .name('sc2c')
  .description(
    'sc2c-gateway: camera and video-phone media directly across NATs (including PKS and IPS NATs) with the SC2C protocol',
  )
  .showHelpAfterError(true)
  .exitOverride();

registerInit(program);
registerSim(program);
registerLab(program);
registerUdp(program);
registerServer(program);
registerGateway(program);
registerCall(program);
registerConsole(program);
registerDemo(program);
registerClip(program);
registerReport(program);

// `--version` on every command, not only the root: `sc2c gateway --version` is where people look.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
const withVersion = (command: Command): void => {
  command.version(version, '-V, --version', 'print the sc2c version');
  for (const sub of command.commands) withVersion(sub);
};
withVersion(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander has already printed the message (and help, for misuse).
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (isUserError(error)) {
    process.stderr.write(`sc2c: ${error.message}\n`);
    process.exitCode = 2;
  } else if (error instanceof RuntimeFailure) {
    process.stderr.write(`sc2c: ${error.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(
      `sc2c: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  }
}
