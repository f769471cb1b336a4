/**
 * `sc2c server` with the native data plane (issue 23), as real processes on loopback: sc2c-relayd
 * runs as the server's child; the server stops (status 1, said why) when relayd dies, since the
 * STUN and TURN sockets die with it; relayd ends when the server is killed outright; and
 * `turn.dataPlane` is checked at start-up.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';
import { loopbackConfigs, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-relay-plane-');

async function config(dataPlane: string): Promise<string> {
  const [sip, stun] = [await freePort(), await freePort()];
  return loopbackConfigs(dir, { sip, stun }, '    alice: { password: alice-plane-pass-1 }', {
    server: `turn:\n  allowedPeers: [127.0.0.0/8]\n  dataPlane: ${dataPlane}\n`,
    gateway: '',
  }).server;
}

function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

function commandOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
}

/** Gone, or a zombie waiting for whoever inherited it. */
function ended(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return true;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

async function relaydOf(serverPid: number): Promise<number> {
  let pid: number | undefined;
  await until('sc2c-relayd', () => {
    pid = childrenOf(serverPid).find((child) => /sc2c-relayd/.test(commandOf(child)));
    return pid !== undefined;
  });
  return pid!;
}

describe('sc2c server and sc2c-relayd (issue 23)', () => {
  it('stops, saying why, when relayd dies', async () => {
    const server = await startServer(sc2c, await config('native'));
    expect(server.err()).toMatch(/native data plane \(sc2c-relayd\)/);
    process.kill(await relaydOf(server.child.pid!), 'SIGKILL');
    expect((await server.exited).code).toBe(1);
    expect(server.err()).toMatch(
      /sc2c-relayd exited \(SIGKILL\): the STUN and TURN sockets went with it; stopping/,
    );
  });

  it('takes relayd with it when killed outright', async () => {
    const server = await startServer(sc2c, await config('auto'));
    const relayd = await relaydOf(server.child.pid!);
    server.child.kill('SIGKILL');
    await server.exited;
    // Its input closes with the server: relayd reads the end and exits.
    await until('relayd to end', () => ended(relayd), 5000);
  });

  it('forwards in Node with dataPlane: node, and refuses an unknown data plane', async () => {
    const server = await startServer(sc2c, await config('node'));
    expect(server.err()).toMatch(/data plane in Node \(turn\.dataPlane: node\)/);
    expect(childrenOf(server.child.pid!).filter((child) => /sc2c-relayd/.test(commandOf(child)))).toEqual([]);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    const bad = sc2c(['server', '--config', await config('fast')]);
    expect((await bad.exited).code).not.toBe(0);
    expect(bad.err()).toMatch(/dataPlane/);
  });
});
