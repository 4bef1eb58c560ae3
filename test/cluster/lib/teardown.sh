#!/usr/bin/env bash
# Teardown and leftover checks for the test cluster. Sourced by node.sh,
# which defines the CLUSTER_* variables and _cluster_pids/_cluster_stop.
# cluster_node_down must work after a crash, a half-finished up, or when
# nothing was ever started, so every step tolerates missing pieces.

_CLUSTER_COMMS='etcd|containerd|containerd-shim|kube-apiserver|kube-controller|kube-scheduler|kubelet|kube-proxy|runc'

# Chains other tools own that we remove: kube-proxy/kubelet (KUBE-), CNI
# plugins (CNI-), and a dead dockerd's (DOCKER*) unless a dockerd still runs.
_cluster_chain_re() {
  if pgrep -x dockerd >/dev/null 2>&1; then echo '^(KUBE-|CNI-)'; else echo '^(KUBE-|CNI-|DOCKER)'; fi
}

_cluster_ipt_tools() {
  local t
  for t in iptables-legacy iptables-nft ip6tables-legacy ip6tables-nft; do
    command -v "$t-save" >/dev/null 2>&1 && echo "$t"
  done
  return 0
}

# CNI netns of our pods: named in our runc/bundle state, or holding an
# address from our pod subnet (another containerd may have cni-* ones too).
_cluster_netns() {
  local ns addrs
  {
    if [[ -d $CLUSTER_RUN_DIR ]]; then
      grep -rhoE 'netns/cni-[0-9a-f-]+' "$CLUSTER_RUN_DIR" \
        --include=state.json --include=config.json 2>/dev/null | sed 's|^netns/||' || true
    fi
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
      addrs=$(ip -n "$ns" -4 -o addr 2>/dev/null || true)
      [[ $addrs == *" ${CLUSTER_POD_CIDR%.*}."* ]] && echo "$ns"
    done
    true
  } | sort -u
}

# Mount points under our dirs plus the given netns bind mounts, deepest first.
_cluster_mounts() { # netns-names...
  local ns
  awk -v a="$CLUSTER_DIR" -v b="$CLUSTER_RUN_DIR" '
    { m = $5 }
    m == a || m == b || index(m, a "/") == 1 || index(m, b "/") == 1 { print m }
  ' /proc/self/mountinfo
  for ns in "$@"; do grep -qF " /run/netns/$ns " /proc/self/mountinfo && echo "/run/netns/$ns"; done
  return 0
}

# Processes inside the pod cgroups kubelet creates (cgroupfs driver, v1 and v2).
_cluster_pod_pids() {
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [[ -d $f ]]; then find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
  done
  return 0
}

_cluster_kill_containers() {
  local root=$CLUSTER_RUN_DIR/runc/k8s.io id pids i
  if [[ -d $root ]]; then
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      runc --root "$root" delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  # Anything a crashed runc left behind is still in the pod cgroups.
  for ((i = 0; i < 20; i++)); do
    pids=$(_cluster_pod_pids | sort -u)
    [[ -z $pids ]] && return 0
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
}

_cluster_unmount_all() { # netns-names...
  local pass m
  for ((pass = 0; pass < 10; pass++)); do
    [[ -z $(_cluster_mounts "$@") ]] && return 0
    # Shared propagation can make one umount remove several entries, so
    # failures in one pass are retried against a fresh mount list.
    for m in $(_cluster_mounts "$@" | sort -ru); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  [[ -z $(_cluster_mounts "$@") ]]
}

