/**
 * Checks a camera source before anyone calls (issue 18): ffprobe opens it, within a bounded time,
 * and says whether it has video and in which codec. A missing file or an unreachable RTSP camera is
 * then reported at start, not when the first viewer calls.
 */
import type { spawn as nodeSpawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import type { MediaSource } from './source.ts';

export interface SourceCheckComponents {
  readonly spawn: typeof nodeSpawn;
  /** ffprobe's path; without one only files and devices are checked for existence. */
  readonly ffprobe?: string;
}

export type SourceCheck =
  | { readonly ok: true; readonly videoCodec: string | null; readonly audioCodec: string | null }
  | { readonly ok: false; readonly reason: string };

/** ffprobe output kept: enough for the stream list and an error line. */
const MAX_OUTPUT_BYTES = 64 * 1024;

/** Opens `source` with ffprobe, killed after `timeoutMs` (default 10 s). Never throws. */
export async function checkSource(
  c: SourceCheckComponents,
  source: MediaSource,
  timeoutMs = 10_000,
): Promise<SourceCheck> {
  if (source.kind === 'testsrc') return { ok: true, videoCodec: 'testsrc', audioCodec: 'sine' };
  if (source.kind === 'file' || source.kind === 'v4l2') {
    const path = source.kind === 'file' ? source.path : source.device;
    try {
      await access(path, constants.R_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return {
        ok: false,
        reason: code === 'ENOENT' ? `no such file: ${path}` : `cannot read ${path} (${code})`,
      };
    }
  }
  if (!c.ffprobe) return { ok: true, videoCodec: null, audioCodec: null };
  const input =
    source.kind === 'rtsp'
      ? ['-rtsp_transport', 'tcp', '-timeout', String(Math.round(timeoutMs * 1000)), '-i', source.url]
      : source.kind === 'v4l2'
        ? ['-f', 'v4l2', '-i', source.device]
        : ['-i', source.path];
  const args = ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name', '-of', 'json', ...input];
  return new Promise<SourceCheck>((resolve) => {
    const child = c.spawn(c.ffprobe!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const keep = (buffer: string, chunk: Buffer): string =>
      buffer.length < MAX_OUTPUT_BYTES ? buffer + chunk.toString() : buffer;
    child.stdout!.on('data', (chunk: Buffer) => {
      out = keep(out, chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      err = keep(err, chunk);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 2000);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `ffprobe failed to start: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) return resolve({ ok: false, reason: `no answer within ${timeoutMs / 1000} s` });
      if (code !== 0) {
        const line = err
          .trim()
          .split('\n')
          .at(-1)
          ?.replace(/\/\/[^@/\s]*@/g, '//***@');
        return resolve({ ok: false, reason: line || `ffprobe exited with code ${code}` });
      }
      try {
        const streams = (JSON.parse(out) as { streams?: { codec_type?: string; codec_name?: string }[] })
          .streams;
        const codec = (type: string) => streams?.find((s) => s.codec_type === type)?.codec_name ?? null;
        const videoCodec = codec('video');
        if (!videoCodec) return resolve({ ok: false, reason: 'no video stream' });
        resolve({ ok: true, videoCodec, audioCodec: codec('audio') });
      } catch {
        resolve({ ok: false, reason: 'ffprobe printed no stream list' });
      }
    });
  });
}
