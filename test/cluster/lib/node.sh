#!/usr/bin/env bash
# A single-node Kubernetes cluster run as plain host processes: etcd,
# containerd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
# and kube-proxy, each with its own config, state under $CLUSTER_DIR and
# sockets under $CLUSTER_RUN_DIR, so nothing collides with host services.
# Sourced by test/cluster/up.sh and down.sh. Entry points:
#   cluster_node_up, cluster_node_down, cluster_leftovers, cluster_ctr ARGS...

_CLUSTER_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/cluster/lib/binaries.sh
source "$_CLUSTER_LIB/binaries.sh"
# shellcheck source=test/cluster/lib/pki.sh
source "$_CLUSTER_LIB/pki.sh"
# shellcheck source=test/cluster/lib/config.sh
source "$_CLUSTER_LIB/config.sh"
# shellcheck source=test/cluster/lib/teardown.sh
source "$_CLUSTER_LIB/teardown.sh"

CLUSTER_DIR=/var/lib/model-csi-cluster
CLUSTER_RUN_DIR=/run/model-csi-cluster
CLUSTER_NODE_NAME=model-csi-node
# kubelet rejects a loopback node IP and eth0 must not be used, so the node
# address lives on an interface made here (dummy, or a portless bridge where
# the kernel has no dummy driver). Test servers for pods can listen on it.
CLUSTER_NODE_IP=10.251.0.1
CLUSTER_IFACE=mcsi0
CLUSTER_BRIDGE=mcsi-cni0
CLUSTER_CNI_NETWORK=model-csi
CLUSTER_POD_CIDR=10.252.0.0/24
CLUSTER_SERVICE_CIDR=10.96.0.0/16
CLUSTER_APISERVER_URL=https://$CLUSTER_NODE_IP:6443
CLUSTER_ETCD_PORT=12379 # not 2379/2380, so a host etcd can coexist
CLUSTER_KUBELET_DIR=$CLUSTER_DIR/kubelet
CLUSTER_CONTAINERD_SOCK=$CLUSTER_RUN_DIR/containerd/containerd.sock
# containerd registry hosts dir (<host:port>/hosts.toml), in case pods must
# pull from a local registry instead of using imported images.
CLUSTER_CONTAINERD_CERTS_D=$CLUSTER_DIR/containerd/certs.d
CLUSTER_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig
CLUSTER_PAUSE_IMAGE=${CLUSTER_PAUSE_IMAGE:-localhost/model-csi-test/pause:3.10}
CLUSTER_READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-180}
export KUBECONFIG=$CLUSTER_KUBECONFIG
export PATH="$CLUSTER_K8S_BIN:$PATH"

_clog() { echo "cluster: $*" >&2; }

cluster_ctr() { ctr --address "$CLUSTER_CONTAINERD_SOCK" -n k8s.io "$@"; }

_cluster_kubectl() { "$CLUSTER_K8S_BIN/kubectl" --kubeconfig "$CLUSTER_KUBECONFIG" "$@"; }

_cluster_install_deps() {
  local need=() cmd pkg
  for cmd in etcd:etcd-server containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
             iptables:iptables ip:iproute2 openssl:openssl curl:curl conntrack:conntrack ctr:containerd; do
    pkg=${cmd#*:}; cmd=${cmd%%:*}
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "$cmd" ]] || need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  _clog "installing ${need[*]}"
  # policy-rc.d 101 stops dpkg from starting Debian's own etcd/containerd
  # services (with or without systemd); ours run with their own configs.
  local policy=/usr/sbin/policy-rc.d made=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; made=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; }
  local rc=$?
  ((made)) && rm -f $policy
  return $rc
}

# Debian's packaged units would start a second containerd/etcd at boot.
_cluster_disable_host_services() {
  [[ -d /run/systemd/system ]] || return 0
  local unit
  for unit in containerd.service etcd.service; do
    systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null || continue
    _clog "disabling host $unit"
    systemctl disable --now "$unit" >&2 || true
  done
}