_cluster_iptables_clean() {
  local re t before after
  re=$(_cluster_chain_re)
  for t in $(_cluster_ipt_tools); do
    before=$("$t-save" 2>/dev/null) || continue
    # Drop our chain declarations, every rule in our chains, and every rule
    # elsewhere that jumps into them; restore the rest as it was.
    after=$(awk -v re="$re" '
      /^:/ { if (substr($1, 2) ~ re) next }
      /^-A / {
        if ($2 ~ re) next
        for (i = 3; i < NF; i++) if (($i == "-j" || $i == "-g") && $(i + 1) ~ re) next
      }
      { print }' <<<"$before")
    [[ "$before" == "$after" ]] || "$t-restore" -w 5 <<<"$after" || _clog "$t-restore failed"
  done
}

# CNI result caches of our containers (libcni writes them to /var/lib/cni
# whatever the IPAM dataDir), shim sockets nobody listens on any more, and
# container log links kubelet always puts in /var/log/containers.
_cluster_remove_host_files() {
  local f id live
  for f in /var/lib/cni/results/"$CLUSTER_CNI_NETWORK"-*; do
    [[ -e $f ]] || continue
    id=${f#/var/lib/cni/results/"$CLUSTER_CNI_NETWORK"-}; id=${id%-*}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  rm -rf "/var/lib/cni/networks/$CLUSTER_CNI_NETWORK"
  if [[ -d /run/containerd/s ]]; then
    live=$(ss -xlH 2>/dev/null | awk '{print $5}' || true)
    for f in /run/containerd/s/*; do
      [[ -S $f ]] && ! grep -qxF "$f" <<<"$live" && rm -f "$f"
    done
  fi
  for f in /var/log/containers/*; do
    [[ -L $f && $(readlink "$f") == "$CLUSTER_DIR/"* ]] && rm -f "$f"
  done
  return 0
}

# Puts back sysctls and removes host dirs that did not exist before the
# first cluster_node_up, if nothing else has put files there meanwhile.
_cluster_restore_host_state() {
  local f=$CLUSTER_DIR/host-state kind path val
  [[ -r $f ]] || return 0
  while read -r kind path val; do
    case $kind in
      sysctl) echo "$val" >"$path" 2>/dev/null || true ;;
      # /run/containerd may be in use by another containerd: only our socket dir.
      created) if [[ $path == /run/containerd ]]; then rmdir "$path/s" "$path" 2>/dev/null || true
               elif [[ -d $path ]]; then find "$path" -depth -type d -empty -delete 2>/dev/null || true
               fi ;;
    esac
  done <"$f"
  return 0
}

cluster_node_down() {
  local link ns d netns
  [[ $EUID -eq 0 ]] || { _clog "cluster_node_down must run as root"; return 1; }
  _clog "stopping cluster"
  netns=$(_cluster_netns) # before runc/containerd state goes away
  # kubelet first, so it does not restart containers while they are killed.
  _cluster_stop 'kubelet|kube-proxy|kube-controller|kube-scheduler'
  _cluster_kill_containers
  _cluster_stop 'containerd-shim|containerd|runc|kube-apiserver'
  _cluster_stop etcd # last: the apiserver may still be writing

  # shellcheck disable=SC2086 # one argument per netns name
  _cluster_unmount_all $netns || _clog "mounts left: $(_cluster_mounts | tr '\n' ' ')"
  for ns in $netns; do ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"; done
  for link in $(ip -o link show master "$CLUSTER_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$link" 2>/dev/null || true
  done
  for link in "$CLUSTER_BRIDGE" "$CLUSTER_IFACE"; do
    if ip link show "$link" >/dev/null 2>&1; then ip link delete "$link" || true; fi
  done
  if ip link show docker0 >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then ip link delete docker0 || true; fi
  _cluster_iptables_clean

  # Empty pod cgroups kubelet made (v1 controllers and unified), leaves first.
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [[ -d $d ]]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  _cluster_remove_host_files
  _cluster_restore_host_state

  if [[ -n $(_cluster_mounts) ]]; then
    _clog "not removing $CLUSTER_DIR: mounts remain"; return 1
  fi
  # --one-file-system: never follow into anything still mounted below.
  rm -rf --one-file-system "$CLUSTER_DIR" "$CLUSTER_RUN_DIR" || { _clog "cannot remove $CLUSTER_DIR"; return 1; }
  _clog "cluster stopped"
}

# Prints whatever of the cluster is still on the host; nothing when clean.
cluster_leftovers() {
  local t re p
  # shellcheck disable=SC2046 # one argument per netns name
  _cluster_mounts $(_cluster_netns) | sed 's/^/mount: /'
  for p in "$CLUSTER_IFACE" "$CLUSTER_BRIDGE"; do
    ip link show "$p" >/dev/null 2>&1 && echo "interface: $p"
  done
  if ip link show docker0 >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then echo "interface: docker0"; fi
  { ip -o link show master "$CLUSTER_BRIDGE" 2>/dev/null || true; } |
    awk -F': ' '{sub(/@.*/, "", $2); print "interface: " $2}'
  _cluster_netns | sed 's/^/netns: /'
  re=$(_cluster_chain_re)
  for t in $(_cluster_ipt_tools); do
    { "$t-save" 2>/dev/null || true; } | awk -v re="$re" -v t="$t" '
      /^\*/ { table = substr($0, 2) }
      /^:/ && substr($1, 2) ~ re { print "chain: " t " " table " " substr($1, 2) }'
  done
  for p in $(_cluster_pids "$_CLUSTER_COMMS") $(_cluster_pod_pids | sort -un); do
    echo "process: $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"
  done
  for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $p ]] && echo "cgroup: $p"
  done
  for p in "$CLUSTER_DIR" "$CLUSTER_RUN_DIR" "/var/lib/cni/networks/$CLUSTER_CNI_NETWORK" \
           /var/lib/cni/results/"$CLUSTER_CNI_NETWORK"-*; do
    [[ -e $p ]] && echo "path: $p"
  done
  for p in /var/log/containers/*; do
    [[ -L $p && $(readlink "$p") == "$CLUSTER_DIR/"* ]] && echo "path: $p"
  done
  return 0
}
