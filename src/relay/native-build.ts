/**
 * Building sc2c-relayd, the relay's native data plane (issue 23, native/relayd.c): `cc -O2` on first
 * use, into a cache named by the source's hash, so an upgrade builds again and the old build goes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

const SOURCE = new URL('./native/relayd.c', import.meta.url).pathname;

export class NativePlaneUnavailable extends Error {
  constructor(why: string) {
    super(why);
    this.name = 'NativePlaneUnavailable';
  }
}

/**
 * The relayd binary for this source, compiled with `cc -O2` on first use into a cache named by
 * the source's hash (so an upgrade recompiles). Throws `NativePlaneUnavailable` without a compiler.
 */
export function relaydBinary(cacheDir = defaultCacheDir()): string {
  const source = readFileSync(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const binary = join(cacheDir, `sc2c-relayd-${hash}`);
  if (existsSync(binary)) return binary;
  mkdirSync(cacheDir, { recursive: true });
  const building = `${binary}.${process.pid}`;
  try {
    execFileSync('cc', ['-O2', '-o', building, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new NativePlaneUnavailable(
      code === 'ENOENT'
        ? 'no C compiler (cc) to build sc2c-relayd: apt-get install gcc'
        : `cc could not build sc2c-relayd: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`,
    );
  }
  renameSync(building, binary); // atomic: a concurrent start sees the whole binary or none
  // Builds of older sources go (a running one keeps its file until it exits).
  for (const name of readdirSync(cacheDir))
    if (/^sc2c-relayd-[0-9a-f]{16}$/.test(name) && join(cacheDir, name) !== binary)
      rmSync(join(cacheDir, name), { force: true });
  return binary;
}

function defaultCacheDir(): string {
  const nodeModules = join(dirname(SOURCE), '../../../node_modules');
  return existsSync(nodeModules)
    ? join(nodeModules, '.cache/sc2c-gateway')
    : join(homedir(), '.cache/sc2c-gateway');
}
