/**
 * Reports each placed call's media status to the server (issue 22): at once when the route changes,
 * and every `intervalMs` while the call is up, so the server's admin page shows live calls with
 * their route and bytes. Only the caller reports (it holds the dialog); the report is best effort:
 * a refused or lost INFO changes nothing in the call.
 */
import { every, type Timer } from '../net/clock.ts';
import { encodeStatus, STATUS_CONTENT_TYPE } from '../protocol/sc2c-status.ts';
import type { SignalingClient } from '../signaling/client.ts';
import type { ActiveCall } from './active-call.ts';
import type { GatewayComponents } from './types.ts';

export interface StatusReporterInit {
  /** Default 5000 ms: the admin page refreshes every 5 s. 0 turns reports off. */
  readonly intervalMs?: number;
}

export class StatusReporter {
  readonly #timer?: Timer;

  constructor(
    c: GatewayComponents,
    private readonly signaling: () => SignalingClient,
    private readonly calls: () => ReadonlyMap<string, ActiveCall>,
    init: StatusReporterInit = {},
  ) {
    const intervalMs = init.intervalMs ?? 5000;
    if (intervalMs > 0)
      this.#timer = every(c.clock, intervalMs, () => {
        for (const callId of this.calls().keys()) this.report(callId);
      });
  }

  /** Sends one call's status now, if it is ours (placed by us) and has a media path. */
  report(callId: string): void {
    const active = this.calls().get(callId);
    const routed = active?.routed;
    const dialog = active?.dialog;
    if (!active || active.ended || !routed || !dialog) return;
    const { direct, relay } = routed.counters;
    const body = encodeStatus({
      route: routed.route,
      transport: routed.directTransport ?? 'udp',
      directBytes: direct.bytesSent + direct.bytesReceived,
      relayBytes: relay.bytesSent + relay.bytesReceived,
    });
    const signaling = this.signaling();
    void signaling
      .request('INFO', signaling.uri(dialog.user), [['Content-Type', STATUS_CONTENT_TYPE]], {
        callId,
        toTag: dialog.toTag,
        body,
      })
      .catch(() => undefined);
  }

  close(): void {
    this.#timer?.clear();
  }
}
