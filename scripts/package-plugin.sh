#!/usr/bin/env bash
# Package a built kubectl-stellaops for a release: DIR/kubectl-stellaops_<version>_<platform>.tar.gz
# (the binary and README.md at its root, as the krew manifest's `files` expect) and its
# .sha256 beside it. Usage: scripts/package-plugin.sh VERSION PLATFORM BINARY DIR
# (PLATFORM: linux_amd64, linux_arm64, darwin_amd64 or darwin_arm64).
set -euo pipefail
version="${1:?usage: package-plugin.sh VERSION PLATFORM BINARY DIR}"
platform="${2:?usage: package-plugin.sh VERSION PLATFORM BINARY DIR}"
binary="${3:?usage: package-plugin.sh VERSION PLATFORM BINARY DIR}"
dir="${4:?usage: package-plugin.sh VERSION PLATFORM BINARY DIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"
case "$platform" in
  linux_amd64 | linux_arm64 | darwin_amd64 | darwin_arm64) ;;
  *) echo "package-plugin.sh: unknown platform ${platform@Q}" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "package-plugin.sh: ${binary@Q} is not an executable" >&2; exit 2; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/kubectl-stellaops"
install -m 0644 "$root/README.md" "$stage/README.md"
mkdir -p "$dir"
archive="kubectl-stellaops_${version}_${platform}.tar.gz"
tar -C "$stage" -czf "$dir/$archive" kubectl-stellaops README.md
if command -v sha256sum >/dev/null; then
  (cd "$dir" && sha256sum "$archive" > "$archive.sha256")
else
  (cd "$dir" && shasum -a 256 "$archive" > "$archive.sha256")
fi
echo "$dir/$archive"
