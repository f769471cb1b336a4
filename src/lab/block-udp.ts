/**
 * Issue 21: a lab host whose network blocks UDP, as some enterprise and hotel networks do. An
 * nftables table in the host's namespace drops every UDP datagram in or out except on loopback
 * (the gateway's own ffmpeg talks to it over loopback UDP); TCP and ICMP pass.
 */
import { nsExec } from './netns.ts';

export const BLOCK_UDP_TABLE = 'sc2c_block_udp';

export async function blockUdp(namespace: string): Promise<void> {
  await nsExec(
    namespace,
    'nft',
    [
      `add table inet ${BLOCK_UDP_TABLE}`,
      `add chain inet ${BLOCK_UDP_TABLE} out { type filter hook output priority 0; policy accept; }`,
      `add rule inet ${BLOCK_UDP_TABLE} out oifname != "lo" meta l4proto udp counter drop`,
      `add chain inet ${BLOCK_UDP_TABLE} in { type filter hook input priority 0; policy accept; }`,
      `add rule inet ${BLOCK_UDP_TABLE} in iifname != "lo" meta l4proto udp counter drop`,
    ].join('; '),
  );
}

/** UDP packets the block dropped so far, both ways (nftables counters). */
export async function blockedUdpPackets(namespace: string): Promise<number> {
  const listing = await nsExec(namespace, 'nft', `list table inet ${BLOCK_UDP_TABLE}`);
  let total = 0;
  for (const match of listing.matchAll(/counter packets (\d+)/g)) total += Number(match[1]);
  return total;
}
