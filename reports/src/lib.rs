//! The aggregated API server of `reports.stella-ops.org/v1alpha1`: scan results read
//! through `kubectl get` without a single report stored in etcd.
//!
//! * [`kinds`]: `VulnerabilityReport` and `SbomReport` (namespaced, one per Scan, same
//!   name) and `ImageVerdict` (cluster-scoped, one per image digest), built from the rows
//!   `stellaops_store::reports` reads from PostgreSQL; SBOM documents come from S3.
//! * [`server`]: discovery, GET, LIST with `limit`/`continue` (a LIST reads at one
//!   resourceVersion, a result id), label and field selectors, server-side Tables, OpenAPI
//!   v2 and v3, errors as `Status`; [`watch`]: WATCH fed by the outbox's `LISTEN`.
//! * [`auth`] and [`authz`]: the front proxy's client certificate and headers (or a user's
//!   own certificate) from the `extension-apiserver-authentication` ConfigMap, and a
//!   cached `SubjectAccessReview` per request.

pub mod auth;
pub mod authz;
pub mod discovery;
pub mod kinds;
pub mod selector;
pub mod server;
pub mod status;
pub mod table;
pub mod token;
pub mod watch;

/// The API group.
pub const GROUP: &str = "reports.stella-ops.org";
/// Its one version.
pub const VERSION: &str = "v1alpha1";
/// `group/version`.
pub const API_VERSION: &str = "reports.stella-ops.org/v1alpha1";
