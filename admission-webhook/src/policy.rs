//! A ZastavaPolicy as the webhook applies it, and the decision itself: pure functions of
//! (policy, request, evidence, now), tested table-style.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::core::admission::AdmissionResponse;
use stellaops_crds::ZastavaPolicy;
use stellaops_crds::scan::Verdict;
use stellaops_crds::zastava_policy::{Mode, OnTimeout};

use crate::keyless::Matcher;
pub use crate::keys::{TrustedKey, parse_public_keys};
use crate::workload::ContainerImage;

/// Namespaces no policy ever applies to (besides the operator's own).
pub const ALWAYS_EXEMPT_NAMESPACES: [&str; 1] = ["kube-system"];

/// The signature check of a policy.
#[derive(Clone, Debug, Default)]
pub struct SignatureCheck {
    /// Keys whose signature is accepted.
    pub keys: Vec<TrustedKey>,
    /// Keyless authorities whose signatures are accepted.
    pub keyless: Vec<crate::keyless::Authority>,
    /// The trusted root whose Rekor logs must record every keyed signature
    /// (`publicKeysTlog`); `None`: keyed signatures' log entries are not read.
    pub keys_log: Option<std::sync::Arc<crate::keyless::TrustedRoot>>,
    /// Whether [`SignatureCheck::keys_log`] also holds for attestations signed by the keys.
    pub keys_log_attestations: bool,
}

/// The scan check of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanCheck {
    /// Oldest acceptable result.
    pub max_age: Duration,
    /// Verdicts that deny.
    pub deny_on: Vec<Verdict>,
    /// The ScanPolicy the ZastavaPolicy's `policyRef` names: only a verdict decided under
    /// its current digest counts (`None`: the image's latest verdict, whatever decided it).
    pub under: Option<ScanPolicyUnder>,
}

/// A ScanPolicy verdicts must have been decided under.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPolicyUnder {
    /// Its name.
    pub name: String,
    /// Its current `status.policyDigest`, or why it has none usable (missing, not Ready):
    /// then no verdict counts and `requireScan` denies, naming the policy.
    pub digest: Result<String, String>,
}

impl CompiledPolicy {
    /// Record the current digest of the ScanPolicy `policyRef` names (or why there is
    /// none); `compile` leaves it unresolved. Part of the cache key, so a new digest is a
    /// new policy.
    pub fn resolve_scan_policy(&mut self, digest: Result<String, String>) {
        if let Some(under) = self.scan.as_mut().and_then(|s| s.under.as_mut()) {
            if let Ok(d) = &digest {
                self.cache_key = format!("{}|{}={d}", self.cache_key, under.name);
            }
            under.digest = digest;
        }
    }
}

/// A policy ready to apply.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// Policy name.
    pub name: String,
    /// `metadata.generation` it was compiled from.
    pub generation: i64,
    /// Enforcement mode.
    pub mode: Mode,
    /// Image globs the policy applies to (all when empty).
    pub images: Vec<String>,
    /// Image globs never checked.
    pub exempt_images: Vec<String>,
    /// Namespace globs never checked.
    pub exempt_namespaces: Vec<String>,
    /// Require `@sha256:` references.
    pub require_digest: bool,
    /// Require a signature by one of these keys.
    pub signature: Option<SignatureCheck>,
    /// Require these attestations (each signed by its authorities, conditions met).
    pub attestations: Vec<crate::attestation::AttestationCheck>,
    /// Require an acceptable recent scan.
    pub scan: Option<ScanCheck>,
    /// What `enforce` does with checks that did not finish within `budget`.
    pub on_timeout: OnTimeout,
    /// Time to answer a review in: below the API server's `timeoutSeconds`, so the answer
    /// is ours and not the failure policy's.
    pub budget: Duration,
    /// Identity of everything a cached result depends on: name, generation and key
    /// fingerprints. A key rotation or spec change gives a new one, so no earlier result
    /// is reused.
    pub cache_key: String,
}

/// Why a policy cannot be applied as written (the controller's `Ready=False` reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The public-key Secret holds no usable key.
    #[error("{0}")]
    InvalidKeys(String),
    /// A keyless authority's trusted root is missing or not a usable Sigstore trusted root.
    #[error("{0}")]
    InvalidTrustedRoot(String),
    /// A keyless authority's subject or issuer is not a usable exact value or expression.
    #[error("{0}")]
    InvalidIdentity(String),
    /// `maxAge` does not parse.
    #[error("requireScan.maxAge {0:?} is not a duration such as 24h or 90m")]
    InvalidMaxAge(String),
    /// A `requireAttestations` entry cannot be applied: unknown predicate type, no
    /// authority to verify with, or a CEL condition that does not compile.
    #[error("{0}")]
    InvalidAttestation(String),
}

