#!/usr/bin/env bash
# PKI for the test cluster: one CA signs every serving and client cert, plus
# a service-account key pair and a kubeconfig per client. Sourced by node.sh,
# which sets CLUSTER_DIR, CLUSTER_NODE_IP, CLUSTER_NODE_NAME and
# CLUSTER_APISERVER_URL first. Existing files are kept, so a second
# `cluster_node_up` does not invalidate kubeconfigs handed out earlier.

# ECDSA P-256 throughout (also for service-account tokens, ES256): RSA key
# generation took ~15 s here with the CPUs busy, EC is instant.
_cluster_genkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# Issues $pki/<name>.{key,crt} signed by the CA. ext holds v3 extensions.
_cluster_cert() { # name subject ext
  local pki=$CLUSTER_DIR/pki name=$1 subj=$2 ext=$3
  [[ -s "$pki/$name.crt" && -s "$pki/$name.key" ]] && return 0
  _cluster_genkey "$pki/$name.key" || return 1
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" || return 1
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null || return 1
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# Writes a kubeconfig with the certs embedded, so the file stays usable when
# copied elsewhere (e.g. into a test's temp dir).
_cluster_kubeconfig() { # file cert-name user
  local pki=$CLUSTER_DIR/pki
  _cluster_put "$1" <<EOF || return 1
apiVersion: v1
kind: Config
clusters:
- name: model-csi
  cluster:
    server: $CLUSTER_APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 "$pki/$2.crt")
    client-key-data: $(base64 -w0 "$pki/$2.key")
contexts:
- name: model-csi
  context: {cluster: model-csi, user: $3}
current-context: model-csi
EOF
  chmod 600 "$1"
}

cluster_pki() {
  local pki=$CLUSTER_DIR/pki
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  local server_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  server_sans+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
  server_sans+=",IP:$CLUSTER_NODE_IP,IP:127.0.0.1,IP:10.96.0.1"
  mkdir -p "$pki" && chmod 700 "$pki"

  if [[ ! -s "$pki/ca.crt" || ! -s "$pki/ca.key" ]]; then
    echo "cluster: generating PKI in $pki" >&2
    _cluster_genkey "$pki/ca.key" || return 1
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=model-csi-test-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$pki/ca.crt" || return 1
  fi
  _cluster_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$server_sans" || return 1
  # The kubelet serves logs/exec with a CA-signed cert so the apiserver can
  # verify it (--kubelet-certificate-authority) instead of trusting anything.
  _cluster_cert kubelet-server "/CN=$CLUSTER_NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$CLUSTER_NODE_NAME,IP:$CLUSTER_NODE_IP,IP:127.0.0.1" || return 1
  _cluster_cert admin "/O=system:masters/CN=kubernetes-admin" "$client" || return 1
  _cluster_cert kube-controller-manager "/CN=system:kube-controller-manager" "$client" || return 1
  _cluster_cert kube-scheduler "/CN=system:kube-scheduler" "$client" || return 1
  _cluster_cert kubelet "/O=system:nodes/CN=system:node:$CLUSTER_NODE_NAME" "$client" || return 1
  _cluster_cert kube-proxy "/CN=system:kube-proxy" "$client" || return 1
  _cluster_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client" || return 1
  if [[ ! -s "$pki/sa.key" || ! -s "$pki/sa.pub" ]]; then
    _cluster_genkey "$pki/sa.key" || return 1
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" || return 1
  fi

  _cluster_kubeconfig "$KUBECONFIG" admin kubernetes-admin
  _cluster_kubeconfig "$CLUSTER_DIR/kube-controller-manager.kubeconfig" kube-controller-manager system:kube-controller-manager
  _cluster_kubeconfig "$CLUSTER_DIR/kube-scheduler.kubeconfig" kube-scheduler system:kube-scheduler
  _cluster_kubeconfig "$CLUSTER_DIR/kubelet.kubeconfig" kubelet "system:node:$CLUSTER_NODE_NAME"
  _cluster_kubeconfig "$CLUSTER_DIR/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
}
