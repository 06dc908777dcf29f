#!/usr/bin/env bash
# Installs SeaweedFS's `weed`, the S3-compatible server that herd's object-storage tests
# start on loopback (internal/s3test), into $1 (default: $(go env GOPATH)/bin). Its module
# has replace directives, which `go install pkg@version` refuses, so the source is taken
# from the module proxy with `go mod download` and built in place. Shared by `make weed`
# and .ci/run; a cold build took 26 minutes on a shared, loaded 2-core machine.
set -euo pipefail
version=v0.0.0-20261109003541-7506e5f91cd6
bin=${1:-$(go env GOPATH)/bin}
src=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { echo "install-weed: could not download github.com/seaweedfs/seaweedfs@$version" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work"
chmod -R u+w "$work"
mkdir -p "$bin"
(cd "$work" && go build -o "$bin/weed" ./weed)
echo "installed $bin/weed"
