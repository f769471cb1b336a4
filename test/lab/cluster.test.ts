/**
 * Issue 24 in the kernel lab: two server nodes on two hosts of the lab's internet, sharing Redis
 * (Debian's redis-server, in the first server host's namespace). A viewer registered on node A
 * calls a camera registered on node B: the call goes over the nodes' link and the media direct.
 * Then node B is killed (SIGKILL): the camera's gateway, given both nodes, registers on A, and the
 * viewer calls it again there, the camera now probing A's STUN server instead of dead B's.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { twoNatScenario } from '../../src/lab/calls.ts';
import {
  type HostProcess,
  spawnInHost,
  stopHostProcesses,
  waitForOutput,
} from '../../src/lab/host-process.ts';
import { startLab, stopLab } from '../../src/lab/instances.ts';
import { type RunningRedis, startRedis } from '../../src/lab/redis.ts';
import { labUnavailable } from './support.ts';

const run = promisify(execFile);
const unavailable = await labUnavailable();
const CONFIG = fileURLToPath(new URL('../../config/', import.meta.url));
const NODE_A = '198.18.0.10';
const NODE_B = '198.18.0.20';
const SECRET = 'lab-cluster-secret-0123456789';

/** The shipped server config, made node `node` of a two-node cluster on `address`. */
function nodeConfig(dir: string, node: 'a' | 'b', address: string): string {
  const config = parse(readFileSync(join(CONFIG, 'server.yaml'), 'utf8')) as {
    sip: { usersFile: string };
    turn: { relayAddress: string };
    [key: string]: unknown;
  };
  config.sip.usersFile = join(CONFIG, 'users.yaml');
  config.store = `redis://${NODE_A}:6379`;
  config.node = node;
  config.cluster = { secret: SECRET, advertise: { address, port: 5060 } };
  config.accounting = { file: join(dir, `calls-${node}.jsonl`) };
  if (node === 'b') {
    // A host with one address, its own STUN and relay (each node runs its own).
    config.stun = { primary: { address, port: 3478 }, alternate: { address, port: 3479 } };
    config.turn.relayAddress = address;
  }
  const path = join(dir, `server-${node}.yaml`);
  writeFileSync(path, stringify(config));
  return path;
}

/** Lines of JSON a child printed, as they come. */
function events(child: HostProcess): Record<string, unknown>[] {
  const seen: Record<string, unknown>[] = [];
  let buffer = '';
  child.stdout.on('data', (d) => {
    buffer += d;
    const lines = buffer.split('\n');
    buffer = lines.pop()!;
    for (const line of lines)
      try {
        seen.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON: a human line
      }
  });
  return seen;
}

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(unavailable)('two server nodes sharing Redis (kernel lab, issue 24)', () => {
  it('a viewer on node A calls a camera on node B (media direct); node B is killed and the camera is callable through A', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-cluster-'));
    const scenario = {
      ...twoNatScenario('symmetric-seq1+ips', 'symmetric-seq1+pks', 40),
      hosts: [{ name: 'server2', address: NODE_B }],
    };
    const scenarioPath = join(dir, 'lab.yaml');
    writeFileSync(scenarioPath, stringify(scenario));
    const state = await startLab({ scenarioPath, scenario, name: `cl${process.pid % 10_000}` });
    const children: HostProcess[] = [];
    let redis: RunningRedis | undefined;
    const registrationOf = async (user: string) => {
      const { stdout } = await run('ip', [
        'netns',
        'exec',
        state.hosts.server!,
        'redis-cli',
        '-h',
        NODE_A,
        'get',
        `sc2c:reg:${user}`,
      ]);
      return stdout.trim() ? (JSON.parse(stdout) as { node: string }) : undefined;
    };
    const call = async (callId: string) => {
      const child = spawnInHost(state.hosts.alice!, [
        'call',
        'camera1',
        '--config',
        join(CONFIG, 'gateway.yaml'),
        '--user',
        'alice',
        '--password',
        'alice-lab-secret',
        '--server',
        `${NODE_A}:5060`,
        '--duration',
        '3',
        '--json',
      ]);
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      const code = await new Promise((r) => child.on('exit', r));
      expect(code, `${callId}: ${out}`).toBe(0);
      return JSON.parse(out.trim().split('\n').pop()!) as { ok: boolean; route: string; callId: string };
    };
    try {
      redis = await startRedis({ address: NODE_A, port: 6379, namespace: state.hosts.server });
      const nodeA = spawnInHost(state.hosts.server!, [
        'server',
        '--config',
        nodeConfig(dir, 'a', NODE_A),
        '--log-json',
      ]);
      const nodeB = spawnInHost(state.hosts.server2!, [
        'server',
        '--config',
        nodeConfig(dir, 'b', NODE_B),
        '--log-json',
      ]);
      children.push(nodeA, nodeB);
      let logA = '';
      let logB = '';
      nodeA.stderr.on('data', (d) => {
        logA += d;
      });
      nodeB.stderr.on('data', (d) => {
        logB += d;
      });
      await Promise.all([
        waitForOutput(nodeA, /sc2c server:.*node a with store/, 'node A'),
        waitForOutput(nodeB, /sc2c server:.*node b with store/, 'node B'),
      ]);
      // The camera's gateway knows both nodes, B first, and uses B's STUN server: after the
      // failover it uses A's (the STUN server on its first node's host follows it).
      const camera = spawnInHost(state.hosts.bob!, [
        'gateway',
        '--config',
        join(CONFIG, 'gateway.yaml'),
        '--user',
        'camera1',
        '--password',
        'camera1-lab-secret',
        '--server',
        `${NODE_B}:5060,${NODE_A}:5060`,
        '--stun',
        `${NODE_B}:3478`,
        '--json',
      ]);
      children.push(camera);
      const cameraEvents = events(camera);
      await until('the camera registering', 60_000, () => cameraEvents.find((e) => e.event === 'registered'));
      expect((await registrationOf('camera1'))?.node).toBe('b');

      const first = await call('first');
      expect(first.ok).toBe(true);
      expect(first.route).toBe('direct');
      // Node A forwarded the call to node B, which handed it to the camera.
      expect(logA).toMatch(/"event":"call-start"[^\n]*"callee":"camera1"/);
      expect(logB).toMatch(/"event":"call-start"[^\n]*"caller":"alice"/);
      expect(logA).toMatch(/"event":"link-up","node":"b"/);

      const killedAt = Date.now();
      nodeB.kill('SIGKILL');
      const back = await until('the camera registering with node A', 20_000, () =>
        cameraEvents.find((e) => e.event === 'reconnected'),
      );
      const failoverMs = Date.now() - killedAt;
      console.log(
        `camera registered again with ${String(back.server)} ${failoverMs} ms after node B was killed`,
      );
      // The 10 s target is bench:signaling's to measure; here it only has to happen.
      expect(back.server).toBe(`${NODE_A}:5060`);
      expect((await registrationOf('camera1'))?.node).toBe('a');

      const second = await call('second');
      expect(second.ok).toBe(true);
      expect(['direct', 'relay']).toContain(second.route);
    } finally {
      await stopHostProcesses(children);
      await redis?.stop();
      await stopLab(state);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