impl PolicyError {
    /// Condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::InvalidKeys(_) => "InvalidKeys",
            PolicyError::InvalidTrustedRoot(_) => "InvalidTrustedRoot",
            PolicyError::InvalidIdentity(_) => "InvalidIdentity",
            PolicyError::InvalidMaxAge(_) => "InvalidMaxAge",
            PolicyError::InvalidAttestation(_) => "InvalidAttestation",
        }
    }
}

/// The time the webhook allows itself for a review when the API server waits
/// `timeout_seconds`: one second less (network and TLS between them take some), half of it
/// for a one-second timeout.
pub fn answer_budget(timeout_seconds: i32) -> Duration {
    let timeout = Duration::from_secs(u64::try_from(timeout_seconds.clamp(1, 30)).unwrap_or(5));
    if timeout > Duration::from_secs(1) {
        timeout - Duration::from_secs(1)
    } else {
        timeout / 2
    }
}

/// Compile `policy` for the runtime audit, which never verifies a signature itself (it
/// reads what the webhook verified): a signature requirement is kept without keys, so
/// neither a key Secret nor keyless support is needed to audit the other rules.
pub fn compile_for_audit(policy: &ZastavaPolicy) -> Result<CompiledPolicy, PolicyError> {
    let mut unsigned = policy.clone();
    let require_signature = unsigned.spec.require_signature.take();
    let require_attestations = std::mem::take(&mut unsigned.spec.require_attestations);
    let mut compiled = compile(&unsigned, &[])?;
    let preset_signed = matches!(
        policy.spec.preset,
        Some(
            stellaops_crds::zastava_policy::Preset::Signed
                | stellaops_crds::zastava_policy::Preset::Strict
        )
    );
    compiled.signature = require_signature
        .filter(|r| r.image_signature || preset_signed)
        .map(|_| SignatureCheck::default());
    // Attestations likewise: what the webhook verified is read, so no authorities here.
    compiled.attestations = compile_attestations(&require_attestations, None)?;
    Ok(compiled)
}

/// `24h`, `90m`, `1h30m`.
pub fn parse_hours_minutes(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut seen = false;
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                total += if c == 'h' { n * 3600 } else { n * 60 };
                number.clear();
                seen = true;
            }
            _ => return None,
        }
    }
    (seen && number.is_empty()).then_some(Duration::from_secs(total))
}

/// Compile `policy`; `key_pems` are the values of its public-key Secret (when it names one).
/// A policy with keyless authorities needs [`compile_with_trusted_roots`].
pub fn compile(policy: &ZastavaPolicy, key_pems: &[String]) -> Result<CompiledPolicy, PolicyError> {
    compile_with_trusted_roots(policy, key_pems, &[])
}

