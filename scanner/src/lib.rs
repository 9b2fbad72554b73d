//! The scanner's facts engine, pure: no database, no S3, no registry client; the only I/O
//! is reading the layer files it is handed.
//!
//! * [`analyze`]: a layer's tar (gzip, zstd or plain) → a fragment: packages of the
//!   package databases (dpkg, apk, [`rpmdb`]) and language ecosystems, ELF and Go build
//!   information ([`elf`]), declared licenses ([`license`]), the file tree.
//! * [`inventory`]: the layers' fragments stacked as the container sees them, each package
//!   with its package URL ([`purl`]) and the keys its advisories are looked up by.
//! * [`usage`] (with [`shell`]): EntryTrace and the Usage view — what the entrypoint runs
//!   and the files and packages it needs.
//! * [`sbom`]: CycloneDX and SPDX writers.
//! * [`matching`] with [`versions`] (each ecosystem's version ordering, OSV ranges), and
//!   [`judge`]: findings, and the verdict under a policy through the decider.
//! * [`diff`]: what changed between two inventories, with the layer behind each change.

pub mod analyze;
pub mod diff;
pub mod elf;
pub mod inventory;
pub mod judge;
pub mod license;
pub mod matching;
pub mod purl;
pub mod rpmdb;
pub mod sbom;
pub mod shell;
pub mod usage;
pub mod versions;

pub use inventory::{
    Component, MatchKey, Merged, licensed_component, merge, merge_leaving_out, purl_of,
};
pub use judge::{Policy, rank, verdict};
pub use matching::{AdvisoryRow, Finding, index_rows, match_components, match_indexed};
pub use sbom::{cyclonedx, spdx, usage_cyclonedx};
