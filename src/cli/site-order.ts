/**
 * Site affinity for several signaling nodes (issue 24). A call between two users on different
 * nodes is handled by both (the caller's node coordinates, the callee's relays its half), so it
 * costs about twice a call within one node: `bench:signaling --nodes 2` measured 0.62 of one
 * node's set-ups per CPU-second with half the calls crossing, 0.88 with none. Gateways of one site
 * (a site's cameras and the operators who watch them) that start their server list at the same
 * node keep their calls on it; different sites spread over the nodes.
 */

/** Site names: lower-case letters, digits and '-', as node ids. */
export const SITE_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** `servers` rotated to start at the node `site` hashes to (FNV-1a 32-bit); unchanged without a site. */
export function bySite<T>(servers: readonly T[], site: string | undefined): T[] {
  if (site === undefined || servers.length < 2) return [...servers];
  let hash = 0x811c9dc5;
  for (let i = 0; i < site.length; i++) hash = Math.imul(hash ^ site.charCodeAt(i), 0x01000193) >>> 0;
  const first = hash % servers.length;
  return [...servers.slice(first), ...servers.slice(0, first)];
}
