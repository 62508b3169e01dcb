#!/usr/bin/env bash
# Fetch axe-core's axe.min.js into tests/browser/vendor/ (the browser tests inject it to check the
# upload page's accessibility). Pinned: change AXE_VERSION here and in tests/browser/vendor/README.md.
set -euo pipefail
AXE_VERSION="${AXE_VERSION:-4.14.1}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/tests/browser/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null)
tar -xzf "$work/axe-core-$AXE_VERSION.tgz" -C "$work"
mkdir -p "$dest"
cp "$work/package/axe.min.js" "$dest/axe.min.js"
cp "$work/package/LICENSE" "$dest/axe-core.LICENSE"
sha256sum "$dest/axe.min.js"
