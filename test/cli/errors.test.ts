/**
 * Every expected failure an operator meets prints one line naming what failed and what to do, with
 * the exit code the README documents (0 ok, 1 call or runtime failure, 2 usage or config error),
 * and no stack trace (issue 18). Real processes on loopback; each case is what a user would type.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';
import { loopbackConfigs, scratch, startServer, until } from './processes.ts';

const { dir, sc2c } = scratch('sc2c-errors-');
let configs: { server: string; gateway: string };
let ports: { sip: number; stun: number };

const USERS = '    viewer: viewer-error-pass\n    camera: { password: camera-error-pass, callers: [viewer] }';

beforeAll(async () => {
  ports = { sip: await freePort(), stun: await freePort() };
  configs = loopbackConfigs(dir, ports, USERS);
  // The shared server; scratch() stops it after the file.
  await startServer(sc2c, configs.server);
}, 30_000);

/** Runs a command to its end: its exit code and its stderr, which must be one line and no stack. */
async function fails(args: string[]): Promise<{ code: number | null; line: string }> {
  const run = sc2c(args);
  const { code } = await run.exited;
  const lines = run.err().trim().split('\n');
  // No stack trace: no "    at f (file:line)" frame anywhere, and no "unexpected error".
  expect(run.err()).not.toMatch(/^\s+at .+:\d+/m);
  expect(run.err()).not.toMatch(/unexpected error|Unhandled 'error' event/);
  return { code, line: lines.at(-1) ?? '' };
}

const viewer = ['--config', '', '--user', 'viewer', '--password', 'viewer-error-pass', '--no-media'];
const asViewer = (...extra: string[]) => {
  const args = [...viewer, ...extra];
  args[1] = configs.gateway;
  return args;
};

