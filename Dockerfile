# syntax=docker/dockerfile:1
# The one image of runboat: the API and both worker roles, chosen by the command
# (docs/operations.md, "The image"):
#   docker run IMAGE api              the REST API, webhook and web UI (port 8000)
#   docker run IMAGE worker builds    build workflows, their short activities, the drift watcher
#   docker run IMAGE worker init      the init Jobs (scale this one)
#   docker run IMAGE worker           both worker roles in one process
# tini is PID 1: it forwards SIGTERM to node and reaps zombies. Logs are JSON lines on stdout.

ARG NODE_IMAGE=node:20-bookworm-slim

# Compiles TypeScript and prebuilds the workflow bundle (npm run build → dist/).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY dev/build.ts dev/run-command.ts dev/
COPY domain domain
COPY workflows workflows
COPY activities activities
COPY lib lib
COPY watcher watcher
COPY worker worker
COPY api api
COPY kubefiles kubefiles
RUN npm run build

# Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
# The Temporal core bridge ships prebuilt libraries for five platforms: keep this one's only.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force \
    && find node_modules/@temporalio/core-bridge/releases -mindepth 1 -maxdepth 1 \
        ! -name "$(uname -m)-unknown-linux-gnu" -exec rm -rf {} +

FROM ${NODE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV NODE_ENV=production \
    RUNBOAT_API_HOST=0.0.0.0 \
    RUNBOAT_API_PORT=8000
WORKDIR /app
COPY --from=deps /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
COPY --chmod=755 deploy/docker-entrypoint.sh /usr/local/bin/runboat
# The node user of the base image, by number so that Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/runboat"]
CMD ["api"]
