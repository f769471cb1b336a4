/**
 * `sc2c demo` (`npm run demo`): the product's main job. It brings up the kernel lab (by default a
 * symmetric-seq1+pks NAT facing a symmetric-seq1+ips NAT, 40 ms RTT, the server on the public side),
 * runs `sc2c server`, a camera gateway sending the test pattern and a viewer that places an SC2C
 * call and records it, then writes out/demo.mp4, a PNG of one decoded frame and out/demo.json. For
 * contrast it also places one C2C call (no media). Where namespaces cannot be created it runs the
 * media over a loopback-only call with no NAT, and says so.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { blockedUdpPackets, blockUdp } from '../lab/block-udp.ts';
import { type CallSummary, LAB_CONFIG, natSpec, runLabCalls } from '../lab/calls.ts';
import { bridgeToUnix, consoleRequest } from '../lab/console-bridge.ts';
import { spawnInHost, stopHostProcesses, waitForOutput } from '../lab/host-process.ts';
import { checkLabPrerequisites, nsExec } from '../lab/netns.ts';
import { type NalCensus, nalCensus, RANDOM_NAL_RATE } from '../lab/pcap-census.ts';
import { locateFfmpeg, locateFfprobe } from '../media/ffmpeg.ts';
import { probeRecording, type RecordingInfo, snapshot } from '../media/inspect.ts';
import { startLoopbackCall } from '../media/loopback.ts';
import { PAYLOAD_TYPES } from '../media/source.ts';
import { loadProfiles } from '../nat/profiles.ts';
import { SystemClock } from '../net/clock.ts';
import { NodeNetwork } from '../net/node-network.ts';
import { UsageError } from '../util/usage-error.ts';
import { loadGatewayConfig } from './configs.ts';
import { parseFloatIn, parseInteger } from './errors.ts';
import { encodeInit, summarizeMedia } from './media.ts';
import { stopRequested } from './shutdown.ts';

interface DemoOptions {
  natA: string;
  natB: string;
  rttMs: number;
  lossPercent: number;
  duration: number;
  relay?: boolean;
  out: string;
  json?: boolean;
  /** Commander's form of `--insecure-media`. */
  insecureMedia?: boolean;
  /** Commander's form of `--no-port-mapping`. */
  portMapping: boolean;
  pcap?: string;
  /** Issue 21: drop all non-loopback UDP in the viewer's (`a`) or the camera's (`b`) lab host. */
  blockUdp?: 'a' | 'b';
  /** Issue 22: after the demo call, leave the operator console up on the camera. */
  console?: boolean;
  consolePort: number;
  /** Stop the console after this many seconds (default: at Ctrl-C). */
  consoleS?: number;
  /** Issue 23: the server's relay in this many shard processes (1: in the server's own). */
  relayShards: number;
}

interface DemoResult {
  path: 'direct' | 'direct-tcp' | 'relay' | 'none';
  /**
   * How each side's advertised port was obtained: `mapped` when its router granted it (PCP or
   * NAT-PMP, issue 20), else `predicted`, `pinned`, `exact`, `unpredictable`...
   */
  portSources?: { viewer: string | null; camera: string | null };
  setupMs: number | null;
  framesSent: number | null;
  framesReceived: number | null;
  bytesDirect: number;
  bytesRelay: number;
  /**
   * Issue 23: what carried the relayed media to the viewer when the call used the relay:
   * `kernel` (the server's nftables rules), `raw` (the server's process, plain datagrams) or
   * `turn` (ChannelData); null on a direct call.
   */
  relayPath: 'kernel' | 'raw' | 'turn' | null;
  /** The server's own count of what its kernel fast path forwarded (its /metrics), null when unread. */
  kernelRelayed: { packets: number; bytes: number } | null;
  /** Issue 23: the relay processes the server ran (`--relay-shards`; 1 is its own, 0 with no server). */
  relayShards: number;
  where: string;
  natA: string;
  natB: string;
  rttMs: number;
  lossPercent: number;
  reason?: string;
  directReason?: string;
  recording?: RecordingInfo & { path: string; snapshot: string | null };
  /** How long the DTLS handshake took, inside `setupMs` (null with plain RTP). */
  dtlsMs?: number | null;
  media?: { encryption?: string; srtpAuthFailures?: number; received?: { frames?: number } };
  c2c?: { ok: boolean; setupMs: number | null; reason?: string };
  /** With `--block-udp`: whose UDP was blocked, and how many UDP packets the block dropped there. */
  blockUdp?: { side: 'a' | 'b'; host: 'viewer' | 'camera'; droppedPackets: number | null };
  /** With `--pcap`: the captures, and what the camera NAT's uplink shows of the video. */
  pcap?: { dir: string; cameraUplink: string } & NalCensus & { randomRate: number };
  /** Issue 22: the console left up after the demo call (`--console`), and its call's route. */
  console?: {
    url: string;
    /** `routes`: the call's moves between the direct path and the relay, with why, in order. */
    call: { path: string | null; setupMs: number | null; framesWritten: number; routes: RouteMove[] } | null;
    error?: string;
    /** The camera's moves between routes while the console's call was up, with why. */
    cameraRoutes: Omit<RouteMove, 'atMs'>[];
  };
}