/// Compile `policy`; `key_pems` are the values of its public-key Secret (when it names one),
/// `trusted_roots` the trusted-root documents of its keyless authorities, in their order.
pub fn compile_with_trusted_roots(
    policy: &ZastavaPolicy,
    key_pems: &[String],
    trusted_roots: &[String],
) -> Result<CompiledPolicy, PolicyError> {
    // A preset's requirements, plus what the spec adds.
    let effective = policy.spec.with_preset();
    let spec = &effective;
    let signature = match &spec.require_signature {
        None => None,
        Some(requirement) => Some(compile_signature(requirement, key_pems, trusted_roots)?),
    };
    let attestations = compile_attestations(&spec.require_attestations, Some(signature.as_ref()))?;
    // Authorities that only sign attestations (`imageSignature: false`, no preset asking
    // for signed images): the image itself needs no signature. Their fingerprints stay in
    // the cache key.
    let preset_signed = matches!(
        spec.preset,
        Some(
            stellaops_crds::zastava_policy::Preset::Signed
                | stellaops_crds::zastava_policy::Preset::Strict
        )
    );
    let authorities = signature.clone();
    let signature = signature.filter(|_| {
        preset_signed
            || spec
                .require_signature
                .as_ref()
                .is_none_or(|r| r.image_signature)
    });
    let scan = match &spec.require_scan {
        None => None,
        Some(requirement) => Some(ScanCheck {
            max_age: parse_hours_minutes(&requirement.max_age)
                .ok_or_else(|| PolicyError::InvalidMaxAge(requirement.max_age.clone()))?,
            deny_on: requirement.deny_on_verdict.clone(),
            under: spec.policy_ref.as_ref().map(|r| ScanPolicyUnder {
                name: r.name.clone(),
                digest: Err(format!("ScanPolicy {} has not been read yet", r.name)),
            }),
        }),
    };
    let name = policy.metadata.name.clone().unwrap_or_default();
    let generation = policy.metadata.generation.unwrap_or(0);
    let fingerprints: Vec<&str> = authorities
        .iter()
        .flat_map(|s| {
            s.keys
                .iter()
                .map(|k| k.fingerprint.as_str())
                .chain(s.keyless.iter().map(|a| a.root.fingerprint.as_str()))
                .chain(s.keys_log.iter().map(|root| root.fingerprint.as_str()))
        })
        .collect();
    let cache_key = format!("{name}/{generation}/{}", fingerprints.join(","));
    Ok(CompiledPolicy {
        on_timeout: spec.on_timeout,
        budget: answer_budget(spec.timeout_seconds),
        name,
        generation,
        // A staged rollout's mode in force (it lives in the status).
        mode: policy.effective_mode(),
        images: spec.images.clone(),
        exempt_images: spec.exemptions.images.clone(),
        exempt_namespaces: spec.exemptions.namespaces.clone(),
        require_digest: spec.require_digest,
        signature,
        attestations,
        scan,
        cache_key,
    })
}

