#!/usr/bin/env bash
# Installs the Debian packages sc2c-gateway needs, only those that are missing, so that a fresh
# machine (or CI) needs nothing installed by hand. Safe to run again.
set -euo pipefail

# One line per package: why it is needed.
PACKAGES=(
  iproute2   # `ip netns`, veth: the kernel lab's hosts (tests skip the lab when namespaces are absent)
  nftables   # the lab's kernel NAT boxes (masquerade, masquerade random-fully); the relay's kernel fast path (issue 23)
  clang      # builds the relay's eBPF kernel path (src/relay/bpf/relay.bpf.c, clang -target bpf) at start
  bpftool    # loads and pins that program and its maps, and reads its counters
  ethtool    # the kernel relay test turns veth checksum offload off, so that checksums are verified
  conntrack  # `sc2c lab exec <nat> -- conntrack -F` flushes a kernel NAT box's mappings
  gcc        # bench:relay compiles its load generator (scripts/udp-load.c)
  coturn     # the real STUN/TURN implementation we interoperate with (turnutils_natdiscovery, turnserver)
  curl       # tests read the server's admin HTTP API from inside a lab namespace
  ffmpeg     # media: H.264/Opus encoding, MP4 recording, ffprobe checks (FFMPEG_PATH overrides)
  systemd    # systemd-analyze verify/security on the units in deploy/ (nothing is started with it)
  miniupnpd-nftables  # the lab's kernel:miniupnpd NAT: a real UPnP IGD / NAT-PMP / PCP router (issue 20)
  chromium   # the browser test of the operator console (issue 22), driven by puppeteer-core
  redis-server  # issue 24: the registrations and dialogs store shared by several server nodes (store: redis://)
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all system packages present (${PACKAGES[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: missing packages: ${missing[*]}; run this script as root (sudo $0)" >&2
  exit 1
fi

echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Tests start their own turnserver where they need one; the distribution's service stays off.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn redis-server >/dev/null 2>&1 || true; fi
# The lab starts its own miniupnpd inside a NAT's namespace; the distribution's service stays off.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now miniupnpd >/dev/null 2>&1 || true; fi
