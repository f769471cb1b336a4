/** Lab counters as Prometheus text exposition format (version 0.0.4). */
import type { LabStatus } from './lab.ts';

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function labStatusToPrometheus(status: LabStatus): string {
  const lines: string[] = [];
  const metric = (
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    samples: [Record<string, string>, number][],
  ): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const text = Object.entries({ lab: status.name, ...labels })
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      lines.push(`${name}{${text}} ${value}`);
    }
  };
  const dirs = (pick: (d: LabStatus['links'][number]['up']) => number): [Record<string, string>, number][] =>
    status.links.flatMap((l) => [
      [{ link: l.name, direction: 'up' }, pick(l.up)] as [Record<string, string>, number],
      [{ link: l.name, direction: 'down' }, pick(l.down)] as [Record<string, string>, number],
    ]);
  metric(
    'sc2c_lab_link_packets_total',
    'Packets that entered a link, by direction.',
    'counter',
    dirs((d) => d.packets),
  );
  metric(
    'sc2c_lab_link_bytes_total',
    'IP bytes that entered a link, by direction.',
    'counter',
    dirs((d) => d.bytes),
  );
  metric(
    'sc2c_lab_link_rtp_bytes_total',
    'IP bytes of RTP/RTCP datagrams (media sent direct) that entered a link, by direction.',
    'counter',
    dirs((d) => d.rtpBytes),
  );
  metric(
    'sc2c_lab_link_channel_data_bytes_total',
    'IP bytes of TURN ChannelData datagrams (relayed media) that entered a link, by direction.',
    'counter',
    dirs((d) => d.channelDataBytes),
  );
  metric(
    'sc2c_lab_link_lost_packets_total',
    'Packets the link dropped (configured loss).',
    'counter',
    dirs((d) => d.lostPackets),
  );
  const hosts = (
    pick: (h: LabStatus['hosts'][number]['counters']) => number,
  ): [Record<string, string>, number][] => status.hosts.map((h) => [{ host: h.name }, pick(h.counters)]);
  metric(
    'sc2c_lab_host_tx_packets_total',
    'Packets a host sent.',
    'counter',
    hosts((c) => c.txPackets),
  );
  metric(
    'sc2c_lab_host_tx_bytes_total',
    'IP bytes a host sent.',
    'counter',
    hosts((c) => c.txBytes),
  );
  metric(
    'sc2c_lab_host_rx_packets_total',
    'Packets delivered to a host.',
    'counter',
    hosts((c) => c.rxPackets),
  );
  metric(
    'sc2c_lab_host_rx_bytes_total',
    'IP bytes delivered to a host.',
    'counter',
    hosts((c) => c.rxBytes),
  );
  metric(
    'sc2c_lab_host_undecodable_total',
    'Packets from a host the lab does not route.',
    'counter',
    hosts((c) => c.undecodable),
  );
  metric(
    'sc2c_lab_nat_mappings',
    'Live mappings of a userspace NAT.',
    'gauge',
    status.nats
      .filter((n) => n.mappings !== null)
      .map((n) => [{ nat: n.name, profile: n.profile }, n.mappings!]),
  );
  return `${lines.join('\n')}\n`;
}