/// Compile `requireAttestations`. `signature`: the policy's compiled signature check, whose
/// authorities sign attestations (`None`: compiling for the audit, which verifies nothing).
fn compile_attestations(
    requirements: &[stellaops_crds::zastava_policy::AttestationRequirement],
    signature: Option<Option<&SignatureCheck>>,
) -> Result<Vec<crate::attestation::AttestationCheck>, PolicyError> {
    use crate::attestation::{AttestationCheck, Condition, predicate_type_uri};
    use stellaops_crds::zastava_policy::AttestationSigners;
    let mut checks = Vec::new();
    for (i, requirement) in requirements.iter().enumerate() {
        let invalid =
            |e: String| PolicyError::InvalidAttestation(format!("requireAttestations[{i}]: {e}"));
        let predicate_type = predicate_type_uri(&requirement.predicate_type).map_err(invalid)?;
        let (keys, keyless) = match signature {
            None => (Vec::new(), Vec::new()),
            Some(None) => {
                return Err(invalid(
                    "requireAttestations needs requireSignature: its keys and keyless authorities sign attestations".into(),
                ));
            }
            Some(Some(check)) => {
                let (keys, keyless) = match requirement.signed_by {
                    AttestationSigners::Any => (check.keys.clone(), check.keyless.clone()),
                    AttestationSigners::Keys => (check.keys.clone(), Vec::new()),
                    AttestationSigners::Keyless => (Vec::new(), check.keyless.clone()),
                };
                if keys.is_empty() && keyless.is_empty() {
                    let wanted = match requirement.signed_by {
                        AttestationSigners::Keys => "keys but requireSignature has no publicKeys",
                        _ => "keyless but requireSignature has no keyless authority",
                    };
                    return Err(invalid(format!("signedBy {wanted}")));
                }
                (keys, keyless)
            }
        };
        let conditions = requirement
            .conditions
            .iter()
            .enumerate()
            .map(|(j, c)| {
                Condition::compile(&c.expression, c.message.as_deref()).map_err(|e| {
                    PolicyError::InvalidAttestation(format!(
                        "requireAttestations[{i}].conditions[{j}]: {e}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Keys signing attestations must be logged as their image signatures must.
        let keys_log = match signature {
            Some(Some(check)) if !keys.is_empty() && check.keys_log_attestations => {
                check.keys_log.clone()
            }
            _ => None,
        };
        checks.push(AttestationCheck {
            name: requirement
                .name
                .clone()
                .unwrap_or_else(|| requirement.predicate_type.clone()),
            predicate_type,
            keys,
            keyless,
            keys_log,
            conditions,
        });
    }
    Ok(checks)
}

/// The Fulcio extensions a keyless authority requires, by the names
/// [`crate::keyless::FULCIO_EXTENSIONS`] and [`crate::keyless::FULCIO_GITHUB_EXTENSIONS`]
/// give them (the CRD's field names).
fn required_extensions(
    extensions: Option<&stellaops_crds::zastava_policy::CertificateExtensions>,
) -> Vec<crate::keyless::RequiredExtension> {
    let Some(fields) = extensions.and_then(|e| serde_json::to_value(e).ok()) else {
        return Vec::new();
    };
    let v2 = crate::keyless::FULCIO_EXTENSIONS.iter().map(|e| (e, false));
    let github = crate::keyless::FULCIO_GITHUB_EXTENSIONS
        .iter()
        .map(|e| (e, true));
    v2.chain(github)
        .filter_map(|(&(name, oid), raw)| {
            fields[name]
                .as_str()
                .map(|value| crate::keyless::RequiredExtension {
                    name,
                    oid,
                    raw,
                    value: value.to_string(),
                })
        })
        .collect()
}

/// The trusted root `trusted_roots[index]` (the keyless authorities' in order, then
/// `publicKeysTlog`'s, as the controller reads them), parsed; errors name `label` and the
/// Secret it came from.
fn read_trusted_root(
    trusted_roots: &[String],
    index: usize,
    label: &str,
    reference: &stellaops_crds::zastava_policy::TrustedRootRef,
) -> Result<crate::keyless::TrustedRoot, PolicyError> {
    let document = trusted_roots.get(index).ok_or_else(|| {
        PolicyError::InvalidTrustedRoot(format!(
            "{label}: trusted root (Secret {}, key {}) was not read",
            reference.name, reference.key
        ))
    })?;
    crate::keyless::parse_trusted_root(document).map_err(|e| {
        PolicyError::InvalidTrustedRoot(format!(
            "{label}: Secret {} key {}: {e}",
            reference.name, reference.key
        ))
    })
}

fn compile_signature(
    requirement: &stellaops_crds::zastava_policy::SignatureRequirement,
    key_pems: &[String],
    trusted_roots: &[String],
) -> Result<SignatureCheck, PolicyError> {
    let mut keys = Vec::new();
    if requirement.public_keys.is_some() {
        for pem in key_pems {
            keys.extend(parse_public_keys(pem).map_err(PolicyError::InvalidKeys)?);
        }
        if keys.is_empty() {
            return Err(PolicyError::InvalidKeys(
                "the public-key Secret holds no PEM PUBLIC KEY".into(),
            ));
        }
        keys.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        keys.dedup_by(|a, b| a.fingerprint == b.fingerprint);
    }
    let mut keyless = Vec::new();
    for (i, authority) in requirement.keyless.iter().enumerate() {
        let n = i + 1;
        let identity =
            |e: String| PolicyError::InvalidIdentity(format!("keyless authority {n}: {e}"));
        let subject = Matcher::new(
            authority.subject.as_deref(),
            authority.subject_reg_exp.as_deref(),
            "subject",
        )
        .map_err(identity)?;
        let issuer = Matcher::new(
            authority.issuer.as_deref(),
            authority.issuer_reg_exp.as_deref(),
            "issuer",
        )
        .map_err(identity)?;
        let root = read_trusted_root(
            trusted_roots,
            i,
            &format!("keyless authority {n}"),
            &authority.trusted_root,
        )?;
        if root.certificate_authorities.is_empty() {
            return Err(PolicyError::InvalidTrustedRoot(format!(
                "keyless authority {n}: the trusted root names no certificateAuthorities (Fulcio)"
            )));
        }
        if authority.require_tlog && root.tlogs.is_empty() {
            return Err(PolicyError::InvalidTrustedRoot(format!(
                "keyless authority {n}: requireTlog is true but the trusted root lists no tlogs (Rekor keys) with an ECDSA or Ed25519 key ({} with other keys)",
                root.skipped_tlogs
            )));
        }
        if authority.require_sct && root.ctlogs.is_empty() {
            return Err(PolicyError::InvalidTrustedRoot(format!(
                "keyless authority {n}: requireSCT is true but the trusted root lists no ctlogs with an ECDSA or Ed25519 key"
            )));
        }
        if authority.require_timestamp && root.timestamp_authorities.is_empty() {
            return Err(PolicyError::InvalidTrustedRoot(format!(
                "keyless authority {n}: requireTimestamp is true but the trusted root lists no timestampAuthorities"
            )));
        }
        keyless.push(crate::keyless::Authority {
            subject,
            issuer,
            root: std::sync::Arc::new(root),
            require_tlog: authority.require_tlog,
            require_sct: authority.require_sct,
            require_timestamp: authority.require_timestamp,
            extensions: required_extensions(authority.certificate_extensions.as_ref()),
        });
    }
    let keys_log = match &requirement.public_keys_tlog {
        None => None,
        Some(tlog) => {
            let root = read_trusted_root(
                trusted_roots,
                requirement.keyless.len(),
                "publicKeysTlog",
                &tlog.trusted_root,
            )?;
            if root.tlogs.is_empty() {
                return Err(PolicyError::InvalidTrustedRoot(format!(
                    "publicKeysTlog: the trusted root lists no tlogs (Rekor keys) with an ECDSA or Ed25519 key ({} with other keys)",
                    root.skipped_tlogs
                )));
            }
            Some(std::sync::Arc::new(root))
        }
    };
    Ok(SignatureCheck {
        keys,
        keyless,
        keys_log,
        keys_log_attestations: requirement
            .public_keys_tlog
            .as_ref()
            .is_some_and(|t| t.attestations),
    })
}

/// Glob over image references: `*` matches within one path segment, `**` across
/// segments, `?` one character. Runs in O(|pattern| × |text|) time and O(|pattern|) space
/// (a set of pattern positions advanced one text byte at a time), whatever the pattern:
/// no backtracking, so `*a*a*a*…` against a long name costs no more than any other glob.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Byte(u8),
        One,
        Segment,
        Any,
    }
    let bytes = pattern.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'*' if bytes.get(i + 1) == Some(&b'*') => {
                tokens.push(Token::Any);
                i += 2;
            }
            b'*' => {
                tokens.push(Token::Segment);
                i += 1;
            }
            b'?' => {
                tokens.push(Token::One);
                i += 1;
            }
            c => {
                tokens.push(Token::Byte(c));
                i += 1;
            }
        }
    }
    let end = tokens.len();
    // `active[k]`: the text read so far can leave the pattern at position k.
    let mut active = vec![false; end + 1];
    let mut next = vec![false; end + 1];
    let close = |set: &mut Vec<bool>| {
        // A star may match nothing: being before it is also being after it.
        for k in 0..end {
            if set[k] && matches!(tokens[k], Token::Segment | Token::Any) {
                set[k + 1] = true;
            }
        }
    };
    active[0] = true;
    close(&mut active);
    for &c in text.as_bytes() {
        next.iter_mut().for_each(|n| *n = false);
        let mut any = false;
        for k in 0..end {
            if !active[k] {
                continue;
            }
            let target = match tokens[k] {
                Token::Byte(b) if b == c => k + 1,
                Token::One if c != b'/' => k + 1,
                Token::Segment if c != b'/' => k,
                Token::Any => k,
                _ => continue,
            };
            next[target] = true;
            any = true;
        }
        if !any {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut active, &mut next);
    }
    active[end]
}

/// The fully qualified form of an image reference (`nginx` → `docker.io/library/nginx:latest`),
/// so globs written either way match.
pub fn normalize(image: &str) -> String {
    let (name, suffix) = match image.split_once('@') {
        Some((name, digest)) => (name, format!("@{digest}")),
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, format!(":{tag}")),
            _ => (image, ":latest".to_string()),
        },
    };
    let name = match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    format!("{name}{suffix}")
}

