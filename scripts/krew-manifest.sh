#!/usr/bin/env bash
# The krew plugin manifest (krew.sigs.k8s.io/v1alpha2 Plugin) for a release of the kubectl
# plugin: one platform per kubectl-stellaops_<version>_<os>_<arch>.tar.gz in DIR, with the
# SHA-256 of its bytes. Usage: scripts/krew-manifest.sh VERSION DIR [BASE_URL]
# (BASE_URL defaults to the GitHub release of VERSION).
set -euo pipefail
version="${1:?usage: krew-manifest.sh VERSION DIR [BASE_URL]}"
dir="${2:?usage: krew-manifest.sh VERSION DIR [BASE_URL]}"
base="${3:-https://github.com/stella-ops/stellaops-operator/releases/download/${version}}"
case "$version" in
  v[0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "krew-manifest.sh: version ${version@Q} is not vMAJOR.MINOR.PATCH (krew needs semver)" >&2; exit 2 ;;
esac
shopt -s nullglob
archives=("$dir"/kubectl-stellaops_"${version}"_*_*.tar.gz)
if [ "${#archives[@]}" -eq 0 ]; then
  echo "krew-manifest.sh: no kubectl-stellaops_${version}_<os>_<arch>.tar.gz in ${dir}" >&2
  exit 2
fi
cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: stellaops
spec:
  version: ${version}
  homepage: https://github.com/stella-ops/stellaops-operator
  shortDescription: Read Stella Ops scan reports, verdicts and SBOMs
  description: |
    Reads the reports.stella-ops.org API the Stella Ops operator serves: a Scan's or a
    running workload's vulnerability report, why an image has its verdict, and SBOMs in
    CycloneDX or SPDX, with the usual -n, -A, --context and -o.
  platforms:
YAML
for archive in "${archives[@]}"; do
  file="$(basename "$archive")"
  platform="${file#kubectl-stellaops_"${version}"_}"
  platform="${platform%.tar.gz}"
  os="${platform%_*}"
  arch="${platform#*_}"
  case "$os/$arch" in
    linux/amd64 | linux/arm64 | darwin/amd64 | darwin/arm64) ;;
    *) echo "krew-manifest.sh: ${file}: unknown platform ${os}/${arch}" >&2; exit 2 ;;
  esac
  sha="$(sha256sum "$archive" | cut -d' ' -f1)"
  cat <<YAML
  - selector:
      matchLabels:
        os: ${os}
        arch: ${arch}
    uri: ${base}/${file}
    sha256: ${sha}
    bin: kubectl-stellaops
    files:
    - from: kubectl-stellaops
      to: .
    - from: README.md
      to: .
YAML
done
