# syntax=docker/dockerfile:1
# model-csi: one image for both plugins.
#   docker build -t model-csi:0.1.0 .
#   docker run --rm model-csi:0.1.0 version
# The chart runs it as `node …` (DaemonSet, privileged: it makes bind mounts) and as
# `controller …` (Deployment, non-root).

# Debian trixie: its util-linux (2.41) makes a read-only bind mount with the fd-based mount
# API, read-only from the moment it appears. The driver does not rely on that (it stages every
# model read-only before binding it to the target, see src/mount/linux-mounter.ts), but any
# `mount --bind -o ro` in this image is then safe too. Bookworm's 2.38 leaves the propagated
# copy writable.
ARG NODE_IMAGE=node:20-trixie-slim

# ---- build: dev dependencies, TypeScript compile, then drop the dev dependencies ----------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Build as the base image's unprivileged `node` user (uid 1000): npm install scripts of
# third-party packages never run as root.
RUN chown node:node /src
USER node
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
# Manifests first so the dependency layer is reused while only sources change.
COPY --chown=node:node package.json package-lock.json ./
RUN --mount=type=cache,target=/home/node/.npm,uid=1000,gid=1000 npm ci
COPY --chown=node:node tsconfig.json ./
COPY --chown=node:node src ./src
COPY --chown=node:node proto ./proto
# Source maps stay: they are small and make a stack trace from a node readable.
RUN npm run build \
 && test -f dist/main.js && test -f dist/store/hash-worker.js \
 && npm prune --omit=dev

# ---- runtime: production dependencies, compiled JS, the CSI proto, mount(8) ---------------
FROM ${NODE_IMAGE}
# mount/umount (util-linux) make and remove the read-only bind mounts; ca-certificates is the
# system trust store (Node uses its bundled roots unless NODE_OPTIONS=--use-openssl-ca, and a
# registry's own CA comes from the config file's `registries.<host>.ca`).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mount util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# After the apt layer, so a new commit does not invalidate it.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="model-csi" \
      org.opencontainers.image.description="Kubernetes CSI driver that mounts AI models stored in OCI registries as read-only volumes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/example/model-csi"

WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto

# No USER here: the node plugin needs root (and privileged) to mount; the chart runs the
# controller as uid 1000 (`node`) with a read-only root filesystem.
# The driver handles SIGTERM itself (Node as PID 1 gets no default signal handlers).
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["--help"]