fn matches_any(globs: &[String], image: &str) -> bool {
    // Every container of every review passes here (usually with no exemptions): the
    // normalized name is only built when a pattern did not match the name as written.
    if globs.is_empty() {
        return false;
    }
    if globs.iter().any(|g| glob_match(g, image)) {
        return true;
    }
    let full = normalize(image);
    globs.iter().any(|g| glob_match(g, &full))
}

/// The digest an image reference pins (`…@sha256:<64 hex>`).
pub fn pinned_digest(image: &str) -> Option<&str> {
    let (_, digest) = image.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

/// Whether `policy` applies to Pods in `namespace` at all.
pub fn applies_to_namespace(policy: &CompiledPolicy, namespace: &str, own: &str) -> bool {
    namespace != own
        && !ALWAYS_EXEMPT_NAMESPACES.contains(&namespace)
        && !policy
            .exempt_namespaces
            .iter()
            .any(|g| glob_match(g, namespace))
}

/// Whether `policy` checks `image`.
pub fn applies_to_image(policy: &CompiledPolicy, image: &str) -> bool {
    (policy.images.is_empty() || matches_any(&policy.images, image))
        && !matches_any(&policy.exempt_images, image)
}

/// What is known of one image, gathered once per request (or from the cache).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// The image's digest: pinned in the reference or resolved from the registry; the
    /// error says why it is unknown.
    pub digest: Option<Result<String, String>>,
    /// The fingerprint of the key whose signature verified, or why none did.
    pub signature: Option<Result<String, String>>,
    /// Each attestation requirement's outcome, in the policy's order (what signed the
    /// attestation that met it, or why none did), or why attestations could not be read.
    pub attestations: Option<Result<Vec<Result<String, String>>, String>>,
    /// The latest scan of the digest (`None` when never scanned), or why it is unknown.
    pub scan: Option<Result<Option<ScanRecord>, String>>,
    /// Lookups that did not finish within the answer budget or could not be made (registry
    /// or database unreachable); their errors say which. What `onTimeout` applies to.
    pub unavailable: Vec<Lookup>,
}

