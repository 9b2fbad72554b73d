//! Attestation policies (`requireAttestations`): in-toto Statements in DSSE envelopes,
//! signed by a policy's keys or keyless authorities, about the image's digest, with
//! optional CEL conditions over the predicate.
//!
//! An envelope counts for a requirement when its Statement has the required predicate type,
//! one of its signatures verifies over the DSSE pre-authentication encoding
//! (`PAE(payloadType, payload)`) with a trusted key or a Fulcio certificate of a keyless
//! authority (from the layer's `dev.sigstore.cosign/*` annotations, its Rekor entry of kind
//! `dsse` or `intoto` checked offline), a subject names the image's sha256 digest, and every
//! condition evaluates to `true`. A condition that cannot be evaluated fails (closed).
//!
//! An attestation may also arrive as a Sigstore bundle whose content is a DSSE envelope (an
//! OCI referrer of artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`): the
//! bundle is verified by [`crate::bundle`] with the requirement's signers (its certificate,
//! its log entries of kind `dsse` 0.0.1 or `intoto` 0.0.2 recording this envelope), then
//! its Statement meets the same predicate-type, subject and condition checks.
//!
//! CEL cost is bounded when the policy is compiled and when a predicate is read: at most
//! [`MAX_EXPRESSION_LEN`] characters, no nested comprehensions (`all`, `exists`, `map`,
//! `filter` inside one another), only the variables `predicate`, `predicateType` and
//! `subject`; statements of at most [`MAX_STATEMENT_BYTES`], lists of at most
//! [`MAX_LIST_LEN`] elements and [`MAX_VALUES`] JSON values in all.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::cosign::DSSE_MEDIA_TYPE;
use crate::evidence::FoundAttestation;
use crate::keyless::{self, Authority, Hash, KeylessSignature, LoggedSigner, TrustedRoot};
use crate::policy::TrustedKey;

/// DSSE payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type`s of in-toto Statements accepted.
pub const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// Largest Statement (decoded DSSE payload) read.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;
/// Largest DSSE envelope read (base64 makes the payload a third larger).
pub const MAX_ENVELOPE_BYTES: usize = 2 << 20;
/// Longest CEL expression.
pub const MAX_EXPRESSION_LEN: usize = 1024;
/// Longest list of a predicate given to CEL.
pub const MAX_LIST_LEN: usize = 10_000;
/// Most JSON values (objects, lists, scalars) of a predicate given to CEL.
pub const MAX_VALUES: usize = 200_000;
/// Most signatures of one envelope tried (each may cost a certificate chain check).
pub const MAX_SIGNATURES: usize = 16;
/// Largest Rekor bundle annotation read.
const MAX_BUNDLE_BYTES: usize = 256 << 10;

