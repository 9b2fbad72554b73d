//! Worker tests; the registry ones run against the real registry from scripts/test.sh.

mod artifacts;
mod attach;
mod debian;
mod diff;
mod evaluate;
mod exploits;
mod federation_api;
mod federation_cli;
mod federation_hardening;
mod gems_composer;
mod go_binaries;
mod java;
mod licenses;
mod mirror_serve;
mod mirror_sync;
mod notify;
mod progress;
mod registry;
mod rpmdb;
mod scan;
mod uwsgi;
mod vex;