/// One kind of lookup the webhook makes for an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Tag to digest, at the registry.
    Digest,
    /// Signatures, at the registry.
    Signature,
    /// Attestations, at the registry.
    Attestation,
    /// Latest scan, in the database.
    Scan,
}

/// The latest scan result of a digest.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanRecord {
    /// Verdict.
    pub verdict: Verdict,
    /// When the scan finished.
    pub finished_at: DateTime<Utc>,
    /// Why the verdict cannot be trusted (its DSSE envelope is missing, does not verify, or
    /// disagrees with the row): then the image counts as not scanned.
    pub unverified: Option<String>,
}

/// What a policy needs to know about an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The digest (for the signature or scan checks).
    pub digest: bool,
    /// A verified signature.
    pub signature: bool,
    /// Verified attestations.
    pub attestations: bool,
    /// The latest scan.
    pub scan: bool,
}

/// What `policy` needs to decide on `image`.
pub fn needs(policy: &CompiledPolicy) -> Needs {
    Needs {
        digest: policy.signature.is_some()
            || policy.scan.is_some()
            || !policy.attestations.is_empty(),
        signature: policy.signature.is_some(),
        attestations: !policy.attestations.is_empty(),
        scan: policy.scan.is_some(),
    }
}

/// One broken rule, worded so a person can act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path of the image, such as `spec.containers[1].image`.
    pub path: String,
    /// The image as written.
    pub image: String,
    /// What is wrong and what to do.
    pub reason: String,
    /// The rule could not be checked in time (rather than found broken).
    pub unchecked: bool,
}

/// One finding of [`check_image_detailed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong and what to do.
    pub reason: String,
    /// It could not be checked in time.
    pub unchecked: bool,
}

/// Every rule `image` breaks under `policy`, given what is known of it. Pure.
pub fn check_image(
    policy: &CompiledPolicy,
    image: &ContainerImage,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> Vec<String> {
    check_image_detailed(policy, image, evidence, now)
        .into_iter()
        .map(|f| f.reason)
        .collect()
}

/// [`check_image`], saying of each finding whether it is a check that did not finish.
pub fn check_image_detailed(
    policy: &CompiledPolicy,
    image: &ContainerImage,
    evidence: &Evidence,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    judge(policy, &image.image, evidence.known(), now)
}

/// What is known of one image, borrowed: from an [`Evidence`] ([`Evidence::known`]) or
/// straight from where the facts are kept (the webhook's cache), so that judging an image
/// whose facts are all known copies none of them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Known<'e> {
    /// As [`Evidence::digest`].
    pub digest: Option<Result<&'e str, &'e str>>,
    /// As [`Evidence::signature`].
    pub signature: Option<Result<&'e str, &'e str>>,
    /// As [`Evidence::attestations`].
    pub attestations: Option<Result<&'e [Result<String, String>], &'e str>>,
    /// As [`Evidence::scan`].
    pub scan: Option<Result<Option<&'e ScanRecord>, &'e str>>,
    /// As [`Evidence::unavailable`].
    pub unavailable: &'e [Lookup],
}

impl Evidence {
    /// This evidence, borrowed.
    pub fn known(&self) -> Known<'_> {
        Known {
            digest: self
                .digest
                .as_ref()
                .map(|d| d.as_deref().map_err(String::as_str)),
            signature: self
                .signature
                .as_ref()
                .map(|s| s.as_deref().map_err(String::as_str)),
            attestations: self
                .attestations
                .as_ref()
                .map(|a| a.as_deref().map_err(String::as_str)),
            scan: self
                .scan
                .as_ref()
                .map(|s| s.as_ref().map(Option::as_ref).map_err(String::as_str)),
            unavailable: &self.unavailable,
        }
    }
}

