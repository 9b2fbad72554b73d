#!/usr/bin/env bash
# Download the real Debian packages the scan benchmark builds its image from
# (workers/benches/debian-image.txt) into .test-services/bench-debs, once: `.complete`
# holds the list they were downloaded for, and a changed list downloads again.
# Without apt-get (not a Debian-based host) it does nothing and the bench skips that case.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

debs="$ROOT/.test-services/bench-debs"
mapfile -t wanted < <(sed -n 's/^[a-z]*: //p' "$ROOT/workers/benches/debian-image.txt" | tr ' ' '\n' | sort)
if [ "$(cat "$debs/.complete" 2>/dev/null)" = "${wanted[*]}" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  log "no apt-get/dpkg-deb: the scan benchmark's Debian image will be skipped"
  exit 0
fi
log "downloading ${#wanted[@]} Debian packages for the scan benchmark into .test-services/bench-debs"
rm -rf "$debs"
mkdir -p "$debs"
if ! (cd "$debs" && apt-get download -qq "${wanted[@]}" 2>/dev/null); then
  as_root apt-get update -qq
  (cd "$debs" && apt-get download -qq "${wanted[@]}") || { log "apt-get download failed"; exit 0; }
fi
if [ "$(ls "$debs"/*.deb | wc -l)" = "${#wanted[@]}" ]; then
  echo "${wanted[*]}" > "$debs/.complete"
else
  log "some packages were not downloaded: the scan benchmark's Debian image will be skipped"
fi
