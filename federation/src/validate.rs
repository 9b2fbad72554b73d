//! `bundle validate`: the seed's validation report.

use std::fmt::Write as _;

use crate::bundle::{self, BundleError, OpenedBundle};
use crate::dsse::TrustedKeys;

/// A report and whether the bundle is ready for import.
pub struct Report {
    /// The text, in the seed's layout.
    pub text: String,
    /// True when every check passed.
    pub ready: bool,
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Validate `bytes` (named `name`) against `trusted` keys; `require_signature` makes an
/// unsigned bundle fail.
pub fn report(
    name: &str,
    bytes: &[u8],
    max_size: u64,
    trusted: &TrustedKeys,
    require_signature: bool,
) -> Report {
    let mut text = format!("Bundle: {name}\n");
    let opened: Result<OpenedBundle, BundleError> = bundle::open(bytes, max_size);
    let opened = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let (hash, format) = match &error {
                BundleError::TooLarge { .. } => ("✗ Not checked", format!("✗ {error}")),
                BundleError::Corrupt(_) => ("✗ Invalid", format!("✗ {error}")),
                _ => ("✓ Valid", format!("✗ {error}")),
            };
            let _ = write!(
                text,
                "Verification:\nHash: {hash}\nFormat: {format}\nNot ready for import.\n"
            );
            return Report { text, ready: false };
        }
    };
    let m = &opened.manifest;
    let _ = write!(
        text,
        "Version: {}\nSite: {}\nCursor: {}\nCounts:\nCanonicals: {}\nEdges: {}\nDeletions: {}\nTotal: {}\nVerification:\nHash: ✓ Valid ({})\n",
        m.version,
        m.site_id,
        m.cursor,
        thousands(m.counts.canonicals),
        thousands(m.counts.edges),
        thousands(m.counts.deletions),
        thousands(m.counts.total()),
        opened.bundle_hash,
    );
    let signature_ok = match (&opened.signature, trusted.is_empty()) {
        (None, _) => {
            let _ = writeln!(
                text,
                "Signature: {} Not signed",
                if require_signature { "✗" } else { "-" }
            );
            !require_signature
        }
        (Some(_), true) => {
            let _ = writeln!(
                text,
                "Signature: ? Present, not checked (give --trusted-key)"
            );
            !require_signature
        }
        (Some(_), false) => match opened.verify_signature(trusted) {
            Ok(key) => {
                let _ = writeln!(text, "Signature: ✓ Valid (key: {key})");
                true
            }
            Err(error) => {
                let _ = writeln!(text, "Signature: ✗ {error}");
                false
            }
        },
    };
    let _ = writeln!(text, "Format: ✓ Valid");
    text.push_str(if signature_ok {
        "Ready for import.\n"
    } else {
        "Not ready for import.\n"
    });
    Report {
        text,
        ready: signature_ok,
    }
}