/// Every rule the image referenced as `image` breaks under `policy`, given what is known
/// of it ([`check_image_detailed`] on borrowed facts). Pure; allocates only for findings.
pub fn judge(
    policy: &CompiledPolicy,
    image: &str,
    evidence: Known<'_>,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut broken = Vec::new();
    let broke = |reason: String| Finding {
        reason,
        unchecked: false,
    };
    let unchecked = |lookup: Lookup, reason: String| Finding {
        unchecked: evidence.unavailable.contains(&lookup),
        reason,
    };
    if image.is_empty() {
        broken.push(broke("the container names no image".to_string()));
        return broken;
    }
    if policy.require_digest && pinned_digest(image).is_none() {
        let name = image.split('@').next().unwrap_or(image);
        let name = match name.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => name,
        };
        broken.push(broke(format!(
            "not pinned by digest; reference it as {name}@sha256:<digest>"
        )));
    }
    let digest = match evidence.digest {
        Some(Ok(d)) => Some(d),
        Some(Err(e))
            if policy.signature.is_some()
                || policy.scan.is_some()
                || !policy.attestations.is_empty() =>
        {
            broken.push(unchecked(
                Lookup::Digest,
                format!("cannot resolve its digest: {e}"),
            ));
            None
        }
        _ => None,
    };
    if let (Some(_), Some(digest)) = (&policy.signature, digest) {
        match evidence.signature {
            Some(Ok(_)) => {}
            Some(Err(e)) => broken.push(unchecked(
                Lookup::Signature,
                format!("signature check failed for {digest}: {e}"),
            )),
            None => broken.push(broke(format!("signature of {digest} was not checked"))),
        }
    }
    if let (false, Some(digest)) = (policy.attestations.is_empty(), digest) {
        match evidence.attestations {
            Some(Ok(outcomes)) => {
                for outcome in outcomes {
                    if let Err(e) = outcome {
                        broken.push(broke(e.clone()));
                    }
                }
            }
            Some(Err(e)) => broken.push(unchecked(
                Lookup::Attestation,
                format!("attestation check failed for {digest}: {e}"),
            )),
            None => broken.push(broke(format!("attestations of {digest} were not checked"))),
        }
    }
    if let (Some(scan), Some(digest)) = (&policy.scan, digest) {
        match evidence.scan {
            Some(Ok(Some(record))) if record.unverified.is_some() => broken.push(broke(format!(
                "{digest} counts as not scanned: {}; apply a Scan for it",
                record.unverified.as_deref().unwrap_or_default()
            ))),
            Some(Ok(Some(record))) => {
                let age = now.signed_duration_since(record.finished_at);
                let max = chrono::Duration::from_std(scan.max_age).unwrap_or(chrono::Duration::MAX);
                if age > max {
                    broken.push(broke(format!(
                        "latest scan of {digest} is from {} (older than {}); apply a Scan for it",
                        record
                            .finished_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        humanize(scan.max_age)
                    )));
                } else if scan.deny_on.contains(&record.verdict) {
                    broken.push(broke(format!(
                        "latest scan of {digest} has verdict {:?}; fix its findings or rebuild the image",
                        record.verdict
                    )));
                }
            }
            Some(Ok(None)) => broken.push(broke(format!(
                "{digest} has never been scanned; apply a Scan for it"
            ))),
            Some(Err(e)) => broken.push(unchecked(
                Lookup::Scan,
                format!("cannot read the scan result of {digest}: {e}"),
            )),
            None => broken.push(broke(format!("scan result of {digest} was not checked"))),
        }
    }
    broken
}

fn humanize(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// The outcome of one policy on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Policy name.
    pub policy: String,
    /// Mode it ran in.
    pub mode: Mode,
    /// What `enforce` does when every violation is a check that did not finish.
    pub on_timeout: OnTimeout,
    /// Broken rules, in container order.
    pub violations: Vec<Violation>,
    /// Images the policy checked.
    pub checked: usize,
}

