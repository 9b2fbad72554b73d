#!/usr/bin/env bash
# Run the benchmarks against real services; each prints its figures next to the
# reference named in its issue, measured in the same run.
#
# Usage: scripts/bench.sh [cargo bench arguments, e.g. -p stellaops-federation]
set -euo pipefail
source "$(dirname "$0")/services.sh"
start_services

# References the benchmarks compare against: nginx and wrk (mirror serving), the AWS CLI
# (mirror sync).
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v aws >/dev/null || { log "installing the AWS CLI (pip)"; python3 -m pip install -q awscli; }

# The real Debian packages the scan benchmark builds its Debian image from (cached).
"$(dirname "$0")/bench-debs.sh"

# The scale benchmark (controllers/benches/scale.rs, STELLAOPS_SCALE_N=1000,10000) needs
# no service: it runs the controllers against the in-process API server emulator.
log "cargo bench"
cargo bench --locked "$@"
