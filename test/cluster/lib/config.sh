#!/usr/bin/env bash
# Config files for containerd, the CNI network, kubelet and kube-proxy of the
# test cluster. Sourced by node.sh (which defines the CLUSTER_* variables);
# regenerated on every cluster_node_up; a file is only replaced when its
# content changes (kube-proxy exits on any write to its config), and the
# changed ones are listed in _CLUSTER_CHANGED so their process is restarted.

_CLUSTER_CHANGED=""

_cluster_put() { # path < content
  (umask 077 && cat >"$1.new") || return 1
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; return 0; fi
  mv -f "$1.new" "$1" && _CLUSTER_CHANGED+=" $1"
}

_cluster_write_configs() {
  local d=$CLUSTER_DIR
  _CLUSTER_CHANGED=""
  mkdir -p "$d/containerd" "$d/cni/net.d" || return 1

  # Every path containerd would otherwise put under /var/lib/containerd,
  # /run/containerd or /opt/containerd is pointed into our dirs, except shim
  # sockets: containerd 1.6 hardcodes /run/containerd/s (teardown cleans it).
  _cluster_put "$d/containerd/config.toml" <<EOF || return 1
version = 2
root = "$d/containerd/root"
state = "$CLUSTER_RUN_DIR/containerd/state"
oom_score = 0

[grpc]
  address = "$CLUSTER_CONTAINERD_SOCK"

[ttrpc]
  address = "$CLUSTER_CONTAINERD_SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CLUSTER_PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: without this, runc fails every sandbox
  # setting the pause container's negative oom_score_adj ("can't get final
  # child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # Host is cgroup v1 with no systemd; kubelet also uses cgroupfs.
        SystemdCgroup = false
        # runc state would default to /run/containerd/runc.
        Root = "$CLUSTER_RUN_DIR/runc"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CLUSTER_CONTAINERD_CERTS_D"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
EOF

  # ipMasq false: pods only talk to the node and to each other; nothing here
  # should be NATed out of eth0. host-local state lives under CLUSTER_DIR.
  _cluster_put "$d/cni/net.d/10-$CLUSTER_CNI_NETWORK.conflist" <<EOF || return 1
{
  "cniVersion": "1.0.0",
  "name": "$CLUSTER_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CLUSTER_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/cni/networks",
        "ranges": [[{"subnet": "$CLUSTER_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  # Eviction and image GC are effectively off: the test images are imported
  # by hand and cannot be pulled back, and a full-ish disk must not evict.
  _cluster_put "$d/kubelet-config.yaml" <<EOF || return 1
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $CLUSTER_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/pki/ca.crt}
authorization:
  mode: Webhook
tlsCertFile: $d/pki/kubelet-server.crt
tlsPrivateKeyFile: $d/pki/kubelet-server.key
rotateCertificates: false
serverTLSBootstrap: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CLUSTER_CONTAINERD_SOCK
failSwapOn: false
clusterDomain: cluster.local
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $d/pod-logs
volumePluginDir: $CLUSTER_KUBELET_DIR/volume-plugins
maxPods: 110
EOF

  # conntrack zeros keep kube-proxy from rewriting host conntrack sysctls;
  # node ports only on the node IP, never on eth0 or localhost.
  _cluster_put "$d/kube-proxy.yaml" <<EOF || return 1
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $d/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $CLUSTER_POD_CIDR
hostnameOverride: $CLUSTER_NODE_NAME
bindAddress: $CLUSTER_NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$CLUSTER_NODE_IP/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}
