#!/usr/bin/env bash
# Run the benchmarks against real services; each prints its figures next to the
# reference named in its issue, measured in the same run.
#
# Usage: scripts/bench.sh [cargo bench arguments, e.g. -p stellaops-federation]
set -euo pipefail
source "$(dirname "$0")/services.sh"
start_services

log "cargo bench"
cargo bench --locked "$@"
