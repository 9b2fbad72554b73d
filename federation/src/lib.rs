//! Federation of canonical advisories between sites: OSV ingest, signed delta bundles,
//! export and import with the seed's semantics (federation-setup-and-operations.md).

pub mod bundle;
pub mod cursor;
pub mod cvss;
pub mod dsse;
pub mod events;
pub mod export;
pub mod import;
pub mod ingest;
pub mod osv;
pub mod sites;
pub mod validate;
