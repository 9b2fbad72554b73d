//! Controller tests: pure assessments and reconcile side effects against the mock API server.

mod acceptance;
mod federation_site;
mod mirror_domain;
mod notify_rule;
mod platform;
mod retry;
mod scan;
mod scan_policy;
mod schedule;
mod zastava_audit;
mod zastava_policy;
