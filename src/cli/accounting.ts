/**
 * Call records on the command line: the gateways' side (`sc2c gateway` and `sc2c call` send a record
 * at the end of every call) and `sc2c report`, which reads the server's record file.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import type { Command } from 'commander';
import { Counter, Gauge, Registry } from 'prom-client';
import {
  type ConfirmedSend,
  callRecord,
  confirmedSend,
  RecordPublisher,
} from '../gateway/call-accounting.ts';
import type { CallOutcome, Gateway } from '../gateway/gateway.ts';
import { runningFfmpegCount, runningVideoEncoders } from '../media/ffmpeg.ts';
import type { Clock } from '../net/clock.ts';
import { CallRecordStore, type CallsReport, parseSince, summarizeCalls } from '../relay/call-records.ts';
import { UsageError } from '../util/usage-error.ts';
import { type loadGatewayConfig, loadServerConfig } from './configs.ts';
import { listenProblem } from './errors.ts';

type AccountingConfig = ReturnType<typeof loadGatewayConfig>['accounting'];

/** Per-gateway record keeping: publishes each finished call, spooling what the server does not take. */
export class GatewayAccounting {
  readonly #publisher: RecordPublisher;
  /** Established calls we answered, until they close. */
  readonly #open = new Map<string, CallOutcome>();
  /** What the peer's last receiver report confirmed, per open call. */
  readonly #confirmed = new Map<string, ConfirmedSend>();
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Totals for `/metrics`: calls by final route, media bytes and packets by route, counted at the sender. */
  readonly totals = {
    calls: { direct: 0, relay: 0, failed: 0 },
    sent: { direct: { bytes: 0, packets: 0 }, relay: { bytes: 0, packets: 0 } },
    received: { direct: { bytes: 0, packets: 0 }, relay: { bytes: 0, packets: 0 } },
    switches: 0,
    spooled: 0,
  };

  constructor(
    private readonly gateway: Gateway,
    private readonly clock: Clock,
    config: AccountingConfig,
    private readonly onError: (message: string) => void,
  ) {
    this.#publisher = new RecordPublisher(() => gateway.signaling, {
      publish: config.publish,
      spoolFile: config.spoolFile.replaceAll('{user}', gateway.init.sip.user),
    });
    this.#track(this.#publisher.flushSpool());
    gateway.on('reconnected', () => this.#track(this.#publisher.flushSpool()));
  }

  /** Answers calls (`sc2c gateway`): every outcome is recorded, an established call once it closes. */
  followAnsweredCalls(): void {
    this.gateway.on('call', (outcome) => {
      if (outcome.ok) this.#open.set(outcome.callId, outcome);
      else this.record(outcome);
    });
    this.gateway.on('closed', (callId, failure) => {
      const outcome = this.#open.get(callId);
      const confirmed = this.#confirmed.get(callId);
      this.#confirmed.delete(callId);
      if (!outcome) return;
      this.#open.delete(callId);
      // A peer that failed under a call we sent media on: only what its reports confirmed was sent.
      const sending = this.gateway.init.media?.send === true;
      this.record(outcome, failure, failure && sending ? (confirmed ?? 'none') : undefined);
    });
  }

  /** The peer's receiver report on an answered call's media arrived: what went so far is confirmed. */
  peerReported(callId: string): void {
    const outcome = this.#open.get(callId);
    const confirmed = outcome && confirmedSend(outcome);
    if (confirmed) this.#confirmed.set(callId, confirmed);
  }

  /** Records a finished call (`reason` when it ended badly); resolves once delivered or spooled. */
  record(outcome: CallOutcome, reason?: string, confirmed?: ConfirmedSend | 'none'): Promise<unknown> {
    const record = callRecord(outcome, {
      user: this.gateway.init.sip.user,
      endedAtMs: this.clock.now(),
      wallNowMs: Date.now(),
      reason,
      confirmed,
    });
    const t = this.totals;
    t.calls[record.ok && record.route ? record.route : 'failed']++;
    for (const route of ['direct', 'relay'] as const) {
      t.sent[route].bytes += record.sent[route].bytes;
      t.sent[route].packets += record.sent[route].packets;
      t.received[route].bytes += record.received[route].bytes;
      t.received[route].packets += record.received[route].packets;
    }
    t.switches += record.switches;
    return this.#track(
      this.#publisher.publish(record).then((where) => {
        if (where === 'spool') t.spooled++;
      }),
    );
  }

  /** Waits for every record in flight (before the process exits). */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  #track(work: Promise<unknown>): Promise<unknown> {
    const tracked = work.catch((error: Error) => this.onError(`call record: ${error.message}`));
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
    return tracked;
  }
}

