/**
 * `sc2c gateway` for every camera in the config's `cameras:` (issue 18): each registers as its own
 * SIP user with its own access list, each source is checked at start (and again, with backoff,
 * while unreachable), pulled once however many viewers watch, and passed through without
 * re-encoding when it is an H.264 RTSP camera. One NAT probe serves every camera: they share the
 * host, its NAT and its public address.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Gateway, GatewayComponents } from '../gateway/gateway.ts';
import { CLIP_PATH, ensureClip } from '../media/clip.ts';
import { locateFfmpeg, locateFfprobe } from '../media/ffmpeg.ts';
import { describeSource, parseSource } from '../media/source.ts';
import { checkSource, type SourceCheck } from '../media/source-check.ts';
import { SourceHub } from '../media/source-hub.ts';
import { type Clock, sleep } from '../net/clock.ts';
import { FreshPortNetwork } from '../traversal/fresh-ports.ts';
import { type CameraStatus, GatewayAccounting, serveGatewayMetrics } from './accounting.ts';
import type { loadGatewayConfig } from './configs.ts';
import { RuntimeFailure, startGatewayRetrying } from './failures.ts';
import { followGateway, type GatewayOptions, type Print } from './gateway.ts';
import { gatewayInit } from './gateway-init.ts';
import { encodeInit, ffmpegComponents, serveMedia } from './media.ts';

type Config = ReturnType<typeof loadGatewayConfig>;

/** A source that did not answer is checked again after this long, doubling up to the maximum. */
const RECHECK_INITIAL_MS = 5000;
const RECHECK_MAX_MS = 60_000;

interface Camera {
  readonly name: string;
  readonly source: ReturnType<typeof parseSource>;
  readonly spec: string;
  hub?: SourceHub;
  gateway?: Gateway;
  accounting?: GatewayAccounting;
  media?: { close(): Promise<void> };
  state: string;
  passthrough: boolean;
  registered: boolean;
}

/** Serves every camera until `stop` aborts; returns once all are closed. */
export async function serveCameras(
  c: GatewayComponents,
  options: GatewayOptions,
  config: Config,
  print: Print,
  stop: AbortSignal,
): Promise<void> {
  if (options.source || options.record || options.phone || options.live !== undefined)
    throw new RuntimeFailure(
      `--source, --record, --phone and --live serve one user: with cameras: in ${options.config} give --user too`,
    );
  const cameras: Camera[] = [...config.cameraList].map(([name, camera]) => ({
    name,
    spec: camera.source,
    source: parseSource(camera.source),
    state: 'checking',
    passthrough: false,
    registered: false,
  }));
  const statuses = (): CameraStatus[] =>
    cameras.map((camera) => {
      const stats = camera.hub?.stats();
      return {
        camera: camera.name,
        registered: camera.registered,
        source: camera.state,
        sourcePulls: stats?.pulls ?? 0,
        viewers: stats?.viewers ?? 0,
        passthrough: camera.passthrough,
      };
    });
  const accountings = (): GatewayAccounting[] =>
    cameras.flatMap((camera) => (camera.accounting ? [camera.accounting] : []));
  // First, so that a metrics port in use stops the command before any camera registers.
  const metrics =
    options.metrics === undefined
      ? undefined
      : await serveGatewayMetrics(options.metrics, accountings, statuses);
  try {
    await run(c, options, config, cameras, print, stop);
  } finally {
    await Promise.all(cameras.map((camera) => camera.media?.close()));
    await Promise.all(cameras.map((camera) => camera.hub?.close()));
    for (const camera of cameras) camera.gateway?.close();
    await Promise.all(cameras.map((camera) => camera.gateway?.released()));
    await Promise.all(accountings().map((a) => a.drain()));
    metrics?.close();
  }
}

