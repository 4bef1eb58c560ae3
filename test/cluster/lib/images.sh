#!/usr/bin/env bash
# Container images of the local single-node e2e cluster, built with no Docker engine and no
# image registry (none is reachable here): buildah (chroot isolation, overlay or vfs storage)
# assembles them from Debian packages, the Go module proxy and this repo, and each is written as a
# single-platform OCI archive that `ctr -n k8s.io images import` tags by name.
#
# Sourced by test/cluster/up.sh (under `set -euo pipefail`); run directly,
# `bash test/cluster/lib/images.sh` builds them all and prints the archive paths.
#   images_build_all          build what is missing or stale; sets IMAGE_PAUSE, IMAGE_TEST,
#                             IMAGE_BASE, IMAGE_DRIVER, IMAGE_PROVISIONER, IMAGES_ARCHIVES
#   images_import CMD...      `CMD images import --all-platforms` each archive, e.g.
#                             images_import ctr --address /run/x/containerd.sock -n k8s.io
# Everything is cached under /var/cache/model-csi (MODEL_CSI_CACHE overrides) so it outlives
# the checkout; MODEL_CSI_IMAGE_TAG overrides the driver image's tag.

IMAGES_CACHE=${MODEL_CSI_CACHE:-/var/cache/model-csi}
IMAGES_DIR=$IMAGES_CACHE/images
IMAGES_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
IMAGES_SCRIPT=$IMAGES_ROOT/test/cluster/lib/images.sh
PROVISIONER_VERSION=v5.3.0
PROVISIONER_BIN=$IMAGES_CACHE/csi-provisioner-$PROVISIONER_VERSION/bin/csi-provisioner
IMAGE_PAUSE=localhost/model-csi-test/pause:3.10
IMAGE_PROVISIONER=localhost/model-csi-test/csi-provisioner:$PROVISIONER_VERSION
IMAGE_TEST=''   # busybox; tag = Debian's busybox-static version, known once it is installed
IMAGE_BASE=''   # Node 20 on trixie; tag = hash of the mmdebstrap recipe
IMAGE_DRIVER='' # the repo's Dockerfile; tag = hash of its inputs
IMAGES_ARCHIVES=()
IMAGES_STORAGE='' # buildah's storage driver, chosen by images__storage

images__log() { echo "images: $*" >&2; }

# buildah with its storage in the cache, so the layer cache (above all the driver's `npm ci`
# layer) survives between runs.
images__buildah() {
  buildah --root "$IMAGES_CACHE/buildah/$IMAGES_STORAGE/root" \
    --runroot "$IMAGES_CACHE/buildah/$IMAGES_STORAGE/run" --storage-driver "$IMAGES_STORAGE" "$@"
}

# overlay where the kernel lets us mount it, else vfs (needs nothing, but stores every layer
# as a full copy of the rootfs: measured on the driver image, 6.6 GB instead of 0.8 GB, and a
# src/-only rebuild of 180 s instead of 14 s). MODEL_CSI_BUILDAH_DRIVER forces one.
images__storage() {
  local p=$IMAGES_CACHE/tmp/overlay-probe
  IMAGES_STORAGE=${MODEL_CSI_BUILDAH_DRIVER:-}
  [[ -n $IMAGES_STORAGE ]] && return 0
  IMAGES_STORAGE=vfs
  mkdir -p "$p/lower" "$p/upper" "$p/work" "$p/merged"
  if mount -t overlay overlay -o "lowerdir=$p/lower,upperdir=$p/upper,workdir=$p/work" "$p/merged" 2>/dev/null; then
    umount "$p/merged"
    IMAGES_STORAGE=overlay
  fi
  rm -rf "$p"
}