describe('failures a person can act on: one line, the documented exit code', () => {
  it('server unreachable: exit 1, names the address and what to check', async () => {
    const closed = await freePort();
    const r = await fails(['call', 'camera', ...asViewer('--server', `127.0.0.1:${closed}`)]);
    expect(r.code).toBe(1);
    expect(r.line).toMatch(
      /cannot reach the SIP server at 127\.0\.0\.1:\d+ \(connection refused\): is sc2c server running/,
    );
  });

  it('wrong password: exit 1, says wrong password or no such user', async () => {
    const r = await fails([
      'call',
      'camera',
      '--config',
      configs.gateway,
      '--user',
      'viewer',
      '--password',
      'not-the-password',
      '--no-media',
    ]);
    expect(r.code).toBe(1);
    expect(r.line).toMatch(/refused user 'viewer' \(403 Forbidden\): wrong password or no such user/);
  });

  it('a callee that does not exist and one that is not online are told apart (404)', async () => {
    const nobody = sc2c(['call', 'nobody', ...asViewer()]);
    expect((await nobody.exited).code).toBe(1);
    expect(nobody.out()).toMatch(/404 Not Found \(no such user\)/);
    const offline = sc2c(['call', 'camera', ...asViewer()]);
    expect((await offline.exited).code).toBe(1);
    expect(offline.out()).toMatch(/404 Not Found \(not online\)/);
  });

  it('no STUN answer: exit 1, names the STUN address and the config field', async () => {
    const closed = await freePort();
    const r = await fails(['call', 'camera', ...asViewer('--stun', `127.0.0.1:${closed}`)]);
    expect(r.code).toBe(1);
    expect(r.line).toMatch(/no STUN answer from 127\.0\.0\.1:\d+: check 'stun' in .*gateway\.yaml or --stun/);
  });

  it('ports in use (SIP, STUN, admin, gateway metrics): exit 2, names the port and the field', async () => {
    // SIP and STUN: a second server on the same config.
    const again = await fails(['server', '--config', configs.server]);
    expect(again.code).toBe(2);
    expect(again.line).toMatch(/cannot listen for STUN on .* \(port in use: another process listens there/);
    const [sip, stun, admin] = [await freePort(), await freePort(), await freePort()];
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(sip, '127.0.0.1', resolve));
    const sipBusy = loopbackConfigs(mkdtempSync(join(dir, 'busy-')), { sip, stun }, USERS).server;
    const r = await fails(['server', '--config', sipBusy]);
    expect(r.code).toBe(2);
    expect(r.line).toMatch(
      new RegExp(`cannot listen for SIP on 127\\.0\\.0\\.1:${sip} .*port in use.*set sip\\.listen`),
    );
    busy.close();
    const adminBusy = join(dir, 'admin-busy.yaml');
    const busyAdmin: Server = createServer();
    await new Promise<void>((resolve) => busyAdmin.listen(admin, '127.0.0.1', resolve));
    writeFileSync(
      adminBusy,
      `sip:\n  listen: { address: 127.0.0.1, port: ${sip} }\n  realm: t\n  users: { a: abcdefgh1 }\nstun:\n  primary: { address: 127.0.0.1, port: ${stun} }\nadmin:\n  listen: { address: 127.0.0.1, port: ${admin} }\n`,
    );
    const a = await fails(['server', '--config', adminBusy]);
    expect(a.code).toBe(2);
    expect(a.line).toMatch(
      new RegExp(`cannot listen for the admin API on 127\\.0\\.0\\.1:${admin} .*port in use`),
    );
    // The gateway's metrics port: refused before anything registers.
    const m = await fails([
      'gateway',
      '--config',
      configs.gateway,
      '--user',
      'camera',
      '--password',
      'camera-error-pass',
      '--metrics',
      String(admin),
    ]);
    expect(m.code).toBe(2);
    expect(m.line).toMatch(new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${admin} \\(port in use`));
    busyAdmin.close();
  }, 30_000);

  it('missing files and bad values: exit 2', async () => {
    const missing = await fails(['server', '--config', join(dir, 'nothere.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.line).toMatch(/cannot read server config .*nothere\.yaml: no such file \(sc2c init/);
    const report = await fails(['report', '--file', join(dir, 'nothere.jsonl')]);
    expect(report.code).toBe(2);
    const host = await fails(['call', 'camera', ...asViewer('--server', 'no-such-host.invalid')]);
    expect(host.code).toBe(2);
    expect(host.line).toMatch(/--server: cannot resolve 'no-such-host\.invalid'/);
  });

  it('camera names from a config are hostile: reserved names and an empty list are refused', async () => {
    for (const [name, expected] of [
      ['__proto__', /cameras: list at least one camera/],
      ['constructor', /cameras\.constructor: Invalid key/],
    ] as const) {
      const path = join(dir, `cameras-${name}.yaml`);
      writeFileSync(
        path,
        `server: 127.0.0.1:${ports.sip}\nstun: 127.0.0.1:${ports.stun}\ndomain: sc2c.test\ncameras:\n  ${name}: { source: testsrc, password: camera-error-pass }\n`,
      );
      const run = sc2c(['gateway', '--config', path]);
      expect((await run.exited).code).toBe(2);
      expect(run.err()).toMatch(expected);
    }
  });

  it('a host name works where an address did: --server localhost', async () => {
    const r = sc2c(['call', 'nobody', ...asViewer('--server', `localhost:${ports.sip}`)]);
    expect((await r.exited).code, r.err()).toBe(1);
    expect(r.out(), r.err()).toMatch(/404 Not Found \(no such user\)/);
  });

  it('a gateway started before its server waits and registers once the server is up', async () => {
    const [sip, stun] = [await freePort(), await freePort()];
    const late = loopbackConfigs(mkdtempSync(join(dir, 'late-')), { sip, stun }, USERS);
    const gateway = sc2c([
      'gateway',
      '--config',
      late.gateway,
      '--user',
      'camera',
      '--password',
      'camera-error-pass',
      '--no-send',
    ]);
    await until('a retry line', () => /cannot reach the SIP server .*; retrying in 1 s/.test(gateway.out()));
    const lateServer = sc2c(['server', '--config', late.server]);
    await until('the gateway to register', () => /registered as camera/.test(gateway.out()), 20_000);
    gateway.child.kill('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
    lateServer.child.kill('SIGTERM');
    expect((await lateServer.exited).code).toBe(0);
  }, 40_000);

  it('a camera whose source is missing is reported unreachable at start; the others serve', async () => {
    const cameras = join(dir, 'cameras.yaml');
    writeFileSync(
      cameras,
      `server: 127.0.0.1:${ports.sip}\nstun: 127.0.0.1:${ports.stun}\ndomain: sc2c.test\nmedia: { certificate: 'dtls-{user}.pem' }\naccounting: { publish: false, spoolFile: '${join(dir, 'spool-{user}.jsonl')}' }\ncameras:\n  camera: { source: "file:${join(dir, 'gone.mp4')}", password: camera-error-pass }\n`,
    );
    const gateway = sc2c(['gateway', '--config', cameras]);
    await until('the source check', () =>
      /camera: source file .*gone\.mp4 unreachable: no such file/.test(gateway.out()),
    );
    await until('the camera to register anyway', () => /serving 1 of 1 cameras/.test(gateway.out()));
    gateway.child.kill('SIGTERM');
    expect((await gateway.exited).code).toBe(0);
  }, 30_000);
});
