//! Mirror domains: `mirror serve` (this module's server). The S3 → volume sync is not
//! written yet.

pub mod serve;