images__packages() {
  local p missing=()
  for p in buildah mmdebstrap busybox-static gcc libc6-dev jq; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  images__log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# An archive is fresh when it exists and the key it was written for is unchanged.
images__fresh() { [[ -s $1 && -f $1.key && $(<"$1.key") == "$2" ]]; }

# Keys of the small images: this script's recipe plus their own inputs.
images__key() { { sha256sum <"$IMAGES_SCRIPT"; printf '%s\n' "$@"; } | sha256sum | cut -c1-64; }

# Writes IMAGE as an OCI archive TAR, recording KEY. buildah writes the name as
# org.opencontainers.image.ref.name, which ctr 1.6.20 tags by; io.containerd.image.name (what
# `ctr export` writes) is added too, the annotation every containerd version imports by.
images__archive() { # image tar key
  local image=$1 tar=$2 key=$3 dir
  dir=$(mktemp -d "$IMAGES_CACHE/tmp/oci.XXXXXX")
  images__buildah push --quiet --format oci "$image" "oci:$dir/layout:$image" >/dev/null
  jq --arg n "$image" '.manifests[0].annotations["io.containerd.image.name"] = $n' \
    "$dir/layout/index.json" >"$dir/index.json"
  mv "$dir/index.json" "$dir/layout/index.json"
  tar -C "$dir/layout" -cf "$tar.tmp" oci-layout index.json blobs
  mv "$tar.tmp" "$tar"
  echo "$key" >"$tar.key"
  rm -rf "$dir"
  images__log "wrote ${tar##*/} ($(du -h "$tar" | cut -f1)) for $image"
}

# A from-scratch image of the files under DIR; the remaining arguments go to buildah config.
images__scratch() { # image dir config-args...
  local image=$1 dir=$2 ctr mnt
  shift 2
  ctr=$(images__buildah from scratch)
  mnt=$(images__buildah mount "$ctr")
  cp -a "$dir/." "$mnt/"
  images__buildah config --os linux --arch amd64 "$@" "$ctr"
  images__buildah rmi "$image" >/dev/null 2>&1 || true # no dangling old copy
  images__buildah commit --quiet --rm "$ctr" "$image" >/dev/null
}

images__pause() {
  local tar=$IMAGES_DIR/pause-3.10.tar src=$IMAGES_ROOT/test/cluster/images/pause.c key dir
  IMAGES_ARCHIVES+=("$tar")
  key=$(images__key "$(sha256sum <"$src")")
  images__fresh "$tar" "$key" && return 0
  images__log "building $IMAGE_PAUSE"
  dir=$(mktemp -d "$IMAGES_CACHE/tmp/pause.XXXXXX")
  gcc -static -O2 -Wall -Werror -s -o "$dir/pause" "$src"
  images__scratch "$IMAGE_PAUSE" "$dir" --entrypoint '["/pause"]'
  rm -rf "$dir"
  images__archive "$IMAGE_PAUSE" "$tar" "$key"
}

images__busybox() {
  local version tag tar key dir applet
  version=$(dpkg-query -W -f='${Version}' busybox-static) # e.g. 1:1.35.0-4+deb12u1+b1
  tag=${version#*:}
  tag=${tag//[^A-Za-z0-9_.-]/_} # a tag has no ':' or '+'
  IMAGE_TEST=localhost/model-csi-test/busybox:$tag
  tar=$IMAGES_DIR/busybox-$tag.tar
  IMAGES_ARCHIVES+=("$tar")
  key=$(images__key "$version")
  images__fresh "$tar" "$key" && return 0
  images__log "building $IMAGE_TEST"
  dir=$(mktemp -d "$IMAGES_CACHE/tmp/busybox.XXXXXX")
  install -D -m 0755 /bin/busybox "$dir/bin/busybox"
  # One symlink per applet at its usual path (bin/sh, usr/bin/sha256sum, ...), as the
  # official busybox image has.
  while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$dir/${applet%/*}"
    ln -s /bin/busybox "$dir/$applet"
  done < <(/bin/busybox --list-full)
  mkdir -p "$dir/etc" "$dir/root"
  mkdir -m 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  images__scratch "$IMAGE_TEST" "$dir" --cmd '["sh"]' \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  rm -rf "$dir"
  images__archive "$IMAGE_TEST" "$tar" "$key"
}

# csi-provisioner from the Go module proxy. `go install pkg@version` refuses a module with
# replace directives (this one pins ~30 k8s.io modules that way), so build in a writable copy
# of the downloaded module. Another helper may build the same path: reuse a working binary.
images__provisioner() {
  local tar=$IMAGES_DIR/csi-provisioner-$PROVISIONER_VERSION.tar key dir src go=${GO:-/usr/local/go/bin/go}
  IMAGES_ARCHIVES+=("$tar")
  if ! "$PROVISIONER_BIN" --version >/dev/null 2>&1; then
    images__log "building csi-provisioner $PROVISIONER_VERSION with go (a few minutes)"
    dir=$(mktemp -d "$IMAGES_CACHE/tmp/provisioner.XXXXXX")
    src=$(cd "$dir" && "$go" mod download -json \
      "github.com/kubernetes-csi/external-provisioner/v5@$PROVISIONER_VERSION" | jq -r .Dir)
    cp -r "$src" "$dir/src"
    chmod -R u+w "$dir/src"
    mkdir -p "${PROVISIONER_BIN%/*}"
    if ! (cd "$dir/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go" build -trimpath \
      -buildvcs=false -ldflags "-s -w -X main.version=$PROVISIONER_VERSION" \
      -o "$PROVISIONER_BIN.tmp.$$" ./cmd/csi-provisioner) >"$dir/go.log" 2>&1; then
      tail -n 30 "$dir/go.log" >&2
      return 1
    fi
    mv -f "$PROVISIONER_BIN.tmp.$$" "$PROVISIONER_BIN"
    rm -rf "$dir"
  fi
  key=$(images__key "$(sha256sum <"$PROVISIONER_BIN")")
  images__fresh "$tar" "$key" && return 0
  images__log "building $IMAGE_PROVISIONER"
  dir=$(mktemp -d "$IMAGES_CACHE/tmp/provisioner.XXXXXX")
  install -D -m 0755 "$PROVISIONER_BIN" "$dir/csi-provisioner"
  mkdir -m 1777 "$dir/tmp" # klog may write there; the binary needs nothing else
  images__scratch "$IMAGE_PROVISIONER" "$dir" --entrypoint '["/csi-provisioner"]'
  rm -rf "$dir"
  images__archive "$IMAGE_PROVISIONER" "$tar" "$key"
}

# The mirrors the host's apt uses (Label Debian / Debian-Security), so apt inside the image
# reaches whatever this machine can reach.
images__mirror() { # label default
  local uri
  # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
  uri=$(apt-get indextargets --format '$(LABEL) $(REPO_URI)' 2>/dev/null | awk -v l="$1" '$1 == l { print $2; exit }')
  echo "${uri:-$2}"
}

# Node 20 base for the Dockerfile's NODE_IMAGE: bookworm's nodejs is 18, trixie's is 20. It
# is only ever a build input, so it lives in buildah's storage and gets no archive. Like the
# official node images it has a `node` user and group 1000 with home /home/node (the
# Dockerfile builds as `USER node` with a uid=1000 npm cache mount).
images__base() {
  local main security args ctr mnt t0=$SECONDS
  main=$(images__mirror Debian http://deb.debian.org/debian/)
  security=$(images__mirror Debian-Security http://deb.debian.org/debian-security/)
  # shellcheck disable=SC2016,SC2054 # mmdebstrap expands the hooks' "$1"; commas are its lists
  args=(--variant=minbase --include=nodejs,npm,ca-certificates,passwd
    # No docs, man pages or translations (the dpkg config stays, so apt in the Dockerfile
    # skips them too); copyright files stay.
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --customize-hook='chroot "$1" groupadd --gid 1000 node'
    --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
    # The runtime provides these; mmdebstrap copies the host's.
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
    trixie - "deb $main trixie main" "deb $main trixie-updates main" "deb $security trixie-security main")
  IMAGE_BASE=localhost/model-csi-test/node20-trixie:$(printf '%s\n' "${args[@]}" | sha256sum | cut -c1-12)
  images__buildah inspect --type image "$IMAGE_BASE" >/dev/null 2>&1 && return 0
  images__log "building $IMAGE_BASE with mmdebstrap (about a minute)"
  ctr=$(images__buildah from scratch)
  mnt=$(images__buildah mount "$ctr")
  # Device nodes stay out of the image: the container runtime provides /dev.
  mmdebstrap --quiet "${args[@]}" | tar -C "$mnt" -xp --numeric-owner --exclude='./dev/*'
  images__buildah config --os linux --arch amd64 --cmd '["node"]' \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  images__buildah commit --quiet --rm "$ctr" "$IMAGE_BASE" >/dev/null
  images__log "built $IMAGE_BASE in $((SECONDS - t0)) s"
}

# The project's own image from the repo's Dockerfile, as `docker build` would make it.
images__driver() {
  local key tag tar old ver rev registry work vols t0=$SECONDS
  key=$({
    cd "$IMAGES_ROOT"
    find Dockerfile .dockerignore package.json package-lock.json tsconfig.json src proto -type f -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
    images__buildah images --noheading --no-trunc --format '{{.ID}}' "$IMAGE_BASE"
  } | sha256sum | cut -c1-64)
  tag=${MODEL_CSI_IMAGE_TAG:-${key:0:12}}
  IMAGE_DRIVER=localhost/model-csi:$tag
  tar=$IMAGES_DIR/model-csi-$tag.tar
  IMAGES_ARCHIVES+=("$tar")
  for old in "$IMAGES_DIR"/model-csi-*.tar; do # one driver archive at a time
    if [[ -e $old && $old != "$tar" ]]; then rm -f "$old" "$old.key"; fi
  done
  images__fresh "$tar" "$key" && return 0
  # The image is labelled with its inputs' key: only an archive was missing, or a rebuild.
  if [[ $(images__buildah inspect --type image --format '{{index .OCIv1.Config.Labels "model-csi.test/inputs"}}' "$IMAGE_DRIVER" 2>/dev/null) != "$key" ]]; then
    images__log "building $IMAGE_DRIVER from Dockerfile (about a minute; less with the layer cache)"
    ver=$(jq -r .version "$IMAGES_ROOT/package.json")
    rev=$(git -C "$IMAGES_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    work=$(mktemp -d "$IMAGES_CACHE/tmp/driver.XXXXXX")
    # npm in the build must trust what the host trusts (this machine's egress CA is only in
    # the host's bundle; Debian's nodejs reads the system store), and use the host's registry.
    vols=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
    registry=$(npm config get registry 2>/dev/null || true)
    if [[ -n $registry && $registry != https://registry.npmjs.org/ ]]; then
      printf 'registry=%s\n' "$registry" >"$work/npmrc"
      vols+=(--volume "$work/npmrc:/etc/npmrc:ro")
    fi
    # TMPDIR: buildah keeps RUN --mount=type=cache dirs (the npm cache) in its temp dir.
    if ! TMPDIR=$IMAGES_CACHE/buildah/tmp images__buildah bud --isolation chroot --layers --pull=never --format oci \
      --build-arg "NODE_IMAGE=$IMAGE_BASE" --build-arg "VERSION=$ver" --build-arg "REVISION=$rev" \
      --label "model-csi.test/inputs=$key" "${vols[@]}" \
      -f "$IMAGES_ROOT/Dockerfile" -t "$IMAGE_DRIVER" "$IMAGES_ROOT" >"$IMAGES_CACHE/driver-build.log" 2>&1; then
      tail -n 30 "$IMAGES_CACHE/driver-build.log" >&2
      images__log "driver build failed; full log: $IMAGES_CACHE/driver-build.log"
      return 1
    fi
    rm -rf "$work"
    # One driver image at a time: the build stages' layers stay as cache.
    while read -r old; do
      if [[ $old == localhost/model-csi:* && $old != "$IMAGE_DRIVER" ]]; then
        images__buildah rmi "$old" >/dev/null
      fi
    done < <(images__buildah images --noheading --format '{{.Name}}:{{.Tag}}')
    echo "built $IMAGE_DRIVER in $((SECONDS - t0)) s" >>"$IMAGES_CACHE/driver-build.log"
    images__log "built $IMAGE_DRIVER in $((SECONDS - t0)) s"
  fi
  images__archive "$IMAGE_DRIVER" "$tar" "$key"
}

images_build_all() {
  local t0=$SECONDS
  IMAGES_ARCHIVES=()
  images__packages
  mkdir -p "$IMAGES_DIR"
  rm -rf "$IMAGES_CACHE/tmp" && mkdir -p "$IMAGES_CACHE/tmp" "$IMAGES_CACHE/buildah/tmp"
  images__storage
  images__buildah rm --all >/dev/null # working containers a failed run left behind
  images__pause
  images__busybox
  images__provisioner
  images__base
  images__driver
  images__log "images ready in $((SECONDS - t0)) s"
}

images_import() { # ctr command...
  local tar
  ((${#IMAGES_ARCHIVES[@]})) || { images__log "images_import: run images_build_all first"; return 1; }
  for tar in "${IMAGES_ARCHIVES[@]}"; do
    images__log "importing ${tar##*/}"
    "$@" images import --all-platforms "$tar" >/dev/null
  done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  images_build_all
  printf '%s\n' "${IMAGES_ARCHIVES[@]}"
fi