/// The short names of predicate types and the URIs they stand for.
pub const PREDICATE_TYPES: [(&str, &str); 7] = [
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
    ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("spdx", "https://spdx.dev/Document"),
    ("spdxjson", "https://spdx.dev/Document"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
    ("verdict", stellaops_store::attestation::PREDICATE_TYPE),
];

/// The predicate type URI `name` stands for (a short name, or the URI itself).
pub fn predicate_type_uri(name: &str) -> Result<String, String> {
    if let Some((_, uri)) = PREDICATE_TYPES.iter().find(|(short, _)| *short == name) {
        return Ok(uri.to_string());
    }
    match name.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
                && !name.chars().any(char::is_whitespace) =>
        {
            Ok(name.to_string())
        }
        _ => Err(format!(
            "predicateType {name:?} is neither a URI nor one of {}",
            PREDICATE_TYPES
                .iter()
                .map(|(short, _)| *short)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A compiled CEL condition.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The expression as written.
    pub expression: String,
    /// What it means, for messages.
    pub message: Option<String>,
    program: Arc<cel::Program>,
}

/// Variables a condition may use.
pub const VARIABLES: [&str; 3] = ["predicate", "predicateType", "subject"];

/// Functions a condition may call (the `cel` crate's standard library; operators and
/// macros are always allowed).
const FUNCTIONS: [&str; 32] = [
    "contains",
    "size",
    "max",
    "min",
    "startsWith",
    "endsWith",
    "string",
    "bytes",
    "double",
    "int",
    "uint",
    "matches",
    "duration",
    "timestamp",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    "value",
    "hasValue",
    "or",
    "orValue",
    "has",
];

impl Condition {
    /// Compile `expression`: it must parse, use only [`VARIABLES`] and known functions,
    /// nest no comprehension in another, and be at most [`MAX_EXPRESSION_LEN`] long.
    pub fn compile(expression: &str, message: Option<&str>) -> Result<Condition, String> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(format!(
                "CEL expression is {} characters, more than the {MAX_EXPRESSION_LEN} accepted",
                expression.len()
            ));
        }
        if expression.trim().is_empty() {
            return Err("CEL expression is empty".into());
        }
        // The parser is third-party code reading policy text: a panic in it is an error.
        let parsed = std::panic::catch_unwind(|| cel::Program::compile(expression))
            .map_err(|_| format!("CEL expression {expression:?} could not be parsed"))?
            .map_err(|e| {
                format!(
                    "CEL expression {expression:?} does not parse: {}",
                    e.to_string().replace('\n', " ")
                )
            })?;
        check_expression(parsed.expression(), &mut Vec::new(), 0)
            .map_err(|e| format!("CEL expression {expression:?}: {e}"))?;
        Ok(Condition {
            expression: expression.to_string(),
            message: message.map(str::to_string),
            program: Arc::new(parsed),
        })
    }

    /// Evaluate against a Statement's parts; `Ok(false)` when the expression is false, an
    /// error when it cannot be evaluated or does not yield a bool.
    pub fn evaluate(&self, variables: &Variables) -> Result<bool, String> {
        let mut context = cel::Context::default();
        context.add_variable_from_value("predicate", variables.predicate.clone());
        context.add_variable_from_value("predicateType", variables.predicate_type.clone());
        context.add_variable_from_value("subject", variables.subject.clone());
        let program = self.program.clone();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(&context)))
                .map_err(|_| "the CEL evaluator failed".to_string())?;
        match outcome {
            Ok(cel::Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!(
                "yields {:?}, not a bool",
                other.type_of().to_string()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn describe(&self) -> String {
        match &self.message {
            Some(message) => format!("{message} ({})", self.expression),
            None => self.expression.clone(),
        }
    }
}

/// Walk a parsed expression: known variables and functions only, no struct literals (the
/// evaluator cannot build them), comprehensions not nested.
fn check_expression(
    expression: &IdedExpr,
    scope: &mut Vec<String>,
    comprehensions: usize,
) -> Result<(), String> {
    match &expression.expr {
        Expr::Unspecified => Err("an incomplete expression".into()),
        Expr::Literal(_) => Ok(()),
        Expr::Ident(name) => {
            if name.starts_with('@')
                || VARIABLES.contains(&name.as_str())
                || scope.iter().any(|s| s == name)
            {
                Ok(())
            } else {
                Err(format!(
                    "unknown variable {name:?} (use {})",
                    VARIABLES.join(", ")
                ))
            }
        }
        Expr::Select(select) => check_expression(&select.operand, scope, comprehensions),
        Expr::Call(call) => {
            let name = call.func_name.as_str();
            let operator = name.starts_with(['_', '@', '!', '-']);
            if !operator && !FUNCTIONS.contains(&name) {
                return Err(format!("unknown function {name:?}"));
            }
            if let Some(target) = &call.target {
                check_expression(target, scope, comprehensions)?;
            }
            call.args
                .iter()
                .try_for_each(|a| check_expression(a, scope, comprehensions))
        }
        Expr::List(list) => list
            .elements
            .iter()
            .try_for_each(|e| check_expression(e, scope, comprehensions)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(entry) => {
                check_expression(&entry.key, scope, comprehensions)?;
                check_expression(&entry.value, scope, comprehensions)
            }
            EntryExpr::StructField(_) => Err("struct literals are not supported".into()),
        }),
        Expr::Struct(_) => Err("struct literals are not supported".into()),
        Expr::Comprehension(comprehension) => {
            if comprehensions >= 1 {
                return Err(
                    "comprehensions (all, exists, exists_one, map, filter) may not be nested"
                        .into(),
                );
            }
            check_expression(&comprehension.iter_range, scope, comprehensions)?;
            check_expression(&comprehension.accu_init, scope, comprehensions)?;
            let bound = 1 + usize::from(comprehension.iter_var2.is_some());
            scope.push(comprehension.iter_var.clone());
            scope.extend(comprehension.iter_var2.clone());
            scope.push(comprehension.accu_var.clone());
            let inner = [
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ]
            .into_iter()
            .try_for_each(|e| check_expression(e, scope, comprehensions + 1));
            scope.truncate(scope.len() - bound - 1);
            inner
        }
    }
}

/// The variables a condition sees.
#[derive(Clone, Debug)]
pub struct Variables {
    /// The Statement's predicate.
    pub predicate: cel::Value,
    /// Its predicate type.
    pub predicate_type: cel::Value,
    /// Its subjects.
    pub subject: cel::Value,
}

/// A JSON value as CEL sees it, within [`MAX_LIST_LEN`] and [`MAX_VALUES`].
pub fn to_cel(value: &Value, budget: &mut usize) -> Result<cel::Value, String> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("the predicate has more than {MAX_VALUES} JSON values"))?;
    Ok(match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => {
            if items.len() > MAX_LIST_LEN {
                return Err(format!(
                    "the predicate has a list of {} elements, more than the {MAX_LIST_LEN} conditions may read",
                    items.len()
                ));
            }
            cel::Value::List(Arc::new(
                items
                    .iter()
                    .map(|item| to_cel(item, budget))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Value::Object(fields) => {
            let mut map = HashMap::with_capacity(fields.len());
            for (key, value) in fields {
                map.insert(
                    cel::objects::Key::String(Arc::new(key.clone())),
                    to_cel(value, budget)?,
                );
            }
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    })
}

/// One attestation requirement of a policy, ready to judge.
#[derive(Clone, Debug)]
pub struct AttestationCheck {
    /// Name for messages (the requirement's `name`, else its predicate type as written).
    pub name: String,
    /// The predicate type URI required.
    pub predicate_type: String,
    /// Keys whose signature is accepted.
    pub keys: Vec<TrustedKey>,
    /// Keyless authorities whose signature is accepted.
    pub keyless: Vec<Authority>,
    /// The trusted root whose Rekor logs must record a keyed signature (`publicKeysTlog`).
    pub keys_log: Option<std::sync::Arc<TrustedRoot>>,
    /// Conditions the predicate must meet.
    pub conditions: Vec<Condition>,
}

/// Why a requirement is not met: the reason (a condition-style PascalCase word) and what
/// was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `AttestationMissing`, `AttestationUnverified` or `AttestationConditionFailed`.
    pub reason: &'static str,
    /// Details a person can act on.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The parts of a DSSE envelope.
struct Envelope {
    payload_type: String,
    payload: Vec<u8>,
    signatures: Vec<String>,
}

/// `PAE(type, body)` of DSSE v1: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn envelope(blob: &[u8]) -> Result<Envelope, String> {
    if blob.len() > MAX_ENVELOPE_BYTES {
        return Err(format!(
            "its DSSE envelope is {} bytes, more than the {MAX_ENVELOPE_BYTES} accepted",
            blob.len()
        ));
    }
    let json: Value =
        serde_json::from_slice(blob).map_err(|e| format!("its DSSE envelope is not JSON: {e}"))?;
    let payload_type = json["payloadType"]
        .as_str()
        .ok_or("its DSSE envelope has no payloadType")?
        .to_string();
    let payload = STANDARD
        .decode(
            json["payload"]
                .as_str()
                .ok_or("its DSSE envelope has no payload")?,
        )
        .map_err(|_| "its DSSE payload is not base64".to_string())?;
    let signatures = json["signatures"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["sig"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if signatures.is_empty() {
        return Err("its DSSE envelope has no signature".into());
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(format!(
            "its DSSE envelope has {} signatures, more than the {MAX_SIGNATURES} tried",
            signatures.len()
        ));
    }
    Ok(Envelope {
        payload_type,
        payload,
        signatures,
    })
}

/// A Statement read from an envelope.
struct Statement {
    predicate_type: String,
    json: Value,
}

fn statement(payload_type: &str, payload: &[u8]) -> Result<Statement, String> {
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "its DSSE payload type is {payload_type:?}, not {IN_TOTO_PAYLOAD_TYPE}"
        ));
    }
    if payload.len() > MAX_STATEMENT_BYTES {
        return Err(format!(
            "its Statement is {} bytes, more than the {MAX_STATEMENT_BYTES} accepted",
            payload.len()
        ));
    }
    let json: Value =
        serde_json::from_slice(payload).map_err(|e| format!("its Statement is not JSON: {e}"))?;
    let kind = json["_type"].as_str().unwrap_or_default();
    if !STATEMENT_TYPES.contains(&kind) {
        return Err(format!(
            "its payload is not an in-toto Statement (_type {kind:?})"
        ));
    }
    Ok(Statement {
        predicate_type: json["predicateType"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        json,
    })
}

/// Whether a subject of `statement` names `digest` (`sha256:<hex>`).
fn names_digest(statement: &Value, digest: &str) -> Result<(), String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
    if subjects.iter().any(|s| {
        s["digest"]["sha256"]
            .as_str()
            .is_some_and(|d| d.eq_ignore_ascii_case(hex))
    }) {
        return Ok(());
    }
    let named: Vec<String> = subjects
        .iter()
        .filter_map(|s| s["digest"]["sha256"].as_str())
        .map(|d| format!("sha256:{d}"))
        .collect();
    Err(format!(
        "its subject names {}, not this image's digest",
        if named.is_empty() {
            "no sha256 digest".to_string()
        } else {
            named.join(", ")
        }
    ))
}

/// Verify one DSSE signature with the requirement's keys and, under `publicKeysTlog`, its
/// Rekor entry (recording this payload, signature and key); the fingerprint of the key.
fn verify_keyed(
    message: &[u8],
    payload: &[u8],
    sig_b64: &str,
    found: &FoundAttestation,
    check: &AttestationCheck,
) -> Result<String, String> {
    let raw = STANDARD
        .decode(sig_b64.trim())
        .map_err(|_| "a DSSE signature is not base64".to_string())?;
    let signer = crate::keys::signing_key(&check.keys, message, &raw)?;
    if let Some(root) = &check.keys_log {
        let bundle = found
            .rekor_bundle
            .as_deref()
            .ok_or(crate::keys::NO_KEYED_LOG_ENTRY)?;
        verify_attestation_entry(
            bundle,
            root,
            payload,
            sig_b64,
            LoggedSigner::Key(&signer.key),
        )?;
    }
    Ok(signer.fingerprint.clone())
}

/// Verify cosign's Rekor bundle of an attestation offline: the signed entry timestamp by a
/// log of `root`, and the entry (kind `dsse` or `intoto`) recording this payload's hash,
/// this signature and this signer (certificate or key). Returns the integrated time.
fn verify_attestation_entry(
    bundle: &str,
    root: &TrustedRoot,
    payload: &[u8],
    sig_b64: &str,
    signer: LoggedSigner<'_>,
) -> Result<i64, String> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err("the Rekor bundle annotation is too large".into());
    }
    let bundle: Value = serde_json::from_str(bundle)
        .map_err(|e| format!("the Rekor bundle annotation is not JSON: {e}"))?;
    let entry = &bundle["Payload"];
    let (Some(body), Some(integrated_time), Some(log_index), Some(log_id), Some(set)) = (
        entry["body"].as_str(),
        entry["integratedTime"].as_i64(),
        entry["logIndex"].as_i64(),
        entry["logID"].as_str(),
        bundle["SignedEntryTimestamp"].as_str(),
    ) else {
        return Err("the Rekor bundle annotation is not a cosign bundle".into());
    };
    let log = root
        .tlogs
        .iter()
        .find(|log| log.log_id.eq_ignore_ascii_case(log_id))
        .ok_or_else(|| {
            format!("the Rekor entry is from log {log_id}, which the trusted root does not list")
        })?;
    let canonical = format!(
        r#"{{"body":{},"integratedTime":{integrated_time},"logID":{},"logIndex":{log_index}}}"#,
        Value::String(body.to_string()),
        Value::String(log_id.to_string()),
    );
    let set = STANDARD
        .decode(set.trim())
        .map_err(|_| "the SignedEntryTimestamp is not base64".to_string())?;
    if !log.key.verifies(Hash::Sha256, canonical.as_bytes(), &set) {
        return Err("the Rekor signed entry timestamp does not verify with the log's key".into());
    }
    let window = log.valid_for;
    if integrated_time < window.start || window.end.is_some_and(|end| integrated_time > end) {
        return Err("the Rekor log's key is not trusted at the entry's time".into());
    }
    let body = STANDARD
        .decode(body)
        .map_err(|_| "the Rekor entry body is not base64".to_string())?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the Rekor entry body is not JSON: {e}"))?;
    let payload_hash = hex::encode(Sha256::digest(payload));
    let raw_signature = STANDARD.decode(sig_b64.trim()).unwrap_or_default();
    let spec = &body["spec"];
    let (hash, signatures) = match body["kind"].as_str() {
        // dsse 0.0.1: signatures [{signature: base64, verifier: base64 PEM}].
        Some("dsse") => (
            &spec["payloadHash"],
            spec["signatures"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|s| {
                            (
                                s["signature"].as_str().unwrap_or_default(),
                                s["verifier"].as_str().unwrap_or_default(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        ),
        // intoto 0.0.2: content.envelope.signatures [{sig: base64 of the base64, publicKey}].
        Some("intoto") => (
            &spec["content"]["payloadHash"],
            spec["content"]["envelope"]["signatures"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|s| {
                            (
                                s["sig"].as_str().unwrap_or_default(),
                                s["publicKey"].as_str().unwrap_or_default(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        ),
        other => {
            return Err(format!(
                "the Rekor entry is of kind {}, not dsse or intoto",
                other.unwrap_or("(none)")
            ));
        }
    };
    if hash["algorithm"] != "sha256"
        || !hash["value"]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(&payload_hash))
    {
        return Err("the Rekor entry is for another payload (its hash differs)".into());
    }
    let signature_matches = |logged: &str| {
        let once = STANDARD.decode(logged).unwrap_or_default();
        // intoto 0.0.2 keeps the envelope's base64 text, base64-encoded again.
        let twice = STANDARD
            .decode(String::from_utf8_lossy(&once).trim())
            .unwrap_or_default();
        (!raw_signature.is_empty()) && (once == raw_signature || twice == raw_signature)
    };
    if !signatures.iter().any(|(signature, verifier)| {
        signature_matches(signature) && signer.is_recorded_as(verifier)
    }) {
        return Err(match signer {
            LoggedSigner::Certificate(_) => {
                "the Rekor entry records another signature or signing certificate"
            }
            LoggedSigner::Key(_) => "the Rekor entry records another signature or public key",
        }
        .into());
    }
    Ok(integrated_time)
}

/// Verify one DSSE signature with a keyless authority: the certificate's key over the PAE,
/// then the certificate (chain, SCT, identity) at each signed time: the Rekor entry's and
/// the RFC 3161 timestamp's. cosign's verifier reads a timestamp of a `.att` layer as
/// stamping the whole envelope (what cosign 2 sent the authority); cosign 3 writes the
/// timestamp of its bundle, which stamps the DSSE signature, so either is taken.
fn verify_keyless(
    message: &[u8],
    payload: &[u8],
    sig_b64: &str,
    found: &FoundAttestation,
    authority: &Authority,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let certificate = found
        .certificate
        .as_deref()
        .ok_or("no signing certificate (dev.sigstore.cosign/certificate annotation)")?;
    let der = keyless::first_pem_certificate(certificate)?;
    let signature = KeylessSignature {
        payload: message,
        signature_b64: sig_b64,
        certificate_pem: Some(certificate),
        rekor_bundle: None,
        rfc3161_timestamp: None,
    };
    let mut signed_times = Vec::new();
    match (found.rekor_bundle.as_deref(), authority.require_tlog) {
        (Some(bundle), _) => signed_times.push(verify_attestation_entry(
            bundle,
            &authority.root,
            payload,
            sig_b64,
            LoggedSigner::Certificate(&der),
        )?),
        (None, true) => {
            return Err("no Rekor bundle (the transparency log entry is required)".into());
        }
        (None, false) => {}
    }
    match (
        found.rfc3161_timestamp.as_deref(),
        authority.require_timestamp,
    ) {
        (Some(annotation), _) => {
            let raw_signature = keyless::base64(sig_b64, "the DSSE signature")?;
            signed_times.push(keyless::stamped_time(
                annotation,
                &[&found.blob, &raw_signature],
                &authority.root,
            )?);
        }
        (None, true) => return Err(keyless::NO_TIMESTAMP.into()),
        (None, false) => {}
    }
    keyless::verify_at(&signature, authority, &signed_times, now)
}

/// How one attestation fares against a requirement.
enum Judged {
    /// Not an attestation of the required predicate type (or not one at all).
    NotThis,
    /// Of the required type, but not valid: why.
    Unverified(String),
    /// Valid, but a condition is not met: which and why.
    ConditionFailed(String),
    /// Meets the requirement: what signed it.
    Met(String),
}

/// Judge a bare DSSE envelope (a cosign `.att` layer or a DSSE referrer).
fn judge_envelope(
    check: &AttestationCheck,
    attestation: &FoundAttestation,
    digest: &str,
    now: DateTime<Utc>,
) -> Judged {
    let parsed = envelope(&attestation.blob)
        .and_then(|e| statement(&e.payload_type, &e.payload).map(|s| (e, s)));
    let (envelope, statement) = match parsed {
        Ok(parsed) => parsed,
        // Unreadable: a candidate only when announced as one.
        Err(e) if attestation.predicate_type.is_some() => return Judged::Unverified(e),
        Err(_) => return Judged::NotThis,
    };
    if statement.predicate_type != check.predicate_type {
        return Judged::NotThis;
    }
    let message = pae(&envelope.payload_type, &envelope.payload);
    let mut refused = Vec::new();
    let mut signer = None;
    'signatures: for sig in &envelope.signatures {
        if !check.keys.is_empty() {
            match verify_keyed(&message, &envelope.payload, sig, attestation, check) {
                Ok(fingerprint) => {
                    signer = Some(fingerprint);
                    break 'signatures;
                }
                Err(e) => refused.push(e),
            }
        }
        for (i, authority) in check.keyless.iter().enumerate() {
            match verify_keyless(
                &message,
                &envelope.payload,
                sig,
                attestation,
                authority,
                now,
            ) {
                Ok(identity) => {
                    signer = Some(format!("keyless:{identity}"));
                    break 'signatures;
                }
                Err(e) => refused.push(format!("keyless authority {}: {e}", i + 1)),
            }
        }
    }
    let Some(signer) = signer else {
        if refused.is_empty() {
            refused.push("the requirement trusts no key and no keyless authority".into());
        }
        refused.dedup();
        return Judged::Unverified(format!("signature not valid: {}", refused.join("; ")));
    };
    judge_statement(check, &statement, digest, signer)
}

/// Judge a Sigstore bundle whose content is a DSSE envelope (cosign's
/// `attest --new-bundle-format`, sigstore-python's `sigstore attest`): verified as a whole
/// by [`crate::bundle`] (signature over the PAE, log entries of kind `dsse` 0.0.1 or
/// `intoto` 0.0.2 recording this envelope, certificate at the signed time) with the
/// requirement's keys and keyless authorities, then its Statement judged as an envelope's.
/// A bundle holding a message signature is an image signature, not an attestation.
fn judge_bundle(
    check: &AttestationCheck,
    attestation: &FoundAttestation,
    digest: &str,
    now: DateTime<Utc>,
) -> Judged {
    let announced = attestation.predicate_type.is_some();
    let bundle = match crate::bundle::parse_bundle(&attestation.blob) {
        Ok(bundle) => bundle,
        Err(e) if announced => return Judged::Unverified(format!("Sigstore bundle: {e}")),
        Err(_) => return Judged::NotThis,
    };
    let crate::bundle::Content::Dsse {
        payload_type,
        payload,
        ..
    } = &bundle.content
    else {
        return if announced {
            Judged::Unverified(
                "the Sigstore bundle holds a message signature, not a DSSE attestation".into(),
            )
        } else {
            Judged::NotThis
        };
    };
    let statement = match statement(payload_type, payload) {
        Ok(statement) => statement,
        Err(e) if announced => return Judged::Unverified(format!("Sigstore bundle: {e}")),
        Err(_) => return Judged::NotThis,
    };
    if statement.predicate_type != check.predicate_type {
        return Judged::NotThis;
    }
    if check.keys.is_empty() && check.keyless.is_empty() {
        return Judged::Unverified("the requirement trusts no key and no keyless authority".into());
    }
    let keys = (check.keys.as_slice(), check.keys_log.as_deref());
    match crate::bundle::verify_parsed(&bundle, keys, &check.keyless, now, |_| Ok(())) {
        Ok((signer, _)) => judge_statement(check, &statement, digest, signer),
        Err(e) => Judged::Unverified(format!("Sigstore bundle not valid: {e}")),
    }
}

/// The checks after the signature: the subject names `digest`, the conditions hold.
fn judge_statement(
    check: &AttestationCheck,
    statement: &Statement,
    digest: &str,
    signer: String,
) -> Judged {
    if let Err(e) = names_digest(&statement.json, digest) {
        return Judged::Unverified(e);
    }
    match conditions_hold(check, statement) {
        Ok(()) => Judged::Met(signer),
        Err(e) => Judged::ConditionFailed(e),
    }
}

/// Whether `media_type` is a Sigstore bundle's.
fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

/// Judge `check` on the attestations found for `digest`: `Ok` names what signed the
/// attestation that met it.
pub fn judge(
    check: &AttestationCheck,
    found: &[FoundAttestation],
    digest: &str,
    now: DateTime<Utc>,
) -> Result<String, Failure> {
    let mut unverified = Vec::new();
    let mut failed_conditions = Vec::new();
    let mut candidates = 0;
    for attestation in found {
        // The annotation is a hint: a layer announcing another type is not read.
        if attestation
            .predicate_type
            .as_deref()
            .is_some_and(|announced| announced != check.predicate_type)
        {
            continue;
        }
        let judged = if attestation.media_type == DSSE_MEDIA_TYPE {
            judge_envelope(check, attestation, digest, now)
        } else if is_bundle(&attestation.media_type) {
            judge_bundle(check, attestation, digest, now)
        } else {
            continue;
        };
        match judged {
            Judged::NotThis => {}
            Judged::Met(signer) => return Ok(signer),
            Judged::Unverified(e) => {
                candidates += 1;
                unverified.push(format!("{}: {e}", attestation.found_at));
            }
            Judged::ConditionFailed(e) => {
                candidates += 1;
                failed_conditions.push(e);
            }
        }
    }
    let wanted = format!("{} ({})", check.name, check.predicate_type);
    if let Some(first) = failed_conditions.into_iter().next() {
        return Err(Failure {
            reason: "AttestationConditionFailed",
            message: format!("attestation {wanted} of {digest}: {first}"),
        });
    }
    if candidates > 0 {
        return Err(Failure {
            reason: "AttestationUnverified",
            message: format!(
                "{candidates} attestation(s) {wanted} of {digest} found, none valid: {}",
                unverified.join("; ")
            ),
        });
    }
    Err(Failure {
        reason: "AttestationMissing",
        message: format!(
            "no attestation {wanted} of {digest} (looked at {} attestation(s): cosign tag {}, OCI referrers); attest it with cosign attest --type {}",
            found.len(),
            crate::cosign::attestation_tag(digest),
            check.name
        ),
    })
}

fn conditions_hold(check: &AttestationCheck, statement: &Statement) -> Result<(), String> {
    if check.conditions.is_empty() {
        return Ok(());
    }
    let mut budget = MAX_VALUES;
    let variables = Variables {
        predicate: to_cel(&statement.json["predicate"], &mut budget)?,
        predicate_type: cel::Value::String(Arc::new(statement.predicate_type.clone())),
        subject: to_cel(&statement.json["subject"], &mut budget)?,
    };
    for condition in &check.conditions {
        match condition.evaluate(&variables) {
            Ok(true) => {}
            Ok(false) => return Err(format!("condition {} is false", condition.describe())),
            Err(e) => {
                return Err(format!(
                    "condition {} could not be evaluated: {e}",
                    condition.describe()
                ));
            }
        }
    }
    Ok(())
}
