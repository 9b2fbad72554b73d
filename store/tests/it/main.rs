//! Store tests against the real PostgreSQL and S3 servers started by scripts/test.sh.

mod attestation;
mod indexes;
mod lifecycle;
mod object_storage;
mod postgres;
mod reports;
mod retention;
mod roles;
mod vex;
