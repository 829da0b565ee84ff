#!/usr/bin/env bash
# Installs the Debian packages that skein's tests, demo and benchmarks use,
# skipping the ones already present. Safe to run again.
set -euo pipefail

# command -> package that provides it
declare -A want=(
  [ip]=iproute2
  [iptables]=iptables
  [nft]=nftables
  [conntrack]=conntrack
  [ping]=iputils-ping
  [iperf3]=iperf3
  [openssl]=openssl # the test control plane's certificates
  [curl]=curl
  [flock]=util-linux
  [setsid]=util-linux
  [unshare]=util-linux
  [nsenter]=util-linux
  [containerd]=containerd # the real nodes' container runtime (Debian's 1.6)
  [ctr]=containerd
  [runc]=runc
  [nc.openbsd]=netcat-openbsd # the upstream test image's nc (make e2e)
  [busybox]=busybox-static    # and its small tools
  [wget]=wget
  [dig]=bind9-dnsutils        # the upstream DNS tests' probe
)

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u) # one package, many commands
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
