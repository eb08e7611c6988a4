#!/usr/bin/env bash
# Builds the Debian package of aupguard with nfpm (pinned; run through the
# Go module proxy, not added to go.mod):
#
#   scripts/build-deb.sh [VERSION] [OUTDIR]     # default: git describe, ./dist
#
# The binary is static (CGO_ENABLED=0); the unit is configs/aupguard.service
# with the binary at /usr/bin (a package never installs into /usr/local);
# the config is configs/aupguard.yaml, a conffile. packaging/deb_test.go
# builds and installs it. Layout and maintainer scripts: packaging/.
set -euo pipefail
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
src=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-$(git -C "$src" describe --tags --always --dirty 2>/dev/null | sed 's/^v//' || echo 0.0.0)}
# Debian versions start with a digit.
case $version in [0-9]*) ;; *) version="0.0.0+$version" ;; esac
out=${2:-$src/dist}
arch=$(go env GOARCH)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$stage/aupguard" ./cmd/aupguard)
sed 's#/usr/local/bin/aupguard#/usr/bin/aupguard#g' "$src/configs/aupguard.service" >"$stage/aupguard.service"
# The installed config keeps its state where the unit lets it write
# (StateDirectory=aupguard): the example's relative ./state is for a first
# run from the checkout.
# The milter listens on Postfix's Unix socket (the unit creates its
# directory), not on the example's loopback TCP port; the Postfix snippet
# shipped as an example says so too.
sed -e 's#^\(  path:\) \./state\( .*\)\?$#\1 /var/lib/aupguard#' \
    -e 's#token_file: \./state/admin\.token#token_file: /var/lib/aupguard/admin.token#' \
    -e 's#^  listen: inet:127\.0\.0\.1:8891$#  listen: unix:/var/spool/postfix/aupguard/milter.sock#' \
    -e '\#^  \# listen: unix:/var/spool/postfix/aupguard/milter.sock .*$#d' \
    "$src/configs/aupguard.yaml" >"$stage/aupguard.yaml"
grep -q '^  path: /var/lib/aupguard$' "$stage/aupguard.yaml" || { echo "build-deb: store.path not rewritten" >&2; exit 1; }
grep -q 'token_file: /var/lib/aupguard/admin.token' "$stage/aupguard.yaml" || { echo "build-deb: admin.token_file not rewritten" >&2; exit 1; }
grep -q '^  listen: unix:/var/spool/postfix/aupguard/milter.sock$' "$stage/aupguard.yaml" || { echo "build-deb: milter.listen not rewritten" >&2; exit 1; }
cp "$src/README.md" "$src"/packaging/{sysusers.conf,tmpfiles.conf,postinst,prerm,postrm} "$stage/"
cp -r "$src/docs" "$stage/docs"
cp -r "$src/configs/postfix" "$stage/postfix"
sed -i -e 's#^smtpd_milters = inet:127\.0\.0\.1:8891$#\#smtpd_milters = inet:127.0.0.1:8891#' \
    -e 's#^\#smtpd_milters = unix:aupguard/milter\.sock$#smtpd_milters = unix:aupguard/milter.sock#' \
    "$stage/postfix/main.cf"
grep -q '^smtpd_milters = unix:aupguard/milter.sock$' "$stage/postfix/main.cf" || { echo "build-deb: the Postfix snippet's smtpd_milters not rewritten" >&2; exit 1; }
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$src/packaging/nfpm.yaml" >"$stage/nfpm.yaml"
deb="$out/aupguard_${version}_${arch}.deb"
rm -f "$deb"
# nfpm runs outside the module so that go.mod stays the gateway's own.
(cd "$stage" && GOFLAGS=-mod=mod go run "$NFPM" package --config nfpm.yaml --packager deb --target "$deb" >&2)
echo "$deb"