/**
 * `/metrics` for a gateway (Prometheus text format) on 127.0.0.1:`port`: its calls and media bytes
 * per route, from the same records it sends to the server.
 */
/** A camera's state as the gateway reports it (`/cameras`, metrics). */
export interface CameraStatus {
  readonly camera: string;
  readonly registered: boolean;
  /** `online`, `unreachable: <reason>`, or `checking`. */
  readonly source: string;
  /** ffmpeg pulls of the source since start: one per viewer session group, not per viewer. */
  readonly sourcePulls: number;
  readonly viewers: number;
  readonly passthrough: boolean;
}

/**
 * Prometheus `/metrics` on 127.0.0.1:`port` for one gateway or several (one per camera): call and
 * byte totals summed, and with `cameras` per-camera gauges plus `/cameras` as JSON. Listening comes
 * first, before any gateway starts, so a port in use stops the command before anything runs.
 */
export async function serveGatewayMetrics(
  port: number,
  accountings: () => readonly GatewayAccounting[],
  cameras?: () => readonly CameraStatus[],
): Promise<HttpServer> {
  const registry = new Registry();
  const total = (read: (t: GatewayAccounting['totals']) => number): number =>
    accountings().reduce((sum, a) => sum + read(a.totals), 0);
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    read: () => [Record<string, string>, number][],
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      },
    });
  const routes = ['direct', 'relay'] as const;
  counter(
    'sc2c_gateway_calls_total',
    'Finished calls by final route (failed: no media path).',
    ['route'],
    () => (['direct', 'relay', 'failed'] as const).map((route) => [{ route }, total((t) => t.calls[route])]),
  );
  counter(
    'sc2c_gateway_media_bytes_total',
    'Media bytes (RTP/RTCP payload) of finished calls.',
    ['route', 'direction'],
    () =>
      routes.flatMap((route) => [
        [{ route, direction: 'sent' }, total((t) => t.sent[route].bytes)],
        [{ route, direction: 'received' }, total((t) => t.received[route].bytes)],
      ]),
  );
  counter(
    'sc2c_gateway_media_packets_total',
    'Media packets of finished calls.',
    ['route', 'direction'],
    () =>
      routes.flatMap((route) => [
        [{ route, direction: 'sent' }, total((t) => t.sent[route].packets)],
        [{ route, direction: 'received' }, total((t) => t.received[route].packets)],
      ]),
  );
  counter('sc2c_gateway_route_switches_total', 'Moves between the direct path and the relay.', [], () => [
    [{}, total((t) => t.switches)],
  ]);
  counter(
    'sc2c_gateway_records_spooled_total',
    'Call records the server did not take (kept in the spool).',
    [],
    () => [[{}, total((t) => t.spooled)]],
  );
  // Issue 22: how many encoders this gateway runs: one per pulled source that is not H.264
  // already, none for a passed-through camera, and none on a viewer remuxing for the browser.
  new Gauge({
    name: 'sc2c_ffmpeg_processes',
    help: 'ffmpeg processes running now; kind=video-encoder encodes video, kind=other copies or decodes only.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const encoders = runningVideoEncoders();
      this.set({ kind: 'video-encoder' }, encoders);
      this.set({ kind: 'other' }, runningFfmpegCount() - encoders);
    },
  });
  if (cameras) {
    counter(
      'sc2c_camera_source_pulls_total',
      'ffmpeg pulls of each camera source (one serves every viewer watching at the time).',
      ['camera'],
      () => cameras().map((c) => [{ camera: c.camera }, c.sourcePulls]),
    );
    const gauge = (name: string, help: string, read: (c: CameraStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['camera'],
        registers: [registry],
        collect() {
          this.reset();
          for (const c of cameras()) this.set({ camera: c.camera }, read(c));
        },
      });
    gauge('sc2c_camera_viewers', 'Viewers watching each camera now.', (c) => c.viewers);
    gauge('sc2c_camera_source_online', '1 when the source answered its last check.', (c) =>
      c.source === 'online' ? 1 : 0,
    );
    gauge('sc2c_camera_registered', '1 while the camera is registered with the server.', (c) =>
      c.registered ? 1 : 0,
    );
  }
  const server = createServer((req, res) => {
    if (req.url === '/cameras' && cameras) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(`${JSON.stringify(cameras())}\n`);
      return;
    }
    if (req.url !== '/metrics') {
      res.writeHead(404).end(cameras ? 'try /metrics or /cameras\n' : 'try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      (error: Error) => res.writeHead(500).end(error.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new UsageError(`cannot serve metrics on 127.0.0.1:${port} (${listenProblem(error)})`)),
    );
    server.listen(port, '127.0.0.1', resolve);
  });
  return server;
}

