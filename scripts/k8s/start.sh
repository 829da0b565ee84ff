#!/usr/bin/env bash
# Starts a one-machine control plane on 127.0.0.1 in the background:
# etcd, kube-apiserver and, unless CONTROLLER_MANAGER=0,
# kube-controller-manager with the controllers skein's tests need:
#   endpointslice, endpointslice-mirroring  EndpointSlices from Services and Pods
#   node-ipam                               each Node's podCIDRs from 10.244.0.0/16
#   serviceaccount                          "default" ServiceAccounts (Pods need one)
#   namespace, garbage-collector            deleting namespaces and owned objects
# No scheduler and no node-lifecycle controller: without kubelets the
# latter would mark every Node NotReady. With REAL_NODES=1 (kubelets
# will register), also the controllers a cluster of real nodes runs on
# (deployment, replicaset, daemonset, node-lifecycle, taint-eviction,
# pod-garbage-collector, root-ca-certificate-publisher, whose ConfigMap
# every Pod's token volume mounts) and kube-scheduler. Binaries from
# scripts/k8s/build.sh.
#
# Environment (default):
#   SKEIN_K8S_HOME  where build.sh put bin/ (/var/tmp/skein-k8s)
#   SKEIN_K8S_RUN   run directory (/tmp/skein-test-k8s): admin.kubeconfig, pki/,
#                   log/, etcd-data/, <component>.pid
#   AUTHZ_MODE      RBAC or AlwaysAllow (RBAC; Node,RBAC with REAL_NODES=1); admin
#                   is system:masters either way
#   WIPE=1          start from an empty etcd
#   CONTROLLER_MANAGER=0  etcd and the API server only
#   APISERVER_PORT (17443), ETCD_PORT (17379; peers on the next port),
#   CONTROLLER_MANAGER_PORT (17257), SCHEDULER_PORT (17259)
#   REAL_NODES=1    the controllers and the scheduler real nodes need
# Ports outside the usual ones, so that a real control plane on the same
# machine is never hit. Ready in about 3 s. On any failure, what it started
# is stopped again (scripts/k8s/stop.sh), and it exits 1.
set -Eeuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SKEIN_K8S_HOME:-/var/tmp/skein-k8s}/bin
run=${SKEIN_K8S_RUN:-/tmp/skein-test-k8s}
api_port=${APISERVER_PORT:-17443}
etcd_port=${ETCD_PORT:-17379}
kcm_port=${CONTROLLER_MANAGER_PORT:-17257}
sched_port=${SCHEDULER_PORT:-17259}
real=${REAL_NODES:-0}
authz=${AUTHZ_MODE:-RBAC}
[ "$real" = 1 ] && authz=${AUTHZ_MODE:-Node,RBAC} # kubelets are authorised as their Node
service_cidr=10.96.0.0/16
cluster_cidr=10.244.0.0/16

die() { echo "k8s start: $*" >&2; exit 1; }
for t in openssl curl setsid flock; do
  command -v "$t" >/dev/null || die "needs $t (scripts/install-deps.sh installs it)"
done
components="etcd kube-apiserver kube-controller-manager"
[ "$real" = 1 ] && components+=" kube-scheduler"
for b in $components; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: run scripts/k8s/build.sh"
done
mkdir -p "$run/pki" "$run/log"
run=$(cd "$run" && pwd) # absolute: stop.sh finds it in the daemons' command lines
exec 8>"$run/.lock"
flock -n 8 || die "another start is running for $run"
for c in $components; do
  if [ -f "$run/$c.pid" ] && kill -0 "$(cat "$run/$c.pid")" 2>/dev/null; then
    die "$c of $run still runs (pid $(cat "$run/$c.pid")): scripts/k8s/stop.sh first"
  fi
done
for p in "$api_port" "$etcd_port" $((etcd_port + 1)) "$kcm_port" "$sched_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is taken"; fi
done
[ "${WIPE:-0}" = 1 ] && rm -rf "$run/etcd-data"

started=0
trap '[ $started = 1 ] && SKEIN_K8S_RUN="$run" "$here/stop.sh" >&2; die "failed at line $LINENO"' ERR
trap '[ $started = 1 ] && SKEIN_K8S_RUN="$run" "$here/stop.sh" >&2; die interrupted' INT TERM

