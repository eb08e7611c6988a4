# aupguard container image: a static binary on a minimal base, run as a
# non-root user. The config is mounted at /etc/aupguard/aupguard.yaml and
# state (memory backend persistence, secret) lives in the /var/lib/aupguard
# volume:
#   docker build -t aupguard .
#   docker run -v $PWD/aupguard.yaml:/etc/aupguard/aupguard.yaml:ro \
#              -v aupguard-state:/var/lib/aupguard -p 127.0.0.1:8891:8891 aupguard
# The image's config is configs/container/aupguard.yaml: listeners on
# 0.0.0.0 (a container's loopback is its own) with milter.allowed_mtas,
# the admin token and secret from /run/secrets. With Postfix and Redis:
# configs/container/compose.yaml, docs/container.md.

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
VOLUME ["/var/lib/aupguard"]
EXPOSE 8891 8892 8893
ENTRYPOINT ["/usr/local/bin/aupguard"]
CMD ["serve", "-config", "/etc/aupguard/aupguard.yaml"]
