//! The scanner's facts engine, pure: no database, no S3, no registry client; the only I/O
//! is reading the layers it is handed. Ecosystem version ordering and OSV ranges
//! ([`versions`]).

pub mod versions;
