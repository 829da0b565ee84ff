#!/usr/bin/env bash
# make bench: every benchmark, one after the other, Markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "## CNI plugin"; echo; scripts/bench/cni.sh; echo
echo "## Overlay convergence"; echo; scripts/bench/overlay.sh; echo
echo "## Dataplane"; echo; scripts/bench/dataplane.sh
echo; echo "## Service proxy"; echo; scripts/bench/proxy.sh
echo; echo "## Side by side with kube-proxy"; echo; scripts/bench/kube.sh
echo; echo "## Cluster DNS beside CoreDNS"; echo; scripts/bench/dns.sh
