#!/usr/bin/env bash
# Vendors the dashboard's chart library, uPlot (https://github.com/leeoniya/uPlot, MIT),
# into internal/ui/static/vendor/uplot/: the files are committed, because go:embed builds
# them into herd and a user runs no build step; this script reproduces them. It takes the
# pinned version's package from the npm registry with `npm pack` (the registry's tarball
# is checked against its integrity hash by npm) and copies the minified IIFE build, its
# stylesheet and its licence, with a VERSION file naming what was taken.
#
# To upgrade: change version, run this, look at the dashboard (the browser test,
# cmd/herd/dashboard_browser_test.go, with HERD_UPDATE_SCREENSHOTS=1), commit.
set -euo pipefail
version=1.6.32
cd "$(dirname "$0")/.."
dest=internal/ui/static/vendor/uplot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$dest/"
printf 'uplot %s (npm), MIT licence (LICENSE); reproduced by tools/vendor-ui.sh\n' "$version" >"$dest/VERSION"
echo "vendored uplot $version into $dest"
