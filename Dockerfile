# syntax=docker/dockerfile:1
#
# EventConfigService images: one Dockerfile, one final stage per production
# role. Build a role with
#
#   docker build --target api    -t ecs-api    .
#   docker build --target relay  -t ecs-relay  .
#   docker build --target worker -t ecs-worker .
#
# Every image also runs the embedded database migrations when started with the
# argument `migrate` (e.g. `docker run --rm -e ECS_DATABASE_URL=... ecs-api migrate`).
# The all-in-one ./apps/dev binary (embedded Kafka, local PostgreSQL) is for
# laptops and tests only and is deliberately not built here.

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
# go.mod declares `go 1.26.8`, and the official golang images set
# GOTOOLCHAIN=local, so the builder must be Go >= 1.26.8: the floating 1.26
# tag always points at the newest 1.26.x patch release. Override with
# --build-arg GO_VERSION=1.26.8 to pin an exact patch release.
#
# --platform=$BUILDPLATFORM runs the compiler natively even when building for
# another architecture (docker buildx --platform linux/arm64): the binaries
# are pure Go (CGO_ENABLED=0), so cross-compiling via GOOS/GOARCH is enough and
# avoids slow QEMU emulation.
ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build

WORKDIR /src

# Dependencies first: this layer is only rebuilt when go.mod/go.sum change, so
# editing source code does not re-download every module.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

# Then the source. The excludes keep local state out of the layer (and its
# cache key): .data holds the Kafka jars/logs of .ci/kafka-up.sh (tens of MB),
# bin/ holds `task build` output.
COPY --exclude=.git --exclude=.data --exclude=bin . .

ARG TARGETOS TARGETARCH
# CGO_ENABLED=0: fully static binaries, required by distroless/static (no libc).
# -trimpath: no local file system paths in binaries (reproducible builds,
#            nothing about the build machine leaks into stack traces).
# -ldflags "-s -w": strip symbol table and DWARF; smaller images. Panics still
#            print full stack traces (those use runtime pclntab, not DWARF).
# The cache mount keeps Go's build cache across `docker build` runs, so a
# one-line change recompiles one package instead of the whole dependency tree;
# it is not part of any image layer.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ ./apps/api ./apps/relay ./apps/worker

# ---------------------------------------------------------------------------
# Runtime images
# ---------------------------------------------------------------------------
# distroless/static: only CA certificates, tzdata and /etc/passwd; no shell, no
# package manager, so a tiny attack surface. The :nonroot variant runs as
# uid/gid 65532, so the services never run as root. The ports below are all
# >1024 so no capabilities are needed.
#
# Consequence: there is no shell or curl for a container HEALTHCHECK. Probe
# /healthz and /readyz from the orchestrator instead (Kubernetes httpGet
# probes, load balancer health checks).
#
# ENTRYPOINT is the binary itself (exec form): it is PID 1 and receives
# SIGTERM directly for graceful shutdown, and `docker run IMAGE migrate`
# passes `migrate` as its first argument.

# REST API plus /healthz, /readyz, /metrics. Needs ECS_DATABASE_URL and
# ECS_API_TOKENS. ECS_HTTP_ADDR is set explicitly in each stage so the listen
# address always matches EXPOSE.
FROM gcr.io/distroless/static-debian12:nonroot AS api
COPY --from=build /out/api /usr/local/bin/ecs-api
ENV ECS_HTTP_ADDR=:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ecs-api"]

# Relay role. Needs ECS_DATABASE_URL and ECS_KAFKA_BROKERS.
# Port 9091 serves only /healthz, /readyz, /metrics.
FROM gcr.io/distroless/static-debian12:nonroot AS relay
COPY --from=build /out/relay /usr/local/bin/ecs-relay
ENV ECS_HTTP_ADDR=:9091
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/ecs-relay"]

# Worker role. Needs ECS_DATABASE_URL and ECS_KAFKA_BROKERS.
# Port 9092 serves only /healthz, /readyz, /metrics.
FROM gcr.io/distroless/static-debian12:nonroot AS worker
COPY --from=build /out/worker /usr/local/bin/ecs-worker
ENV ECS_HTTP_ADDR=:9092
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/ecs-worker"]
