/// <reference lib="dom" />
/**
 * Issue 22: `sc2c demo --console` leaves the operator console up on the demo's camera after the
 * demo call, reached from this machine through a loopback port. Chromium opens the printed URL and
 * finds the camera already playing over the direct path between the lab's two NATs.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { describe, expect, it } from 'vitest';
import { freePort } from '../free-port.ts';
import { BIN, labUnavailable } from './support.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let why = await labUnavailable();
if (!why && !existsSync(CHROMIUM)) why = `no Chromium at ${CHROMIUM}`;
if (why && process.env.CI === 'true') throw new Error(`CI needs this: ${why}`);

describe.skipIf(why !== undefined)('npm run demo -- --console', () => {
  it('leaves the console up on the camera, playing over the direct path between the NATs', async () => {
    const port = await freePort();
    const out = mkdtempSync(join(tmpdir(), 'sc2c-demo-console-'));
    const demo = spawn(
      process.execPath,
      [
        BIN,
        'demo',
        '--console',
        '--console-port',
        String(port),
        '--console-s',
        '40',
        '--duration',
        '3',
        '--out',
        out,
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    demo.stdout.on('data', (d) => {
      stdout += d;
    });
    demo.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((r) => demo.once('exit', r));
    const deadline = Date.now() + 150_000;
    while (!/"event":"console"/.test(stdout)) {
      if (Date.now() > deadline || demo.exitCode !== null) throw new Error(`no console: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const url = (JSON.parse(/\{"event":"console"[^\n]*\}/.exec(stdout)![0]) as { url: string }).url;
    expect(url).toBe(`http://127.0.0.1:${port}/`);
    let shown = '';
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(url);
      await page.waitForSelector('#cameras tr[data-camera="bob"]', { timeout: 15_000 });
      expect(
        await page.$eval('#cameras tr[data-camera="bob"] td:nth-child(2)', (td) => td.textContent),
      ).toContain('online');
      // The demo's call was placed before the page opened: the page adopts it.
      await page.waitForSelector('article[data-camera="bob"] video', { timeout: 15_000 });
      await page.waitForFunction(
        () => {
          const v = document.querySelector('article[data-camera="bob"] video') as HTMLVideoElement | null;
          return v !== null && v.videoWidth === 640 && v.currentTime > 1;
        },
        { timeout: 30_000 },
      );
      const [route, why] = await page.$$eval('article[data-camera="bob"] .panel dd', (dds) =>
        dds.slice(0, 2).map((dd) => dd.textContent),
      );
      shown = `${route} (${why})`;
    } finally {
      await browser.close();
    }
    expect(await exited).toBe(0);
    const result = JSON.parse(stdout.slice(stdout.indexOf('\n{') + 1)) as {
      path: string;
      console: { call: { path: string; framesWritten: number; routes: unknown[] }; cameraRoutes: unknown[] };
    };
    const moves = `viewer ${JSON.stringify(result.console.call.routes)}, camera ${JSON.stringify(result.console.cameraRoutes)}`;
    console.log(`the console's call moved: ${moves}`);
    expect(shown, moves).toMatch(/^direct /);
    expect(result.path).toBe('direct');
    expect(result.console.call.path).toBe('direct');
    expect(result.console.call.framesWritten).toBeGreaterThan(300);
  }, 240_000);
});