/** A move of the console's call between routes, `atMs` after it started. */
type RouteMove = { atMs: number; route: 'direct' | 'relay'; why: string };

/** The lab: camera gateway (bob) behind NAT B, viewer (alice) behind NAT A. */
async function labDemo(options: DemoOptions, mp4: string, say: (line: string) => void): Promise<DemoResult> {
  let calleeEnded: Record<string, unknown> | undefined;
  // The lab's sc2c server runs the embedded TURN relay on the STUN port.
  const relayArgs = options.relay === false ? ['--no-relay'] : ['--relay', '198.18.0.10:3478'];
  // A side whose UDP is blocked reaches the relay over TCP (RFC 7065 URI), as a real one would.
  const tcpRelayArgs =
    options.relay === false ? ['--no-relay'] : ['--relay', 'turn:198.18.0.10:3478?transport=tcp'];
  const viewerRelayArgs = options.blockUdp === 'a' ? tcpRelayArgs : relayArgs;
  const cameraRelayArgs = options.blockUdp === 'b' ? tcpRelayArgs : relayArgs;
  const blockedHost = options.blockUdp === 'a' ? 'alice' : options.blockUdp === 'b' ? 'bob' : undefined;
  let blockedNamespace: string | undefined;
  let droppedPackets: number | null = null;
  let kernelRelayed: DemoResult['kernelRelayed'] = null;
  let consoleResult: DemoResult['console'];
  const cameraRoutes: Omit<RouteMove, 'atMs'>[] = [];
  const secureArgs = [
    ...(options.insecureMedia ? ['--insecure-media'] : []),
    ...(options.portMapping ? [] : ['--no-port-mapping']),
  ];
  const runs = await runLabCalls({
    calleeArgs: [...cameraRelayArgs, ...secureArgs],
    serverArgs: ['--relay-shards', String(options.relayShards)],
    beforeCalls: async (hosts) => {
      if (!blockedHost) return;
      blockedNamespace = hosts[blockedHost];
      if (!blockedNamespace) throw new Error(`the lab has no host ${blockedHost}`);
      await blockUdp(blockedNamespace);
      say(
        `UDP blocked in the ${blockedHost === 'alice' ? 'viewer' : 'camera'}'s host (nftables, loopback excepted)`,
      );
    },
    pcapDir: options.pcap,
    natA: options.natA,
    natB: options.natB,
    rttMs: options.rttMs,
    lossPercent: options.lossPercent,
    modes: ['sc2c', 'c2c'],
    callsPerMode: 1,
    name: `demo${process.pid % 10_000}`,
    callArgs: (mode) =>
      mode === 'sc2c'
        ? ['--record', mp4, '--duration', String(options.duration), ...viewerRelayArgs, ...secureArgs]
        : // The contrast is about traversal: no media, and no relay to hide a failed punch (a
          // viewer whose UDP is blocked cannot start without one: its relay route is not counted).
          ['--no-media', ...(options.blockUdp === 'a' ? tcpRelayArgs : ['--no-relay']), ...secureArgs],
    onLine: (line) => {
      if (line.includes('"mode":"sc2c"')) say('call finished; placing the C2C contrast call (no media)...');
    },
    // The camera reports its totals once the viewer's BYE reached it: wait for that line.
    inspect: async (hosts) => {
      for (let i = 0; i < 100 && !calleeEnded; i++) await new Promise((r) => setTimeout(r, 100));
      if (blockedNamespace) droppedPackets = await blockedUdpPackets(blockedNamespace).catch(() => null);
      // Relay shards report to the server once a second: let the last report in.
      if (options.relayShards > 1) await new Promise((r) => setTimeout(r, 1500));
      kernelRelayed = await kernelRelayedBy(hosts.server!).catch(() => null);
      if (options.console) {
        const mark = cameraRoutes.length;
        const shown = await runDemoConsole(hosts.alice!, options, [...viewerRelayArgs, ...secureArgs], say);
        consoleResult = { ...shown, cameraRoutes: cameraRoutes.slice(mark) };
      }
    },
    onCalleeEvent: (event) => {
      if (event.event === 'media-started') say(`media flowing: recording ${options.duration} s...`);
      if (event.event === 'route' && cameraRoutes.length < 100)
        cameraRoutes.push({ route: event.route as RouteMove['route'], why: String(event.why) });
      if (event.event === 'media-ended' && !calleeEnded) calleeEnded = event;
    },
  });
  const sc2c = runs.sc2c![0]! as CallSummary & { media?: DemoResult['media']; dtlsMs?: number | null };
  const c2c = runs.c2c![0]!;
  const sent = (calleeEnded as { sent?: { frames: number; bytes: number } } | undefined)?.sent;
  const bytes = (sc2c as { bytes?: { direct: { bytes: number }; relay: { bytes: number } } }).bytes;
  return {
    path: sc2c.ok ? (sc2c.path ?? 'direct') : 'none',
    setupMs: sc2c.setupMs,
    framesSent: sent?.frames ?? null,
    framesReceived: sc2c.media?.received?.frames ?? null,
    // The viewer's own count of what crossed each route, both directions (media and RTCP).
    bytesDirect: bytes?.direct.bytes ?? sent?.bytes ?? 0,
    bytesRelay: bytes?.relay.bytes ?? 0,
    kernelRelayed,
    relayShards: options.relayShards,
    relayPath:
      sc2c.ok && (bytes?.relay.bytes ?? 0) > 0
        ? ((sc2c as { relayPath?: DemoResult['relayPath'] }).relayPath ?? null)
        : null,
    where: 'kernel lab: real processes in network namespaces, real sockets',
    natA: options.natA,
    natB: options.natB,
    rttMs: options.rttMs,
    lossPercent: options.lossPercent,
    reason: sc2c.reason,
    directReason: (sc2c as { directReason?: string }).directReason,
    portSources: { viewer: sc2c.local?.portSource ?? null, camera: sc2c.remote?.portSource ?? null },
    dtlsMs: sc2c.dtlsMs ?? null,
    media: sc2c.media,
    c2c: {
      ok: c2c.ok && c2c.path !== 'relay',
      setupMs: c2c.setupMs,
      reason:
        c2c.ok && c2c.path === 'relay' ? `relayed: ${c2c.directReason ?? 'no direct path'}` : c2c.reason,
    },
    ...(options.blockUdp
      ? {
          blockUdp: {
            side: options.blockUdp,
            host: options.blockUdp === 'a' ? ('viewer' as const) : ('camera' as const),
            droppedPackets,
          },
        }
      : {}),
    ...(options.pcap ? { pcap: cameraUplinkCensus(options.pcap) } : {}),
    ...(consoleResult ? { console: consoleResult } : {}),
  };
}

