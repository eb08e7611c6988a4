#!/usr/bin/env bash
# The one command that runs every test of aupguard on a fresh Debian machine
# with Go: it installs what the tests need (redis-server, postfix, ...) when
# missing, then checks the habits (go mod tidy changes nothing, gofmt -l is
# empty, go vet and staticcheck are clean), runs the race-enabled test suite (unit, Redis, Redis
# Cluster, Postfix end-to-end, browser), every fuzz target for a bounded
# number of inputs, and every benchmark once (so that they keep working).
#
# Environment: FUZZTIME (default 100000x inputs per target, or the count a
# target names above itself; set, it overrides every count), SKIP_FUZZ=1, SKIP_BENCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every phase says how long it took (the whole command must stay under
# 12 minutes on an idle 2-core machine).
START=$SECONDS
PHASE_START=$SECONDS
phase() {
  echo "   ($((SECONDS - PHASE_START)) s)"
  PHASE_START=$SECONDS
  echo "== $*"
}

bash scripts/install-test-deps.sh

export PATH="$PATH:/usr/sbin:/sbin"

# staticcheck, pinned; fetched through the Go module proxy and built by go
# run (no binary download, no change to go.mod).
STATICCHECK_VERSION=v0.8.2

phase "go mod tidy (must change nothing)"
tidy_dir="$(mktemp -d)"
cp go.mod go.sum "$tidy_dir"/
go mod tidy
if ! cmp -s go.mod "$tidy_dir/go.mod" || ! cmp -s go.sum "$tidy_dir/go.sum"; then
  diff -u "$tidy_dir/go.mod" go.mod || true
  diff -u "$tidy_dir/go.sum" go.sum || true
  cp "$tidy_dir/go.mod" "$tidy_dir/go.sum" .
  rm -rf "$tidy_dir"
  echo "go mod tidy changes go.mod/go.sum: run it and commit the result" >&2
  exit 1
fi
rm -rf "$tidy_dir"

phase "gofmt -l (must be empty)"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "$unformatted"
  echo "gofmt: the files above are not formatted (gofmt -w them)" >&2
  exit 1
fi

phase "go vet"
go vet ./...

phase "staticcheck ${STATICCHECK_VERSION}"
go run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" ./...

phase "go test -race ./... (each package's closing line; failures in full; the slowest tests last)"
# The summary is kept, so that the slowest ten tests are printed again at
# the very end of the command.
summary_file="$(mktemp)"
trap 'rm -f "$summary_file"' EXIT
go test -race -count=1 -timeout 45m -json ./... 2>&1 | go run ./internal/testkit/testsummary -slowest 10 | tee "$summary_file"

# The optional OpenSSL-backed RSA signer (cgo, libcrypto): the default
# binary is static, pure Go; a provider signing with RSA can build with
# -tags openssl (docs/auth.md).
phase "go vet and go test -race -tags openssl (the OpenSSL RSA signer)"
go vet -tags openssl ./internal/checks/auth/
go test -race -count=1 -tags openssl ./internal/checks/auth/

if [ "${SKIP_FUZZ:-}" != 1 ]; then
  # A count, not a duration: Go 1.26's fuzz coordinator can report a bare
  # "context deadline exceeded" failure, with no failing input, when a
  # -fuzztime duration ends while a worker is busy (go.dev/issue/75804,
  # fixed in Go 1.27). A count has no deadline to race.
  # The budget: FUZZTIME inputs per target (default 100000x, a few seconds
  # for most targets on 2 cores); a target whose inputs cost more says its
  # own count in a comment line just above it, `// fuzz count: 30000x`.
  # FUZZTIME set in the environment overrides every target's count.
  # Every new interesting input is minimized too, not only a failing one:
  # a budget of 5 s each made FuzzExtract spend 3m41s on 30000 inputs of
  # a fresh corpus on a busy machine (32 s with 200x), so
  # minimization is a count of executions as well.
  fuzzdefault="${FUZZTIME:-100000x}"
  phase "fuzz targets, ${fuzzdefault} each unless the target says its own count"
  grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | sort | while read -r file; do
    pkg="./$(dirname "${file#./}")"
    # "TARGET COUNT" per target: COUNT from the comment line above it, or -.
    awk '/^\/\/ fuzz count: [0-9]+x$/ { c = $4; next }
         /^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)/ { n = $2; sub(/\(.*/, "", n); print n, (c == "" ? "-" : c); c = ""; next }
         { c = "" }' "$file" | while read -r target count; do
      if [ -n "${FUZZTIME:-}" ] || [ "$count" = - ]; then count="$fuzzdefault"; fi
      echo "-- $pkg $target ($count)"
      go test -run='^$' -fuzz="^${target}\$" -fuzztime="$count" -fuzzminimizetime=200x "$pkg"
    done
  done
fi

if [ "${SKIP_BENCH:-}" != 1 ]; then
  phase "benchmarks, one iteration each (numbers: see docs/performance.md)"
  go test -run='^$' -bench=. -benchtime=1x -timeout 20m ./...
fi
phase "all tests passed in $((SECONDS - START)) s"
sed -n '/^slowest [0-9]* tests:$/,$p' "$summary_file"
