/**
 * The operator console's HTTP face (issue 22), an express app:
 *
 *   GET    /                         the page (static, `src/web/static/`: plain ES modules, no build)
 *   GET    /api/cameras              cameras this viewer may call (the server's `x-sc2c-cameras`)
 *   GET    /api/report               relay savings of this viewer's calls (`x-sc2c-report`)
 *   POST   /api/calls                {camera, view: "mse"|"mjpeg"} places a call; 201 {id}
 *   GET    /api/calls                every call's panel (route and why, quality, bytes)
 *   DELETE /api/calls/:id            hangs up
 *   GET    /api/calls/:id/video.mp4  the call's video as fragmented MP4 (remuxed, not transcoded)
 *   GET    /api/calls/:id/video.mjpg the MJPEG fallback (a call placed with view "mjpeg")
 *   GET    /api/metrics              ffmpeg processes and video encoders running in this agent
 *
 * Every request passes the Host check (DNS rebinding); with a token, the token gate too.
 */
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import { runningFfmpegCount, runningVideoEncoders } from '../media/ffmpeg.ts';
import { hostGuard, loginRoutes, tokenGate } from './auth.ts';
import { CallRefused, type ConsoleCalls } from './console-calls.ts';

const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));

/** What the console asks the signaling server (a fetch: SUBSCRIBE with Expires 0, then NOTIFY). */
export interface ConsoleDirectory {
  cameras(): Promise<unknown>;
  report(): Promise<unknown>;
}

export interface ConsoleAppInit {
  readonly token?: string;
  /** `host:port` values the console answers to (lower case). */
  readonly hosts: () => ReadonlySet<string>;
  readonly title: string;
}

const COOKIE = 'sc2c_console';

export function consoleApp(
  calls: ConsoleCalls,
  directory: ConsoleDirectory,
  init: ConsoleAppInit,
): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(hostGuard(init.hosts));
  const gate = { token: init.token, cookie: COOKIE, loginPath: '/login' };
  if (init.token)
    loginRoutes(app, {
      ...gate,
      title: init.title,
      urlencoded: express.urlencoded({ extended: false, limit: '2kb' }),
    });
  app.use(tokenGate(gate));
  app.use(
    express.static(STATIC_DIR, {
      index: 'index.html',
      setHeaders: (res) =>
        res.set(
          'Content-Security-Policy',
          "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; style-src 'self'",
        ),
    }),
  );
  app.get(
    '/api/cameras',
    relay(() => directory.cameras()),
  );
  app.get(
    '/api/report',
    relay(() => directory.report()),
  );
  app.get('/api/metrics', (_req, res) => {
    res.json({ ffmpegProcesses: runningFfmpegCount(), videoEncoders: runningVideoEncoders() });
  });
  app.get('/api/calls', (_req, res) => {
    res.json({ calls: calls.panels() });
  });
  app.post('/api/calls', express.json({ limit: '1kb' }), async (req, res) => {
    const body = req.body as { camera?: unknown; view?: unknown } | undefined;
    const camera = typeof body?.camera === 'string' ? body.camera : '';
    const view =
      body?.view === 'mjpeg' ? 'mjpeg' : body?.view === undefined || body.view === 'mse' ? 'mse' : null;
    if (!camera || view === null) {
      res.status(400).json({ error: 'give {"camera": NAME, "view": "mse" | "mjpeg"}' });
      return;
    }
    try {
      const call = await calls.place(camera, view);
      res.status(201).json(calls.panel(call));
    } catch (error) {
      res.status(error instanceof CallRefused ? error.status : 500).json({ error: (error as Error).message });
    }
  });
  app.delete('/api/calls/:id', async (req, res) => {
    if (!calls.get(req.params.id)) {
      res.status(404).json({ error: 'no such call' });
      return;
    }
    await calls.hangup(req.params.id);
    res.status(204).end();
  });
  app.get('/api/calls/:id/video.mp4', (req, res) => {
    const call = calls.get(req.params.id);
    if (call?.state !== 'up' || call.view !== 'mse') {
      res.status(404).json({ error: 'no live fMP4 stream for this call' });
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'video/mp4',
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    res.flushHeaders();
    const detach = call.live.attach(res);
    if (!detach) {
      res.end();
      return;
    }
    res.on('close', detach);
  });
  app.get('/api/calls/:id/video.mjpg', (req, res) => {
    const call = calls.get(req.params.id);
    if (!call?.mjpeg || call.state !== 'up') {
      res.status(404).json({ error: 'no MJPEG stream for this call' });
      return;
    }
    call.mjpeg.attach(res);
  });
  app.use((_req: Request, res: Response) => {
    res.status(404).json({ error: 'not found' });
  });
  // A malformed JSON body (express.json) or anything thrown lands here: an answer, never a crash.
  app.use((error: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(error.status && error.status < 500 ? error.status : 500).json({ error: error.message });
  });
  return app;
}

/** A directory fetch as an API answer: 502 with the reason when the server refuses or is away. */
function relay(fetch: () => Promise<unknown>) {
  return async (_req: Request, res: Response): Promise<void> => {
    try {
      res.json(await fetch());
    } catch (error) {
      res.status(502).json({ error: (error as Error).message });
    }
  };
}
