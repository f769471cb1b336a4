/**
 * `sc2c init`: a working set of configs for a real deployment (issue 18). The server config listens
 * on this host, the users get random passwords, the TURN relay a random secret, SIP runs over TLS
 * with a self-signed certificate whose fingerprint the gateway and viewer configs pin, and the
 * gateway config lists `camera1` … `cameraN`. Nothing written names the lab.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { cidrContains, isIpv4, parseCidr } from '../net/address.ts';
import { createIdentity } from '../protocol/dtls/certificate.ts';
import { UsageError } from '../util/usage-error.ts';
import { MAX_CAMERAS } from './configs.ts';
import { parseInteger } from './errors.ts';

/** Default ports: the well-known ones (RFC 3261 §19.1.2 for SIP and SIPS, RFC 8489 §6 for STUN/TURN). */
const DEFAULT_PORTS = { sip: 5060, stun: 3478, admin: 8080 } as const;

/** Ranges a TURN server refuses as peers unless told (its own network when the server lives there). */
const LOCAL_RANGES = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'];

interface InitOptions {
  dir: string;
  publicIp?: string;
  cameras: number;
  /** Viewer users: `viewer`, `viewer2` … each with its config (one device per user at a time). */
  viewers: number;
  domain: string;
  force?: boolean;
  json?: boolean;
  /** SIP over TCP; SIP over TLS is the next port. */
  sipPort: number;
  /** STUN and TURN; the one-address STUN alternate is the next port. */
  stunPort: number;
  adminPort: number;
}

/** A random secret of `bytes` bytes, URL-safe base64 (no quoting needed in YAML). */
const secret = (bytes = 18): string => randomBytes(bytes).toString('base64url');

/** This host's first non-internal IPv4 address, a public one before a private one. */
export function detectAddress(): { address: string; interface: string } | undefined {
  const candidates = Object.entries(networkInterfaces()).flatMap(([name, addresses]) =>
    (addresses ?? [])
      .filter((a) => a.family === 'IPv4' && !a.internal)
      .map((a) => ({ address: a.address, interface: name })),
  );
  const isLocal = (address: string) => LOCAL_RANGES.some((r) => cidrContains(parseCidr(r), address));
  return candidates.find((c) => !isLocal(c.address)) ?? candidates[0];
}

function hostAddresses(): Set<string> {
  return new Set(
    Object.values(networkInterfaces()).flatMap((a) =>
      (a ?? []).filter((x) => x.family === 'IPv4').map((x) => x.address),
    ),
  );
}

export interface InitResult {
  readonly dir: string;
  readonly publicIp: string;
  readonly files: readonly string[];
  readonly cameras: readonly string[];
  readonly viewers: readonly string[];
  readonly fingerprint: string;
  readonly next: readonly string[];
}