const percent = (ratio: number | null): string => (ratio === null ? '-' : `${(ratio * 100).toFixed(1)} %`);
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(2)} MB`;

/** A probe's NAT class, short enough for a table: `APD/APD/sequential+1` for the full RFC 4787 names. */
const shortNat = (nat: string): string =>
  nat
    .replaceAll('address-and-port-dependent', 'APD')
    .replaceAll('address-dependent', 'AD')
    .replaceAll('endpoint-independent', 'EI');

export function formatReport(report: CallsReport, file: string): string {
  const lines = [
    `call records: ${file}${report.since ? ` (calls since ${report.since})` : ''}: ${report.total.calls} calls${report.total.plainCalls ? `, ${report.total.plainCalls} of them with plain (unencrypted) media` : ''}`,
    '',
  ];
  const rows = [
    ['caller NAT', 'callee NAT', 'calls', 'relayed', 'direct', 'relay', 'saved'],
    ...report.pairs.map((p) => [
      shortNat(p.callerNat),
      shortNat(p.calleeNat),
      String(p.calls),
      String(p.relayedCalls),
      mb(p.direct.bytes),
      mb(p.relay.bytes),
      percent(p.savedRatio),
    ]),
    [
      'total',
      '',
      String(report.total.calls),
      String(report.total.relayedCalls),
      mb(report.total.direct.bytes),
      mb(report.total.relay.bytes),
      percent(report.total.savedRatio),
    ],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) lines.push(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
  lines.push(
    '',
    'NAT: mapping/filtering/allocation as each gateway probed it (EI endpoint-independent, AD address-dependent, APD address-and-port-dependent)',
    'saved = media bytes that went direct / all media bytes (RTP and RTCP payload; --json adds wire bytes)',
    '',
  );
  return lines.join('\n');
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      'relay bandwidth saved, per NAT pair and in total, from the call records the gateways sent to sc2c server',
    )
    .option('--config <file>', 'server config (its accounting.file is read)', 'config/server.yaml')
    .option('--file <path>', 'read this call-record file instead of the one in the config')
    .option('--since <time>', 'only calls that started at or after: ISO time, or 90s / 30m / 12h / 7d ago')
    .option('--json', 'print the report as JSON')
    .action((options: { config: string; file?: string; since?: string; json?: boolean }) => {
      let file = options.file;
      if (!file) {
        const config = loadServerConfig(options.config);
        if (!config.accounting)
          throw new UsageError(`${options.config} has no accounting.file: give --file or add one`);
        file = config.accounting.file;
      }
      let sinceMs: number | undefined;
      if (options.since !== undefined) {
        try {
          sinceMs = parseSince(options.since, Date.now());
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
      }
      // A record file that is not there is a wrong path, not a quiet day: say so (exit 2).
      if (options.file && !existsSync(file))
        throw new UsageError(
          `no call-record file at ${file}: check --file (the server writes accounting.file)`,
        );
      const { records, skipped } = new CallRecordStore(file).read();
      const report = summarizeCalls(records, sinceMs);
      if (skipped > 0) process.stderr.write(`skipped ${skipped} unreadable lines in ${file}\n`);
      if (options.json) process.stdout.write(`${JSON.stringify({ file, skipped, ...report }, null, 2)}\n`);
      else process.stdout.write(formatReport(report, file));
    });
}
