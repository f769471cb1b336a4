/**
 * Issue 24's server settings from the command line: every bad store, node id or cluster setting is
 * a one-line error (exit 2) before anything listens, and an unreachable Redis says where it looked.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';

const run = promisify(execFile);
const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;
const CONFIG = new URL('../../config/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'sc2c-cluster-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `sc2c server` on the shipped config plus `extra`; `outside` moves its STUN addresses out of the lab range. */
async function server(
  extra: string,
  args: string[] = [],
  outside = false,
): Promise<{ code: number; stderr: string }> {
  const path = join(dir, `server-${Math.random().toString(36).slice(2)}.yaml`);
  const base = readFileSync(join(CONFIG, 'server.yaml'), 'utf8')
    .replace('usersFile: users.yaml', `usersFile: ${join(CONFIG, 'users.yaml')}`)
    .replace(/^admin:\n.*\n/m, '')
    .replace(outside ? /198\.18\.0\.1[01]/g : /^$/, '127.0.0.1');
  writeFileSync(path, `${base}\n${extra}\n`);
  try {
    await run(process.execPath, [BIN, 'server', '--config', path, ...args], { timeout: 30_000 });
    return { code: 0, stderr: '' };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe('sc2c server: store, node and cluster settings (issue 24)', () => {
  it('refuses a bad --store and --node with exit 2 and says what is allowed', async () => {
    const store = await server('', ['--store', 'mysql://x']);
    expect(store.code).toBe(2);
    expect(store.stderr).toMatch(
      /--store must be 'memory' or redis:\/\/host\[:port\]\[\/db\] \(rediss:\/\/ for TLS\); got 'mysql:\/\/x'/,
    );
    const node = await server('', ['--node', 'Node_A']);
    expect(node.code).toBe(2);
    expect(node.stderr).toMatch(/--node must be lower-case letters, digits and '-'/);
  });

  it('refuses a cluster without a shared store, or with a short secret', async () => {
    const memory = await server('cluster: { secret: a-long-enough-cluster-secret }');
    expect(memory.code).toBe(2);
    expect(memory.stderr).toMatch(/cluster: section but store is memory/);
    const short = await server('cluster: { secret: short }', ['--store', 'redis://127.0.0.1:1']);
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/at least 16 characters/);
  });

  it('refuses the shipped placeholder cluster secret outside the lab', async () => {
    // The shipped STUN addresses moved out of the lab range (198.18.0.0/15): a host of its own.
    const outside = await server(
      'cluster: { secret: change-me-to-16+-chars }',
      ['--store', 'redis://127.0.0.1:1'],
      true,
    );
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/still has the shipped placeholder for [^\n]*cluster\.secret/);
  });

  it('names the store it could not reach, without a password in the URL', async () => {
    const port = await freePort();
    const { code, stderr } = await server('', ['--store', `redis://:hunter2-secret@127.0.0.1:${port}`]);
    expect(code).toBe(2);
    expect(stderr).toMatch(
      new RegExp(
        `cannot reach the store at redis://\\*\\*\\*@127\\.0\\.0\\.1:${port} \\(connect ECONNREFUSED`,
      ),
    );
    expect(stderr).not.toMatch(/hunter2/);
  });
});