/** Writes the set into `dir`; refuses to overwrite unless `force`. */
export function writeDeployment(options: InitOptions, publicIp: string): InitResult {
  const dir = resolve(options.dir);
  const viewers = Array.from({ length: options.viewers }, (_, i) => (i === 0 ? 'viewer' : `viewer${i + 1}`));
  const names = [
    'server.yaml',
    'users.yaml',
    'gateway.yaml',
    ...viewers.map((v) => `${v}.yaml`),
    'tls-cert.pem',
    'tls-key.pem',
  ];
  const existing = names.filter((n) => existsSync(join(dir, n)));
  if (existing.length > 0 && !options.force)
    throw new UsageError(
      `${dir} already has ${existing.join(', ')}; give another --dir, or --force to replace them (new passwords and certificate)`,
    );
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cameras = Array.from({ length: options.cameras }, (_, i) => `camera${i + 1}`);
  const passwords = new Map([...cameras, ...viewers].map((user) => [user, secret(12)]));
  const callers = `[${viewers.join(', ')}]`;
  const tls = createIdentity(options.domain);
  const certPem = `-----BEGIN CERTIFICATE-----\n${Buffer.from(tls.certificate)
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n')}\n-----END CERTIFICATE-----\n`;
  const keyPem = tls.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const fingerprint = new X509Certificate(certPem).fingerprint256;
  const local = LOCAL_RANGES.filter((r) => cidrContains(parseCidr(r), publicIp));
  const loopback = publicIp.startsWith('127.');
  const listen = loopback ? publicIp : '0.0.0.0';
  const PORTS = {
    sip: options.sipPort,
    sips: options.sipPort + 1,
    stun: options.stunPort,
    admin: options.adminPort,
  };

  const files: [string, string][] = [
    [
      'server.yaml',
      `# sc2c server, written by sc2c init for ${publicIp}. Run: sc2c server --config ${join(dir, 'server.yaml')}
# Open to gateways and viewers: TCP ${PORTS.sip} and ${PORTS.sips} (SIP, SIP over TLS), UDP and TCP ${PORTS.stun}
# and UDP ${PORTS.stun + 1} (STUN, TURN), and the relay's UDP ports (the kernel's ephemeral range).
sip:
  listen: { address: ${listen}, port: ${PORTS.sip} }
  tls: { port: ${PORTS.sips}, certFile: tls-cert.pem, keyFile: tls-key.pem }  # gateways pin its sha-256
  realm: ${options.domain}
  usersFile: users.yaml
stun:
  primary: { address: ${publicIp}, port: ${PORTS.stun} }
  # One address is enough for mapping, the allocation step and port prediction. A second address on
  # this host adds the filtering test (otherwise reported as unknown):
  # alternate: { address: SECOND-ADDRESS, port: ${PORTS.stun + 1} }
turn:
  relayAddress: ${publicIp}
  secret: "${secret(24)}"
  allowedPeers: [${local.map((r) => `'${r}'`).join(', ')}]${local.length ? `   # gateways on this host's own network (${publicIp}) are peers too` : ''}
admin:
  listen: { address: 127.0.0.1, port: ${PORTS.admin} }
accounting:
  file: calls.jsonl
`,
    ],
    [
      'users.yaml',
      `# Users and who may call whom: cameras answer only the viewers listed in their callers. A user is
# one device at a time (a second registration takes over from the first): give each viewer its own.
users:
${cameras.map((c) => `  ${c}: { password: "${passwords.get(c)}", callers: ${callers} }`).join('\n')}
${viewers.map((v) => `  ${v}: "${passwords.get(v)}"`).join('\n')}
`,
    ],
    [
      'gateway.yaml',
      `# sc2c gateway for ${cameras.length} camera${cameras.length === 1 ? '' : 's'}. Run: sc2c gateway --config ${join(dir, 'gateway.yaml')}
# Each camera registers as its own user. Sources: testsrc | file:PATH | rtsp://user:pass@camera/stream
# | v4l2:/dev/video0. An H.264 RTSP camera is passed through as it is (transcode: true re-encodes).
${commonGateway(publicIp, options.domain, fingerprint, PORTS)}cameras:
${cameras.map((c) => `  ${c}: { source: testsrc, password: "${passwords.get(c)}", callers: ${callers} }`).join('\n')}
`,
    ],
    ...viewers.map((v): [string, string] => [
      `${v}.yaml`,
      `# sc2c call as ${v}. Run: sc2c call camera1 --config ${join(dir, `${v}.yaml`)} --record camera1.mp4
${commonGateway(publicIp, options.domain, fingerprint, PORTS)}user: ${v}
password: "${passwords.get(v)}"
`,
    ]),
    ['tls-cert.pem', certPem],
    ['tls-key.pem', keyPem],
  ];
  for (const [name, text] of files) writeFileSync(join(dir, name), text, { mode: 0o600 });
  const next = [
    `npx sc2c server --config ${join(dir, 'server.yaml')}`,
    `npx sc2c gateway --config ${join(dir, 'gateway.yaml')}`,
    `npx sc2c call camera1 --config ${join(dir, 'viewer.yaml')} --record camera1.mp4`,
  ];
  return { dir, publicIp, files: names.map((n) => join(dir, n)), cameras, viewers, fingerprint, next };
}

function commonGateway(
  publicIp: string,
  domain: string,
  fingerprint: string,
  PORTS: { sips: number; stun: number },
): string {
  return `server: ${publicIp}:${PORTS.sips}
tls: { fingerprint: "${fingerprint}" }   # the server's certificate, pinned
stun: ${publicIp}:${PORTS.stun}
domain: ${domain}
relay:
  server: ${publicIp}:${PORTS.stun}
media:
  certificate: dtls-{user}.pem      # this end's DTLS key and certificate, made on first start
accounting:
  spoolFile: spool-{user}.jsonl
`;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('write configs for a real deployment: server, users, a gateway with N cameras, viewers')
    .option('--dir <dir>', 'where to write them', 'sc2c')
    .option('--public-ip <ip>', "the server's public IPv4 address (default: detected from this host)")
    .option(
      '--cameras <n>',
      'cameras the gateway serves (camera1 … cameraN)',
      parseInteger('--cameras', 1, MAX_CAMERAS),
      1,
    )
    .option(
      '--viewers <n>',
      'viewer users (viewer, viewer2 …), each with its config file',
      parseInteger('--viewers', 1, 16),
      2,
    )
    .option('--domain <name>', 'SIP domain and realm', 'sc2c.local')
    .option(
      '--sip-port <n>',
      'SIP over TCP; SIP over TLS takes the next port',
      parseInteger('--sip-port', 1, 65_534),
      DEFAULT_PORTS.sip,
    )
    .option(
      '--stun-port <n>',
      'STUN and TURN; the STUN alternate takes the next port',
      parseInteger('--stun-port', 1, 65_534),
      DEFAULT_PORTS.stun,
    )
    .option(
      '--admin-port <n>',
      'admin HTTP API on 127.0.0.1',
      parseInteger('--admin-port', 1, 65_535),
      DEFAULT_PORTS.admin,
    )
    .option('--force', 'replace configs already in --dir (new passwords and certificate)')
    .option('--json', 'print machine-readable JSON')
    .action((options: InitOptions) => {
      if (!/^[A-Za-z0-9.-]{1,253}$/.test(options.domain))
        throw new UsageError(`--domain must be a DNS name, got '${options.domain}'`);
      let publicIp = options.publicIp;
      if (publicIp !== undefined && !isIpv4(publicIp))
        throw new UsageError(`--public-ip must be an IPv4 address, got '${publicIp}'`);
      if (publicIp === undefined) {
        const found = detectAddress();
        if (!found) throw new UsageError('no IPv4 address found on this host: give --public-ip');
        publicIp = found.address;
        process.stderr.write(
          `using ${found.address} (interface ${found.interface}); if clients reach this host by another address, give --public-ip\n`,
        );
      } else if (!hostAddresses().has(publicIp)) {
        process.stderr.write(
          `note: ${publicIp} is not an address of this host; the server must run where it is\n`,
        );
      }
      const result = writeDeployment(options, publicIp);
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      process.stdout.write(
        `wrote ${result.files.join(', ')} (mode 0600: they hold passwords and keys)\nserver certificate sha-256 ${result.fingerprint}, pinned in gateway.yaml and viewer.yaml\nnext, each in its own terminal:\n${result.next.map((c) => `  ${c}`).join('\n')}\n`,
      );
    });
}