async function run(
  c: GatewayComponents,
  options: GatewayOptions,
  config: Config,
  cameras: Camera[],
  print: Print,
  stop: AbortSignal,
): Promise<void> {
  const ffmpeg = locateFfmpeg();
  const check = { spawn, ffprobe: locateFfprobe(ffmpeg) };
  if (cameras.some((camera) => camera.source.kind === 'file' && resolve(camera.source.path) === CLIP_PATH))
    await ensureClip(ffmpeg);
  // One fresh-port tracker for every camera: they share the host's ports and its NAT.
  const components = { ...c, network: new FreshPortNetwork(c.network, c.clock) };
  const checks = await Promise.all(cameras.map((camera) => checkSource(check, camera.source)));
  cameras.forEach((camera, i) => {
    const wanted = config.cameraList.get(camera.name)!;
    camera.passthrough = choosePassthrough(camera, wanted.transcode, checks[i]!, print);
    report(camera, checks[i]!, print);
    camera.hub = new SourceHub(
      { clock: c.clock, network: c.network, ffmpeg: ffmpegComponents },
      {
        name: camera.name,
        encode: encodeInit(config.media, camera.spec),
        audio: config.media.audio === 'none' ? null : config.media.audio,
        passthrough: camera.passthrough,
        maxViewers: config.maxCalls,
      },
    );
    if (!checks[i]!.ok) void recheck(c.clock, camera, check, print, stop);
  });

  const start = async (camera: Camera, probe?: Gateway['probe']): Promise<void> => {
    const wanted = config.cameraList.get(camera.name)!;
    const { init, context } = await gatewayInit(
      options,
      { send: true, receive: false },
      { user: camera.name, password: wanted.password, allowedCallers: wanted.callers },
    );
    try {
      camera.gateway = await startGatewayRetrying(components, { ...init, probe }, context, print, stop);
    } catch (error) {
      if (stop.aborted) return;
      camera.state = `not registered: ${(error as Error).message}`;
      print(`${camera.name}: ${(error as Error).message}`, {
        event: 'camera-failed',
        camera: camera.name,
        reason: (error as Error).message,
      });
      return;
    }
    serve(camera, c, config, print);
  };
  // The first camera to register measures the NAT; the others reuse its probe.
  let first: Gateway | undefined;
  let next = 0;
  while (!first && next < cameras.length && !stop.aborted) {
    await start(cameras[next]!);
    first = cameras[next++]!.gateway;
  }
  await Promise.all(cameras.slice(next).map((camera) => start(camera, first?.probe)));
  if (!stop.aborted && cameras.every((camera) => !camera.gateway))
    throw new RuntimeFailure('no camera could register: see the lines above');

  print(
    `serving ${cameras.filter((camera) => camera.gateway).length} of ${cameras.length} cameras${options.metrics === undefined ? '' : `; metrics on http://127.0.0.1:${options.metrics}/metrics and /cameras`}`,
    {
      event: 'cameras',
      cameras: cameras.map((camera) => ({
        camera: camera.name,
        registered: camera.registered,
        source: camera.state,
        passthrough: camera.passthrough,
      })),
    },
  );
  await new Promise<void>((done) => {
    if (stop.aborted) done();
    else stop.addEventListener('abort', () => done(), { once: true });
  });
}

/** Media, accounting and reporting for one registered camera. */
function serve(camera: Camera, c: GatewayComponents, config: Config, print: Print): void {
  const gateway = camera.gateway!;
  camera.registered = true;
  gateway.on('disconnected', () => {
    camera.registered = false;
  });
  gateway.on('reconnected', () => {
    camera.registered = true;
  });
  followGateway(gateway, print);
  camera.accounting = new GatewayAccounting(gateway, c.clock, config.accounting, (m) =>
    print(`${camera.name}: ${m}`, { event: 'accounting-error', camera: camera.name, reason: m }),
  );
  camera.accounting.followAnsweredCalls();
  camera.media = serveMedia(
    { ...c, ffmpeg: ffmpegComponents },
    gateway,
    config.media,
    {
      source: camera.spec,
      feed: camera.hub,
      onPeerReport: (callId) => camera.accounting?.peerReported(callId),
    },
    (event, line) => print(`${camera.name}: ${line}`, { ...event, camera: camera.name }),
  );
}

/**
 * Pass through (`-c copy`) an H.264 RTSP camera unless `transcode: true`; any other source is
 * encoded. `transcode: false` on a file or camera that is not H.264 is refused with a line, and
 * the source is encoded.
 */
function choosePassthrough(
  camera: Camera,
  transcode: boolean | undefined,
  check: SourceCheck,
  print: Print,
): boolean {
  const copyable = camera.source.kind === 'rtsp' || camera.source.kind === 'file';
  const h264 = check.ok && check.videoCodec === 'h264';
  if (transcode === true || !copyable) return false;
  if (transcode === false && check.ok && !h264) {
    print(`${camera.name}: transcode: false, but the source's video is ${check.videoCodec}: encoding it`, {
      event: 'camera-transcode',
      camera: camera.name,
      videoCodec: check.ok ? check.videoCodec : null,
    });
    return false;
  }
  // An unreachable camera cannot say its codec: an RTSP camera is taken to send H.264, as nearly all do.
  if (transcode === false) return true;
  return camera.source.kind === 'rtsp' && (h264 || !check.ok);
}

function report(camera: Camera, check: SourceCheck, print: Print): void {
  camera.state = check.ok ? 'online' : `unreachable: ${check.reason}`;
  print(
    check.ok
      ? `${camera.name}: source ${describeSource(camera.source)} online${check.videoCodec ? ` (${check.videoCodec})` : ''}${camera.passthrough ? ', passed through without re-encoding' : ''}`
      : `${camera.name}: source ${describeSource(camera.source)} unreachable: ${check.reason}`,
    {
      event: 'source',
      camera: camera.name,
      state: check.ok ? 'online' : 'unreachable',
      reason: check.ok ? undefined : check.reason,
      videoCodec: check.ok ? check.videoCodec : undefined,
      passthrough: camera.passthrough,
    },
  );
}

/** Checks an unreachable source again with backoff until it answers or the gateway stops. */
async function recheck(
  clock: Clock,
  camera: Camera,
  check: Parameters<typeof checkSource>[0],
  print: Print,
  stop: AbortSignal,
): Promise<void> {
  let delayMs = RECHECK_INITIAL_MS;
  while (!stop.aborted) {
    await sleep(clock, delayMs, stop).catch(() => undefined);
    if (stop.aborted) return;
    const result = await checkSource(check, camera.source);
    if (result.ok) {
      report(camera, result, print);
      return;
    }
    camera.state = `unreachable: ${result.reason}`;
    delayMs = Math.min(delayMs * 2, RECHECK_MAX_MS);
  }
}
