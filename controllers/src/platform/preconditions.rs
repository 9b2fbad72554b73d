//! Appendix B of the release seed: what must hold before an upgrade starts. Each failure
//! is an `Upgradeable=False` reason with a message that says what to do.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use stellaops_crds::platform::{Platform, PlatformStatus};

use super::release::{Release, parse_version};

/// Annotation the backup tooling sets on the Platform when a database backup completes
/// (RFC 3339 time), read by `upgrade.requireBackupWithin`.
pub const LAST_BACKUP_ANNOTATION: &str = "stella-ops.org/last-backup-at";

/// Why an upgrade may not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn blocker(reason: &'static str, message: String) -> Option<Blocker> {
    Some(Blocker { reason, message })
}

/// Parse `24h`, `90m`, `1h30m`.
pub fn parse_window(text: &str) -> Option<SignedDuration> {
    crate::workload::parse_duration(text).map(SignedDuration::from_secs)
}

fn channel_rank(channel: &str) -> Option<u8> {
    match channel {
        "lts" => Some(0),
        "stable" => Some(1),
        "edge" => Some(2),
        _ => None,
    }
}

/// The versions every component would run after `release` is rolled out: listed
/// components at the release's version, the others at what status says they run.
fn versions_after(release: &Release, status: &PlatformStatus) -> BTreeMap<String, String> {
    let mut versions: BTreeMap<String, String> = status
        .components
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.version.clone()?)))
        .collect();
    for component in &release.components {
        versions.insert(component.name.clone(), release.version.clone());
    }
    versions
}

/// The first precondition `release` fails for `platform`, if any.
pub fn upgrade_blocker(
    platform: &Platform,
    release: &Release,
    last_backup: Option<Timestamp>,
    compliance_at_risk: Option<&str>,
    now: Timestamp,
) -> Option<Blocker> {
    let spec = &platform.spec;
    let status = platform.status.clone().unwrap_or_default();
    if spec.upgrade.paused {
        return blocker(
            "Paused",
            format!(
                "spec.upgrade.paused is set; unset it to start the upgrade to {}",
                release.version
            ),
        );
    }
    let target = parse_version(&release.version)?;
    if let Some(current) = status.current_version.as_deref().and_then(parse_version) {
        if target < current {
            return blocker(
                "Downgrade",
                format!(
                    "{} is older than the running {}.{}.{}; go back with spec.rollbackTo to a release in status.history",
                    release.version, current.0, current.1, current.2
                ),
            );
        }
        if target.0 != current.0 || target.1 > current.1 + 1 {
            return blocker(
                "VersionSkew",
                format!(
                    "{}.{}.{} → {} skips a minor: components would run more than one minor apart during the rollout (UI and Scanner must stay within ±1 minor of the backend); upgrade to {}.{}.x first",
                    current.0,
                    current.1,
                    current.2,
                    release.version,
                    current.0,
                    current.1 + 1
                ),
            );
        }
    }
    if let Some(from) = status.current_channel.as_deref()
        && let (Some(a), Some(b)) = (channel_rank(from), channel_rank(&release.channel))
        && a.abs_diff(b) > 1
    {
        return blocker(
            "ChannelTransition",
            format!(
                "moving from channel {from} to {} directly is not supported; move to stable first",
                release.channel
            ),
        );
    }
    let versions = versions_after(release, &status);
    let minor = |name: &str| {
        versions
            .get(name)
            .and_then(|v| parse_version(v))
            .map(|v| (v.0, v.1))
    };
    let triangle: Vec<(&str, (u64, u64))> = ["authority", "signer", "attestor"]
        .into_iter()
        .filter_map(|n| Some((n, minor(n)?)))
        .collect();
    if let Some((first, m)) = triangle.first()
        && let Some((other, n)) = triangle.iter().find(|(_, n)| n != m)
    {
        return blocker(
            "VersionSkew",
            format!(
                "after this release {first} would run {}.{} and {other} {}.{}: Authority, Signer and Attestor must run the same minor; the release must list all three",
                m.0, m.1, n.0, n.1
            ),
        );
    }
    let backend = minor("authority").unwrap_or((target.0, target.1));
    for name in [
        "web-ui",
        "ui",
        "scanner-webservice",
        "scanner-web",
        "scanner-worker",
    ] {
        if let Some(v) = minor(name)
            && (v.0 != backend.0 || v.1.abs_diff(backend.1) > 1)
        {
            return blocker(
                "VersionSkew",
                format!(
                    "after this release {name} would run {}.{} against a {}.{} backend: UI and Scanner must stay within ±1 minor; the release must list {name}",
                    v.0, v.1, backend.0, backend.1
                ),
            );
        }
    }
    if let Some(window_text) = &spec.upgrade.require_backup_within {
        let Some(window) = parse_window(window_text) else {
            return blocker(
                "InvalidBackupWindow",
                format!("upgrade.requireBackupWithin {window_text:?} is not like 24h or 1h30m"),
            );
        };
        let Some(at) = last_backup else {
            return blocker(
                "BackupMissing",
                format!(
                    "upgrade.requireBackupWithin is {window_text} but no backup is recorded: when a backup completes, annotate the Platform {LAST_BACKUP_ANNOTATION}=<RFC 3339 time>"
                ),
            );
        };
        let age = now.duration_since(at);
        if age > window {
            return blocker(
                "BackupTooOld",
                format!(
                    "the last backup finished at {at}, {}h{:02}m ago; upgrade.requireBackupWithin is {window_text}: back up, then update {LAST_BACKUP_ANNOTATION}",
                    age.as_secs() / 3600,
                    (age.as_secs() % 3600) / 60
                ),
            );
        }
    }
    if let Some(risk) = compliance_at_risk {
        return blocker(
            "ComplianceArtifactsAtRisk",
            format!(
                "the last artifact lifecycle pass found that {risk}: an upgrade must not run while signed verdicts can be purged; remove that rule or narrow it to other prefixes, then let the next `stellaops-worker artifacts lifecycle` pass confirm"
            ),
        );
    }
    None
}

/// The backup time from the Platform's annotation; `Err` when it is not a time.
pub fn last_backup(platform: &Platform) -> Result<Option<Timestamp>, String> {
    use kube::ResourceExt;
    match platform.annotations().get(LAST_BACKUP_ANNOTATION) {
        None => Ok(None),
        Some(text) => text.parse::<Timestamp>().map(Some).map_err(|_| {
            format!("annotation {LAST_BACKUP_ANNOTATION}={text:?} is not an RFC 3339 time")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_like_the_schema_allows() {
        assert_eq!(parse_window("24h"), Some(SignedDuration::from_hours(24)));
        assert_eq!(parse_window("1h30m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(parse_window("45m"), Some(SignedDuration::from_mins(45)));
        assert_eq!(parse_window("24"), None);
        assert_eq!(parse_window("h"), None);
        assert_eq!(parse_window("1d"), None);
    }
}
