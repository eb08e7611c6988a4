# aupguard container image: a static binary on a minimal base, run as a
# non-root user (65532). The image's config is configs/container/aupguard.yaml:
# listeners on 0.0.0.0 (a container's loopback is its own) with
# milter.allowed_mtas, the admin token and the secret from /run/secrets
# (files owned by 65532, mode 0600), the store in a Redis container. Mount
# your own at /etc/aupguard/aupguard.yaml; state lives in the
# /var/lib/aupguard volume. With Postfix and Redis:
#   docker compose -f configs/container/compose.yaml up -d --build
# (docs/container.md).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/aupguard ./cmd/aupguard \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/aupguard /usr/local/bin/aupguard
COPY --from=build --chown=65532:65532 /out/state /var/lib/aupguard
COPY configs/container/aupguard.yaml /etc/aupguard/aupguard.yaml
USER 65532:65532
# The example config's relative store.path (./state) and admin.token_file
# (./state/admin.token, created at first start) land in the volume.
WORKDIR /var/lib/aupguard
VOLUME ["/var/lib/aupguard"]
EXPOSE 8891 8892 8893
# The Go runtime's monitor thread kept awake (runtime.sysmon: awake, the
# default; docs/performance.md#runtime-setting): set here, serve starts
# under it without executing itself again.
ENV GODEBUG=schedtrace=2147483647
ENTRYPOINT ["/usr/local/bin/aupguard"]
CMD ["serve", "-config", "/etc/aupguard/aupguard.yaml"]