impl Decision {
    /// `allow`, `warn`, `dry-run-deny`, `deny` or `unchecked-allow` (enforce, but only
    /// checks that did not finish, and `onTimeout: allow`): the metric label and event field.
    pub fn label(&self) -> &'static str {
        match (self.violations.is_empty(), self.mode) {
            (true, _) => "allow",
            (false, Mode::DryRun) => "dry-run-deny",
            (false, Mode::Warn) => "warn",
            (false, Mode::Enforce) if self.admitted_unchecked() => "unchecked-allow",
            (false, Mode::Enforce) => "deny",
        }
    }

    /// Whether `enforce` admits because every violation is a check that did not finish
    /// and the policy says `onTimeout: allow`.
    pub fn admitted_unchecked(&self) -> bool {
        self.on_timeout == OnTimeout::Allow
            && !self.violations.is_empty()
            && self.violations.iter().all(|v| v.unchecked)
    }

    /// One line listing every violation.
    pub fn summary(&self) -> String {
        self.violations
            .iter()
            .map(|v| format!("{} ({}): {}", v.path, v.image, v.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Decide on the images of one object. `evidence` is keyed by image reference. Pure.
pub fn decide(
    policy: &CompiledPolicy,
    images: &[ContainerImage],
    evidence: &BTreeMap<String, Evidence>,
    now: DateTime<Utc>,
) -> Decision {
    let none = Evidence::default();
    decide_by(policy, images, |image| {
        judge(
            policy,
            image,
            evidence.get(image).unwrap_or(&none).known(),
            now,
        )
    })
}

/// A container as a decision reads it: its image reference, and the field path a
/// violation names (built only for a violation).
pub trait Container {
    /// The image as written.
    fn image(&self) -> &str;
    /// Field path of the image, such as `spec.containers[1].image`.
    fn path(&self) -> String;
}

impl Container for ContainerImage {
    fn image(&self) -> &str {
        &self.image
    }
    fn path(&self) -> String {
        self.path.clone()
    }
}

/// [`decide`] with each image's findings from `findings` (called with the image reference,
/// once per container that the policy checks, in container order).
pub fn decide_by<C: Container>(
    policy: &CompiledPolicy,
    images: &[C],
    mut findings: impl FnMut(&str) -> Vec<Finding>,
) -> Decision {
    let mut violations = Vec::new();
    let mut checked = 0;
    for container in images {
        let image = container.image();
        if !image.is_empty() && !applies_to_image(policy, image) {
            continue;
        }
        checked += 1;
        for finding in findings(image) {
            violations.push(Violation {
                path: container.path(),
                image: image.to_string(),
                reason: finding.reason,
                unchecked: finding.unchecked,
            });
        }
    }
    Decision {
        policy: policy.name.clone(),
        mode: policy.mode,
        on_timeout: policy.on_timeout,
        violations,
        checked,
    }
}

/// The AdmissionResponse for `decision` (built on `base`, which carries the request's uid).
pub fn respond(base: AdmissionResponse, decision: &Decision) -> AdmissionResponse {
    if decision.violations.is_empty() {
        return base;
    }
    let summary = decision.summary();
    let warnings = |label: &str| {
        Some(
            decision
                .violations
                .iter()
                .map(|v| {
                    format!(
                        "ZastavaPolicy {} ({label}): {} ({}): {}",
                        decision.policy, v.path, v.image, v.reason
                    )
                })
                .collect(),
        )
    };
    match decision.mode {
        Mode::Enforce if decision.admitted_unchecked() => {
            let mut response = base;
            response.warnings = warnings("not checked in time, admitted by onTimeout: allow");
            response
        }
        Mode::Enforce => {
            let mut response = base.deny(format!(
                "ZastavaPolicy {} denies this: {summary}",
                decision.policy
            ));
            response.result.code = 403;
            response.result.reason = "Forbidden".into();
            response
        }
        Mode::Warn => {
            let mut response = base;
            response.warnings = warnings("warn");
            response
        }
        Mode::DryRun => {
            let mut response = base;
            // What could not be checked is said even in dry run: the audit would mislead.
            if decision.violations.iter().any(|v| v.unchecked) {
                response.warnings = Some(
                    decision
                        .violations
                        .iter()
                        .filter(|v| v.unchecked)
                        .map(|v| {
                            format!(
                                "ZastavaPolicy {} (dryRun, not checked in time): {} ({}): {}",
                                decision.policy, v.path, v.image, v.reason
                            )
                        })
                        .collect(),
                );
            }
            // The API server prefixes the key with the webhook's name, which names the policy.
            response
                .audit_annotations
                .insert("would-deny".into(), summary);
            response
        }
    }
}
