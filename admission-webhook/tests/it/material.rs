//! The independent test material: the Python scripts of this directory (`*_material.py`,
//! made with Python `cryptography` on `sigstore_material.py`, not with our code) and
//! sigstore-python's verdicts (`bundle_crosscheck.py`), run the same way by the keyless,
//! bundle and attestation tests.

use std::ffi::OsStr;
use std::path::PathBuf;

use serde_json::Value;

/// The image digest the material scripts sign for.
pub const DIGEST: &str = "sha256:4bc453b53cb3d914b45f4b250294236adba2c0e09ff6f03793949e7e39fd4cc1";

/// A scratch directory for a script's files, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory named after the test process and `label`.
    pub fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("zastava-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A file in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The path of a script of this directory.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it")
        .join(name)
}

/// Run `python <script> <args>`; a failing script fails the test with its stderr.
pub fn run(python: &str, script_name: &str, args: &[&OsStr]) {
    let out = std::process::Command::new(python)
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script_name}: {e}"));
    assert!(
        out.status.success(),
        "{script_name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON a material script writes (its `args`, then the output file in `scratch`);
/// `None` without the test Python (`STELLAOPS_TEST_PYTHON`).
pub fn generate(script_name: &str, args: &[&OsStr], scratch: &Scratch) -> Option<Value> {
    let python = stellaops_testing::service("STELLAOPS_TEST_PYTHON")?;
    let out = scratch.path(&format!("{script_name}.json"));
    let mut all = args.to_vec();
    all.push(out.as_os_str());
    run(&python, script_name, &all);
    Some(serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap())
}

/// sigstore-python's verdict on each scenario of `material` (in the form
/// `bundle_crosscheck.py` reads): `{scenario: "ok" | "refused: …"}`; `None` without the
/// sigstore-python environment (`STELLAOPS_TEST_SIGSTORE_PYTHON`).
pub fn sigstore_python_verdicts(material: &Value, scratch: &Scratch) -> Option<Value> {
    let python = stellaops_testing::service("STELLAOPS_TEST_SIGSTORE_PYTHON")?;
    let (input, out) = (
        scratch.path("crosscheck-material.json"),
        scratch.path("verdicts.json"),
    );
    std::fs::write(&input, material.to_string()).unwrap();
    run(
        &python,
        "bundle_crosscheck.py",
        &[input.as_os_str(), out.as_os_str()],
    );
    Some(serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap())
}

/// Asserts `result` is a refusal whose message holds `expected`.
#[track_caller]
pub fn refused(result: Result<String, String>, expected: &str) {
    let error = result.expect_err("must be refused");
    assert!(
        error.contains(expected),
        "expected {expected:?} in {error:?}"
    );
}

/// The verdict of `policy`'s signature check on one case of a material script's output:
/// its `signature`, and its `certificate` and Rekor `bundle` when it has them.
pub fn verify_case(
    policy: &stellaops_admission_webhook::policy::CompiledPolicy,
    payload: &[u8],
    case: &Value,
) -> Result<String, String> {
    stellaops_admission_webhook::cosign::verify_with(
        policy.signature.as_ref().unwrap(),
        &stellaops_admission_webhook::keyless::KeylessSignature {
            payload,
            signature_b64: case["signature"].as_str().unwrap(),
            certificate_pem: case["certificate"].as_str(),
            rekor_bundle: case["bundle"].as_str(),
            rfc3161_timestamp: None,
        },
        DIGEST,
        chrono::Utc::now(),
    )
}
