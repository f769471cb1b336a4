/**
 * Finding and running ffmpeg. The binary comes from `FFMPEG_PATH`, then the system (Debian's
 * `ffmpeg`), then the `@ffmpeg-installer/ffmpeg` package (its binary ships inside the package).
 * Every child is started under `setpriv --pdeathsig KILL` where available, so no ffmpeg outlives a
 * gateway that is killed outright, and every child still running when this process exits is killed.
 */
import type { ChildProcessWithoutNullStreams, spawn as nodeSpawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { TypedEmitter } from '../util/typed-emitter.ts';

export class FfmpegMissingError extends Error {
  constructor(tried: readonly string[]) {
    super(
      `ffmpeg not found (tried ${tried.join(', ')}). Install Debian's ffmpeg (scripts/setup-system.sh), npm install @ffmpeg-installer/ffmpeg, or set FFMPEG_PATH`,
    );
    this.name = 'FfmpegMissingError';
  }
}

export interface FfmpegBinary {
  readonly path: string;
  readonly from: 'FFMPEG_PATH' | 'system' | '@ffmpeg-installer/ffmpeg';
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Where ffmpeg is; throws `FfmpegMissingError` naming every place tried. */
export function locateFfmpeg(env: NodeJS.ProcessEnv = process.env): FfmpegBinary {
  const tried: string[] = [];
  if (env.FFMPEG_PATH) {
    if (executable(env.FFMPEG_PATH)) return { path: env.FFMPEG_PATH, from: 'FFMPEG_PATH' };
    // An explicit path that does not work is an error, not a reason to pick another binary.
    throw new FfmpegMissingError([`FFMPEG_PATH=${env.FFMPEG_PATH}`]);
  }
  const system = onPath('ffmpeg', env);
  if (system) return { path: system, from: 'system' };
  tried.push('ffmpeg on PATH');
  try {
    const installer = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string };
    if (executable(installer.path)) return { path: installer.path, from: '@ffmpeg-installer/ffmpeg' };
  } catch {
    // Not installed: fall through to the error.
  }
  tried.push('@ffmpeg-installer/ffmpeg');
  throw new FfmpegMissingError(tried);
}

/** ffprobe beside the ffmpeg in use, else on PATH; `undefined` when there is none. */
export function locateFfprobe(
  ffmpeg: FfmpegBinary,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (env.FFPROBE_PATH && executable(env.FFPROBE_PATH)) return env.FFPROBE_PATH;
  const beside = join(dirname(ffmpeg.path), 'ffprobe');
  return executable(beside) ? beside : onPath('ffprobe', env);
}

export interface FfmpegComponents {
  readonly spawn: typeof nodeSpawn;
  readonly binary: FfmpegBinary;
}

export type FfmpegEvents = {
  /** The process ended; `expected` is true when `stop()` asked for it. */
  exit: [code: number | null, signal: string | null, expected: boolean];
  /** One line of ffmpeg's stderr. */
  log: [line: string];
};

/** Every ffmpeg child still running, and whether it encodes video (any `-c:v` but `copy`). */
const live = new Map<ChildProcessWithoutNullStreams, { readonly encoder: boolean }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live.keys()) child.kill('SIGKILL');
  });
}

const PDEATHSIG = onPath('setpriv', process.env);

/** The number of ffmpeg children this process has running (tests check it drops to 0). */
export function runningFfmpegCount(): number {
  return live.size;
}

/**
 * Video encoders among them (issue 22): a viewer remuxing a camera's H.264 for the browser runs
 * none, a camera encoding its test pattern one. A JPEG decode for the MJPEG view counts, since it
 * encodes MJPEG.
 */
export function runningVideoEncoders(): number {
  let n = 0;
  for (const { encoder } of live.values()) if (encoder) n++;
  return n;
}

/** Does this argument list encode video: a `-c:v` (or `-vcodec`) other than `copy`? */
export function encodesVideo(args: readonly string[]): boolean {
  return args.some((arg, i) => (arg === '-c:v' || arg === '-vcodec') && args[i + 1] !== 'copy');
}

/**
 * One ffmpeg child. `stop()` asks it to finish (`q`, so an MP4 gets its index), then SIGTERM,
 * then SIGKILL. Idempotent.
 */
export class FfmpegProcess extends TypedEmitter<FfmpegEvents> {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #tail: string[] = [];
  #stopping = false;
  #exited: Promise<void>;
  exitCode: number | null = null;

  constructor(
    c: FfmpegComponents,
    readonly args: readonly string[],
  ) {
    super();
    installExitHook();
    const argv = ['-hide_banner', '-loglevel', 'warning', ...args];
    this.#child = PDEATHSIG
      ? c.spawn(PDEATHSIG, ['--pdeathsig', 'KILL', '--', c.binary.path, ...argv], { stdio: 'pipe' })
      : c.spawn(c.binary.path, argv, { stdio: 'pipe' });
    live.set(this.#child, { encoder: encodesVideo(args) });
    let partial = '';
    this.#child.stderr.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.trim()) continue;
        this.#tail.push(line);
        if (this.#tail.length > 20) this.#tail.shift();
        this.emit('log', line);
      }
    });
    this.#child.stdin.on('error', () => {
      // ffmpeg already gone: the exit handler reports it.
    });
    this.#exited = new Promise((resolve) => {
      this.#child.on('error', (error) => {
        this.#tail.push(error.message);
      });
      this.#child.on('close', (code, signal) => {
        live.delete(this.#child);
        this.exitCode = code;
        this.emit('exit', code, signal, this.#stopping);
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get running(): boolean {
    return live.has(this.#child);
  }

  /** The last lines ffmpeg printed: the reason when it fails. */
  get lastLines(): string {
    return this.#tail.slice(-5).join(' | ');
  }

  get stdout(): NodeJS.ReadableStream {
    return this.#child.stdout;
  }

  /** Resolves once the process has exited, however it ended. */
  exited(): Promise<void> {
    return this.#exited;
  }

  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) return this.#exited;
    this.#stopping = true;
    // `q` on stdin, not a signal: a signal also interrupts the writes of the MP4 index. `q` is read
    // between packets, so an input must either flow or time out (the recorder's input has a timeout).
    if (this.#child.stdin.writable) this.#child.stdin.end('q');
    const term = setTimeout(() => this.#child.kill('SIGTERM'), graceMs);
    const kill = setTimeout(() => this.#child.kill('SIGKILL'), graceMs * 2);
    await this.#exited;
    clearTimeout(term);
    clearTimeout(kill);
  }

  /** Kills at once (tests use it to crash ffmpeg mid-call). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.#child.kill(signal);
  }
}