# Certificates, made once per run directory and kept: a kubeconfig
# handed out stays valid across restarts.
pki=$run/pki
if ! [ -f "$pki/ca.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=skein-test-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null # ServiceAccount token signing
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi
cert() { # name subject extensions
  [ -f "$pki/$1.crt" ] && return
  printf '%b\n' "$3" > "$pki/$1.ext"
  openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
  rm -f "$pki/$1.csr"
}
server='keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth'
client='keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
cert apiserver /CN=kube-apiserver "$server\nsubjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin /O=system:masters/CN=admin "$client"
cert controller-manager /CN=system:kube-controller-manager "$client" # the name bootstrap RBAC grants
cert controller-manager-serving /CN=kube-controller-manager "$server\nsubjectAltName=IP:127.0.0.1"
cert scheduler /CN=system:kube-scheduler "$client"
cert scheduler-serving /CN=kube-scheduler "$server\nsubjectAltName=IP:127.0.0.1"
chmod 600 "$pki"/*.key

kubeconfig() { # file user cert
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: skein-test
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")}
users:
- name: $2
  user: {client-certificate-data: $(base64 -w0 < "$pki/$3.crt"), client-key-data: $(base64 -w0 < "$pki/$3.key")}
contexts:
- name: skein-test
  context: {cluster: skein-test, user: $2}
current-context: skein-test
KC
  chmod 600 "$1"
}
kubeconfig "$run/admin.kubeconfig" admin admin
kubeconfig "$run/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
kubeconfig "$run/scheduler.kubeconfig" system:kube-scheduler scheduler

launch() { # name command...: in a session of its own, so it outlives this script
  local name=$1
  shift
  setsid "$@" > "$run/log/$name.log" 2>&1 < /dev/null 8>&- &
  echo $! > "$run/$name.pid"
  started=1
}
wait_ready() { # name probe...: every 100 ms for up to 2 minutes
  local name=$1 deadline=$((SECONDS + 120))
  shift
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$run/$name.pid")" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      tail -20 "$run/log/$name.log" >&2
      false # the ERR trap stops everything
    fi
    sleep 0.1
  done
  echo "k8s start: $name ready (pid $(cat "$run/$name.pid"))" >&2
}
admin_curl() { curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$@"; }

launch etcd "$bin/etcd" --name skein-test --data-dir "$run/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-cluster "skein-test=http://127.0.0.1:$((etcd_port + 1))" --log-level warn
wait_ready etcd curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

# --endpoint-reconciler-type=none: the default reconciler refuses a
# loopback advertise address. --allow-privileged: network add-ons run
# privileged DaemonSets. The kubelet flags: logs and exec reach a
# kubelet (which refuses anonymous clients) as admin, at its node's
# InternalIP (its hostname resolves nowhere).
launch kube-apiserver "$bin/kube-apiserver" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$api_port" --etcd-servers="http://127.0.0.1:$etcd_port" --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" --anonymous-auth=false --authorization-mode="$authz" \
  --service-cluster-ip-range="$service_cidr" --allow-privileged=true \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --endpoint-reconciler-type=none --profiling=false \
  --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key" \
  --kubelet-preferred-address-types=InternalIP
wait_ready kube-apiserver admin_curl "https://127.0.0.1:$api_port/readyz"

controllers=endpointslice-controller,endpointslice-mirroring-controller,node-ipam-controller,serviceaccount-controller,namespace-controller,garbage-collector-controller
if [ "$real" = 1 ]; then
  controllers+=,deployment-controller,replicaset-controller,daemonset-controller,node-lifecycle-controller
  controllers+=,taint-eviction-controller,pod-garbage-collector-controller,root-ca-certificate-publisher-controller
fi
if [ "${CONTROLLER_MANAGER:-1}" = 1 ]; then
  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$run/controller-manager.kubeconfig" --leader-elect=false \
    --controllers="$controllers" \
    --use-service-account-credentials=true --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" --allocate-node-cidrs=true --cluster-cidr="$cluster_cidr" \
    --node-cidr-mask-size=24 --service-cluster-ip-range="$service_cidr" --profiling=false \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --tls-cert-file="$pki/controller-manager-serving.crt" --tls-private-key-file="$pki/controller-manager-serving.key" \
    --client-ca-file="$pki/ca.crt" --authentication-skip-lookup=true \
    --authentication-kubeconfig="$run/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$run/controller-manager.kubeconfig"
  # Ready once Pods can be made in "default": its ServiceAccount exists.
  wait_ready kube-controller-manager admin_curl "https://127.0.0.1:$api_port/api/v1/namespaces/default/serviceaccounts/default"
fi
if [ "$real" = 1 ]; then
  launch kube-scheduler "$bin/kube-scheduler" --kubeconfig="$run/scheduler.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$sched_port" \
    --tls-cert-file="$pki/scheduler-serving.crt" --tls-private-key-file="$pki/scheduler-serving.key" \
    --client-ca-file="$pki/ca.crt" --authentication-skip-lookup=true \
    --authentication-kubeconfig="$run/scheduler.kubeconfig" --authorization-kubeconfig="$run/scheduler.kubeconfig"
  wait_ready kube-scheduler curl -fsS --max-time 2 -k "https://127.0.0.1:$sched_port/healthz"
fi
trap - ERR INT TERM
