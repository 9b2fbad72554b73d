#!/usr/bin/env bash
# Run every test of the workspace against real services.
#
# On a fresh machine this installs what is missing, starts a throwaway PostgreSQL, S3
# server and OCI registry on free 127.0.0.1 ports (scripts/services.sh), runs
# `cargo test --workspace` with their addresses in the environment, runs
# tests/kind/run.sh, and stops the services even when tests fail.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
source "$(dirname "$0")/services.sh"
start_services

# Every crate the lock names, for every platform: the Dockerfile tests resolve the image's
# cargo steps offline, which needs crates (e.g. Android- or Windows-only ones) that a build
# on this host never downloads.
log "cargo fetch --locked"
cargo fetch --locked

log "cargo test --workspace"
cargo test --workspace --locked "$@"

log "tests/kind"
"$ROOT/tests/kind/run.sh"