# Records values that kubelet, kube-proxy and the CNI bridge change, once per
# cluster lifetime, so cluster_node_down can put them back.
_cluster_save_host_state() {
  local f=$CLUSTER_DIR/host-state key p
  [[ -e $f ]] && return 0
  {
    for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
               net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic \
               kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
      p=/proc/sys/${key//.//}
      [[ -r $p ]] && echo "sysctl $p $(cat "$p")"
    done
    # Host dirs our components create regardless of their config.
    for p in /var/log/containers /var/lib/cni /run/netns /run/containerd; do
      [[ -e $p ]] || echo "created $p"
    done
  } >"$f.tmp" && mv "$f.tmp" "$f"
}

_cluster_network_up() {
  # This VM's kernel has no dummy driver (and no modprobe); a bridge with no
  # ports holds a local address just as well.
  if ! ip link show "$CLUSTER_IFACE" >/dev/null 2>&1; then
    ip link add "$CLUSTER_IFACE" type dummy 2>/dev/null || ip link add "$CLUSTER_IFACE" type bridge || return 1
  fi
  [[ $(ip -4 -o addr show dev "$CLUSTER_IFACE") == *" $CLUSTER_NODE_IP/"* ]] ||
    ip addr add "$CLUSTER_NODE_IP/32" dev "$CLUSTER_IFACE" || return 1
  ip link set "$CLUSTER_IFACE" up || return 1
  # Bridged pod traffic must pass kube-proxy's iptables rules (ClusterIPs);
  # forwarding the bridge plugin would enable anyway. Both are restored on down.
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 >/proc/sys/net/ipv4/ip_forward
}

# The CSI node plugin mounts with Bidirectional propagation under
# <kubelet dir>/pods, which the runtime refuses unless that path is on a
# shared mount; `/` is private here, so make the kubelet dir its own mount.
_cluster_shared_kubelet_dir() {
  mkdir -p "$CLUSTER_KUBELET_DIR"
  if ! findmnt -rn -M "$CLUSTER_KUBELET_DIR" >/dev/null; then
    mount --bind "$CLUSTER_KUBELET_DIR" "$CLUSTER_KUBELET_DIR" || return 1
  fi
  mount --make-rshared "$CLUSTER_KUBELET_DIR"
}

# pids of our processes named $1 (comm), found by our dirs in their args, so
# leftovers of a crashed run are caught even without pid files.
_cluster_pids() { # comm-regex
  local p c cmd
  for p in /proc/[0-9]*; do
    # Builtin reads only: forking per process makes a scan take seconds.
    read -r c 2>/dev/null <"$p/comm" || continue
    [[ $c =~ ^($1)$ ]] || continue
    read -r -d '' cmd 2>/dev/null < <(tr '\0' ' ' <"$p/cmdline") || true
    [[ $cmd == *"$CLUSTER_DIR/"* || $cmd == *"$CLUSTER_RUN_DIR/"* ]] && echo "${p#/proc/}"
  done
  return 0
}

# SIGTERM, then SIGKILL whatever is left after 10 s.
_cluster_stop() { # comm-regex
  local pids i
  pids=$(_cluster_pids "$1")
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086 # word splitting of the pid list is intended
  kill $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    sleep 0.2
    # shellcheck disable=SC2086
    kill -0 $pids 2>/dev/null || return 0
  done
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
}

# Starts a component unless it is already running; a stale copy without a
# live pid file, or one whose config file changed, is stopped first.
# Detached with setsid so ^C on the caller does not take the cluster down.
_cluster_start() { # name comm config cmd...
  local name=$1 comm=$2 conf=$3 pidf=$CLUSTER_DIR/pids/$1.pid pid
  shift 3
  pid=$(cat "$pidf" 2>/dev/null || true)
  if [[ -n $pid ]] && [[ " $(_cluster_pids "$comm" | tr '\n' ' ') " == *" $pid "* ]]; then
    if [[ -z $conf || " $_CLUSTER_CHANGED " != *" $conf "* ]]; then
      _clog "$name already running (pid $pid)"; return 0
    fi
    _clog "$name config changed, restarting"
  fi
  _cluster_stop "$comm"
  rm -f "$pidf" # _cluster_wait must not mistake the old pid for the new one
  _clog "starting $name"
  echo "=== $(date -u +%FT%TZ) start" >>"$CLUSTER_DIR/logs/$name.log"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" </dev/null >>"$CLUSTER_DIR/logs/$name.log" 2>&1 &
}

# Polls cmd until it succeeds; gives up early if the component has exited.
_cluster_wait() { # name timeout-seconds cmd...
  local name=$1 t=$2 i pid
  shift 2
  for ((i = 0; i < t * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    pid=$(cat "$CLUSTER_DIR/pids/$name.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      _clog "$name exited; last lines of $CLUSTER_DIR/logs/$name.log:"
      tail -n 40 "$CLUSTER_DIR/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  _clog "$name did not become ready in ${t}s; last lines of $CLUSTER_DIR/logs/$name.log:"
  tail -n 40 "$CLUSTER_DIR/logs/$name.log" >&2 || true
  return 1
}

_cluster_node_ready() {
  [[ $(_cluster_kubectl get node "$CLUSTER_NODE_NAME" \
       -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

cluster_node_up() {
  local b=$CLUSTER_K8S_BIN pki=$CLUSTER_DIR/pki start=$SECONDS
  [[ $EUID -eq 0 ]] || { _clog "cluster_node_up must run as root"; return 1; }
  _cluster_cache_ok "$b" "${CLUSTER_K8S_COMPONENTS[@]}" || cluster_build_binaries || return 1
  _cluster_install_deps || return 1
  _cluster_disable_host_services
  mkdir -p "$CLUSTER_DIR"/{logs,pids,etcd,cni/net.d,cni/networks,pod-logs} "$CLUSTER_RUN_DIR" \
    "$CLUSTER_CONTAINERD_CERTS_D"
  chmod 700 "$CLUSTER_DIR/etcd"
  _cluster_save_host_state || return 1
  _cluster_network_up || return 1
  _cluster_shared_kubelet_dir || return 1
  cluster_pki || return 1
  _cluster_write_configs || return 1

  _cluster_start etcd etcd "" etcd --name model-csi --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$CLUSTER_ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$CLUSTER_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((CLUSTER_ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((CLUSTER_ETCD_PORT + 1))" \
    --initial-cluster "model-csi=http://127.0.0.1:$((CLUSTER_ETCD_PORT + 1))"
  _cluster_start containerd containerd "$CLUSTER_DIR/containerd/config.toml" \
    containerd --config "$CLUSTER_DIR/containerd/config.toml"
  _cluster_wait etcd 30 curl -fsS "http://127.0.0.1:$CLUSTER_ETCD_PORT/health" || return 1

  _cluster_start kube-apiserver kube-apiserver "" "$b/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$CLUSTER_ETCD_PORT" \
    --advertise-address="$CLUSTER_NODE_IP" --bind-address="$CLUSTER_NODE_IP" --secure-port=6443 \
    --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --enable-admission-plugins=NodeRestriction \
    --client-ca-file="$pki/ca.crt" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --profiling=false
  _cluster_wait kube-apiserver 90 _cluster_kubectl get --raw=/readyz || return 1

  # Single instances: leader election would only add a lease wait on restart.
  _cluster_start kube-controller-manager kube-controller "" "$b/kube-controller-manager" \
    --kubeconfig="$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CLUSTER_DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" --profiling=false
  _cluster_start kube-scheduler kube-scheduler "" "$b/kube-scheduler" \
    --kubeconfig="$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$CLUSTER_DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false
  _cluster_wait containerd 30 cluster_ctr version || return 1

  _cluster_start kubelet kubelet "$CLUSTER_DIR/kubelet-config.yaml" "$b/kubelet" \
    --config="$CLUSTER_DIR/kubelet-config.yaml" \
    --kubeconfig="$CLUSTER_DIR/kubelet.kubeconfig" --root-dir="$CLUSTER_KUBELET_DIR" \
    --cert-dir="$CLUSTER_KUBELET_DIR/pki" --node-ip="$CLUSTER_NODE_IP" \
    --hostname-override="$CLUSTER_NODE_NAME" --v=2
  _cluster_start kube-proxy kube-proxy "$CLUSTER_DIR/kube-proxy.yaml" "$b/kube-proxy" \
    --config="$CLUSTER_DIR/kube-proxy.yaml"

  _cluster_wait kube-controller-manager 60 curl -fsSk https://127.0.0.1:10257/healthz || return 1
  _cluster_wait kube-scheduler 60 curl -fsSk https://127.0.0.1:10259/healthz || return 1
  _cluster_wait kubelet "$CLUSTER_READY_TIMEOUT" _cluster_node_ready || return 1
  _clog "node Ready: $(_cluster_kubectl get node "$CLUSTER_NODE_NAME" --no-headers 2>&1)"
  # Pods are rejected until the namespace's default ServiceAccount exists,
  # and ClusterIP access needs kube-proxy's rules in place.
  _cluster_wait kube-controller-manager 60 _cluster_kubectl -n default get serviceaccount default || return 1
  _cluster_wait kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz || return 1
  _clog "node Ready: cluster up in $((SECONDS - start))s (KUBECONFIG=$CLUSTER_KUBECONFIG)"
}
