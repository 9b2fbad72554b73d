//! Federation tests: formats offline, the round trip and every refusal against the real
//! PostgreSQL started by scripts/test.sh.

mod bundle_format;
mod fixtures;
mod osv_and_cvss;
mod round_trip;
