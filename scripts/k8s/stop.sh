#!/usr/bin/env bash
# Stops what scripts/k8s/start.sh started, newest first, by the PIDs it
# recorded: SIGTERM, then SIGKILL after 10 s. A recorded PID that is no
# longer that component of this run directory (reused) is left alone.
# WIPE=1 also drops the etcd data. Safe to run when nothing runs.
set -uo pipefail
run=${SKEIN_K8S_RUN:-/tmp/skein-test-k8s}
[ -d "$run" ] || exit 0
run=$(cd "$run" && pwd)
left=0
ours() { # name pid: alive, not a zombie, and started for this run directory
  local argv
  [ -r "/proc/$2/cmdline" ] || return 1
  [ "$(cut -d' ' -f3 "/proc/$2/stat" 2>/dev/null)" != Z ] || return 1
  argv=$(tr '\0' '\n' < "/proc/$2/cmdline")
  [[ "$(head -1 <<< "$argv")" == *"$1"* && "$argv" == *"$run/"* ]]
}
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f=$run/$c.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$c" "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 100); do ours "$c" "$pid" || break; sleep 0.1; done
    ours "$c" "$pid" && kill -KILL "$pid"
    for _ in $(seq 50); do ours "$c" "$pid" || break; sleep 0.1; done
    if ours "$c" "$pid"; then
      echo "k8s stop: $c (pid $pid) did not exit" >&2
      left=1
      continue
    fi
  fi
  rm -f "$f"
done
[ "${WIPE:-0}" = 1 ] && [ $left = 0 ] && rm -rf "$run/etcd-data"
exit $left
