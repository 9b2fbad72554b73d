//! Mirror domains: `mirror serve` (the HTTP server of one domain) and `mirror sync` (an
//! S3 prefix onto the volume it serves).

pub mod serve;
pub mod sync;