/**
 * `--console` (issue 22): `sc2c console` as the viewer in its lab namespace, reached from this
 * machine through a loopback port bridged to the console's Unix socket; it calls the camera at
 * once, so the page opens on live video. Runs until Ctrl-C (or `--console-s`).
 */
async function runDemoConsole(
  namespace: string,
  options: DemoOptions,
  gatewayArgs: readonly string[],
  say: (line: string) => void,
): Promise<Omit<NonNullable<DemoResult['console']>, 'cameraRoutes'>> {
  const dir = mkdtempSync(join(tmpdir(), 'sc2c-console-'));
  const socket = join(dir, 'console.sock');
  const bridge = await bridgeToUnix(options.consolePort, socket).catch((error: Error) => {
    throw new UsageError(`--console-port ${options.consolePort}: ${error.message}`);
  });
  const host = `127.0.0.1:${bridge.port}`;
  const url = `http://${host}/`;
  const agent = spawnInHost(namespace, [
    ...[
      'console',
      '--config',
      `${LAB_CONFIG}gateway.yaml`,
      '--user',
      'alice',
      '--password',
      'alice-lab-secret',
    ],
    ...['--port', '8090', '--unix', socket, '--allow-host', `${host},localhost:${bridge.port}`, '--json'],
    ...gatewayArgs,
  ]);
  try {
    await waitForOutput(agent, /"event":"console"/, 'sc2c console');
    const placed = await consoleRequest(socket, host, 'POST', '/api/calls', { camera: 'bob', view: 'mse' });
    const call = placed.body as { path?: string | null; setupMs?: number | null; error?: string } | null;
    if (placed.status !== 201)
      say(`the console's call to the camera failed: ${call?.error ?? placed.status}`);
    else say(`console call to the camera: ${call?.path} path, set up in ${call?.setupMs} ms`);
    process.stdout.write(
      options.json
        ? `${JSON.stringify({ event: 'console', url })}\n`
        : `\noperator console: ${url}  (the camera is live there; ${options.consoleS ? `ends in ${options.consoleS} s` : 'Ctrl-C ends it and prints the demo summary'})\n\n`,
    );
    await Promise.race([
      stopRequested(),
      ...(options.consoleS ? [new Promise((r) => setTimeout(r, options.consoleS! * 1000))] : []),
    ]);
    const panels = await consoleRequest(socket, host, 'GET', '/api/calls').catch(() => undefined);
    const live = (
      panels?.body as
        | {
            calls?: {
              path: string | null;
              setupMs: number | null;
              routes: RouteMove[];
              live: { framesWritten: number };
            }[];
          }
        | undefined
    )?.calls?.[0];
    return {
      url,
      call: live
        ? {
            path: live.path,
            setupMs: live.setupMs,
            framesWritten: live.live.framesWritten,
            routes: live.routes,
          }
        : null,
      ...(placed.status === 201 ? {} : { error: call?.error ?? `HTTP ${placed.status}` }),
    };
  } finally {
    await stopHostProcesses([agent]);
    bridge.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The camera NAT's WAN link (nat-b to the core): every video packet the camera sent crossed it. */
function cameraUplinkCensus(dir: string): NonNullable<DemoResult['pcap']> {
  const file = readdirSync(dir).find((f) => /^nat-b--/.test(f) && f.endsWith('.pcap'));
  if (!file) throw new Error(`no capture of the camera NAT's uplink in ${dir}`);
  const cameraUplink = join(resolve(dir), file);
  return {
    dir: resolve(dir),
    cameraUplink,
    ...nalCensus(cameraUplink, PAYLOAD_TYPES.h264),
    randomRate: RANDOM_NAL_RATE,
  };
}

/** No namespaces: the same media code over two loopback sockets, no NAT, no signaling. */
async function loopbackDemo(options: DemoOptions, mp4: string, why: string): Promise<DemoResult> {
  const clock = new SystemClock();
  const network = new NodeNetwork();
  const ffmpeg = { spawn, binary: locateFfmpeg() };
  const config = loadGatewayConfig('config/gateway.yaml').media;
  const started = clock.now();
  const { camera, viewer, close } = await startLoopbackCall(
    { clock, network, ffmpeg },
    { encode: encodeInit(config), recordPath: mp4 },
  );
  await new Promise((r) => setTimeout(r, options.duration * 1000));
  await viewer.close();
  await camera.close();
  close();
  const sent = summarizeMedia(camera.stats()).sent!;
  const received = summarizeMedia(viewer.stats());
  return {
    path: 'direct',
    setupMs: Math.round(clock.now() - started - options.duration * 1000),
    framesSent: sent.frames,
    framesReceived: received.received?.frames ?? 0,
    bytesDirect: sent.bytes,
    bytesRelay: 0,
    relayPath: null,
    kernelRelayed: null,
    relayShards: 0,
    where: `loopback only, no NAT and no signaling, because the kernel lab cannot run here (${why})`,
    natA: 'none',
    natB: 'none',
    rttMs: 0,
    lossPercent: 0,
    dtlsMs: null,
    // No network here: the loopback call has no DTLS to run.
    media: { ...received, encryption: 'none', srtpAuthFailures: 0 },
  };
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'camera -> viewer over SC2C between two NATs in the kernel lab: records out/demo.mp4, a PNG snapshot and out/demo.json',
    )
    .option(
      '--nat-a <profile>',
      'the viewer (caller) NAT: a profile spec (config/nat-profiles.yaml), or kernel:masquerade, kernel:masquerade-random-fully, kernel:miniupnpd',
      'symmetric-seq1+pks',
    )
    .option('--nat-b <profile>', 'the camera (callee) NAT, as --nat-a', 'symmetric-seq1+ips')
    .option('--no-port-mapping', 'the gateways never ask their router for a mapping (PCP, NAT-PMP)')
    .option('--rtt-ms <n>', 'round trip between the two NATs', parseInteger('--rtt-ms', 0, 2000), 40)
    .option(
      '--loss-percent <n>',
      "packet loss on the camera NAT's link, each direction",
      parseFloatIn('--loss-percent', 0, 50),
      0,
    )
    .option('--relay', "use the TURN relay (sc2c server's) when no direct path opens (the default)")
    .option('--no-relay', 'direct paths only: a call no punch serves gets no media')
    .option('--duration <s>', 'seconds of video to send', parseInteger('--duration', 1, 600), 10)
    .option(
      '--relay-shards <n>',
      "run the server's relay in this many shard processes (issue 23); relayed calls are redirected to them",
      parseInteger('--relay-shards', 1, 16),
      1,
    )
    .option('--out <dir>', 'where demo.mp4, demo.png and demo.json go', 'out')
    .option('--json', 'print out/demo.json to stdout instead of the summary')
    .option('--insecure-media', 'plain RTP instead of DTLS-SRTP at both ends (to compare; prints a warning)')
    .option(
      '--block-udp <a|b>',
      "drop all non-loopback UDP in the viewer's (a) or the camera's (b) lab host: the call goes direct over TCP (a simultaneous open) where it can, else through the relay over TCP",
      (value: string) => {
        if (value !== 'a' && value !== 'b')
          throw new UsageError(`--block-udp must be a or b, got '${value}'`);
        return value;
      },
    )
    .option('--pcap <dir>', "write the lab's per-link captures of the call into <dir> (tshark reads them)")
    .option(
      '--console',
      "after the demo call, leave the operator console (sc2c console, as the viewer) up on the camera's live video and print its URL; Ctrl-C ends it",
    )
    .option(
      '--console-port <n>',
      'loopback port the console is reached on from this machine',
      parseInteger('--console-port', 0, 65535),
      8090,
    )
    .option(
      '--console-s <n>',
      'end the console after this many seconds instead of at Ctrl-C',
      parseInteger('--console-s', 1, 86_400),
    )
    .action(async (options: DemoOptions) => {
      if (options.insecureMedia)
        process.stderr.write(
          'warning: --insecure-media: the demo call sends plain RTP; anyone on the path can record or inject it\n',
        );
      const catalog = loadProfiles();
      // A NAT model profile, or kernel:<name> (the kernel's own NAT, e.g. kernel:miniupnpd).
      for (const nat of [options.natA, options.natB]) {
        const spec = natSpec(nat);
        if ('profile' in spec) catalog.resolve(spec.profile);
      }
      const binary = locateFfmpeg();
      const out = resolve(options.out);
      mkdirSync(out, { recursive: true });
      const mp4 = resolve(out, 'demo.mp4');
      const png = resolve(out, 'demo.png');
      rmSync(mp4, { force: true });
      rmSync(png, { force: true });
      const say = (line: string): void => {
        if (!options.json) process.stderr.write(`${line}\n`);
      };
      let why: string | undefined;
      try {
        await checkLabPrerequisites();
      } catch (error) {
        why = (error as Error).message;
      }
      if (why && options.blockUdp)
        throw new UsageError(`--block-udp needs the kernel lab, which cannot run here: ${why}`);
      say(
        why
          ? `the kernel lab cannot run here (${why}): running a loopback-only call with no NAT instead`
          : `bringing up the lab: ${options.natA} (viewer) facing ${options.natB} (camera), ${options.rttMs} ms RTT${options.lossPercent ? `, ${options.lossPercent} % loss` : ''}...`,
      );
      const result = why ? await loopbackDemo(options, mp4, why) : await labDemo(options, mp4, say);
      const ffprobe = locateFfprobe(binary);
      if (result.path !== 'none' && ffprobe) {
        try {
          const info = await probeRecording(ffprobe, mp4);
          await snapshot(binary.path, mp4, png, Math.min(1, options.duration / 2));
          result.recording = { ...info, path: mp4, snapshot: png };
        } catch (error) {
          result.reason = `the recording does not decode: ${(error as Error).message.split('\n')[0]}`;
        }
      }
      writeFileSync(resolve(out, 'demo.json'), `${JSON.stringify(result, null, 2)}\n`);
      if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else process.stdout.write(formatDemo(result, resolve(out, 'demo.json')));
      if (result.path === 'none' || !result.recording || result.recording.videoFrames === 0)
        process.exitCode = 1;
    });
}

function formatDemo(r: DemoResult, json: string): string {
  const lines = [`sc2c demo on the ${r.where}`];
  if (r.natA !== 'none')
    lines.push(
      `viewer behind ${r.natA}, camera behind ${r.natB}, ${r.rttMs} ms RTT${r.lossPercent ? `, ${r.lossPercent} % link loss` : ''}`,
    );
  lines.push('');
  if (r.path !== 'none') {
    const how =
      r.path === 'relay'
        ? `the relay (${r.directReason ?? 'no direct path'})`
        : r.path === 'direct-tcp'
          ? 'a direct TCP path (simultaneous open)'
          : 'a direct path';
    lines.push(
      `  SC2C: media over ${how}, set up in ${r.setupMs} ms; ${r.framesSent ?? '?'} frames sent, ${r.framesReceived ?? '?'} received`,
    );
    lines.push(
      `  bytes: ${r.bytesDirect} direct, ${r.bytesRelay} relayed${r.relayPath ? ` (relay path: ${r.relayPath})` : ''}`,
    );
    if (r.portSources)
      lines.push(
        `  ports: viewer ${r.portSources.viewer}, camera ${r.portSources.camera}${Object.values(r.portSources).includes('mapped') ? ' (mapped: granted by its router on request)' : ''}`,
      );
    const encryption = r.media?.encryption ?? 'none';
    lines.push(
      encryption === 'none'
        ? '  media: plain RTP, NOT encrypted'
        : `  media: ${encryption} (handshake ${r.dtlsMs ?? '?'} ms of the set-up), ${r.media?.srtpAuthFailures ?? 0} packets failed authentication`,
    );
    if (r.pcap)
      lines.push(
        `  capture: ${r.pcap.rtpPackets} video packets on the camera's uplink, ${(100 * r.pcap.nalLikeFraction).toFixed(1)} % start like H.264 (random: ${(100 * r.pcap.randomRate).toFixed(1)} %): ${r.pcap.cameraUplink}`,
      );
    if (r.recording) {
      lines.push(
        `  recording: ${r.recording.path} (${r.recording.videoCodec} ${r.recording.width}x${r.recording.height}, ${r.recording.videoFrames} frames${r.recording.audioCodec ? `, ${r.recording.audioCodec} audio` : ''})`,
        `  snapshot:  ${r.recording.snapshot}`,
      );
    }
  } else lines.push(`  SC2C: no path: ${r.reason}`);
  if (r.c2c) {
    lines.push(
      r.c2c.ok
        ? `  C2C (the paper's unsynchronized baseline): direct path in ${r.c2c.setupMs} ms`
        : `  C2C (the paper's unsynchronized baseline): no direct path: ${r.c2c.reason?.replace(/^no direct path: /, '')}`,
    );
  }
  if (r.console)
    lines.push(
      r.console.call
        ? `  console: ${r.console.url} showed the camera over a ${r.console.call.path} path (${r.console.call.framesWritten} frames remuxed for the browser)`
        : `  console: ${r.console.url}: ${r.console.error ?? 'no call'}`,
    );
  lines.push('', `details: ${json}`, '');
  return lines.join('\n');
}

/** What the server's kernel fast path forwarded, from its admin API's /metrics (loopback in its host). */
async function kernelRelayedBy(serverNamespace: string): Promise<{ packets: number; bytes: number } | null> {
  const metrics = await nsExec(
    serverNamespace,
    'curl',
    '-sf',
    '--max-time',
    '5',
    'http://127.0.0.1:8080/metrics',
  );
  const read = (name: string): number | undefined => {
    const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics);
    return match ? Number(match[1]) : undefined;
  };
  const packets = read('sc2c_turn_kernel_packets_total');
  const bytes = read('sc2c_turn_kernel_bytes_total');
  return packets === undefined || bytes === undefined ? null : { packets, bytes };
}
